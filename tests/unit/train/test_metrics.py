import math

import pytest
import torch

from nsm.train.metrics import (
    CLASS_COLLAPSE_THRESHOLD,
    binary_auc,
    classification_metrics,
    is_class_collapse,
    macro_f1,
    per_class_accuracy,
    roc_auc,
)


def logits_for(pred: list[int], num_classes: int = 2) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), num_classes).float()


def test_hand_made_binary_predictions():
    y = torch.tensor([0, 0, 0, 0, 1, 1])
    pred = [0, 0, 0, 1, 1, 0]
    m = classification_metrics(logits_for(pred), y)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_accuracy"] == pytest.approx([3 / 4, 1 / 2])
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    # class 0: TP 3, FP 1, FN 1 -> 6/8; class 1: TP 1, FP 1, FN 1 -> 2/4
    assert m["f1_macro"] == pytest.approx((6 / 8 + 2 / 4) / 2)
    assert m["class_collapse"] is False


def test_auc_by_ranks_matches_pair_counting():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    y = torch.tensor([0, 0, 1, 1])
    # positive/negative pairs: (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert binary_auc(scores, y) == pytest.approx(0.75)


def test_auc_ties_count_half():
    scores = torch.tensor([0.5, 0.5, 0.5, 0.5])
    y = torch.tensor([0, 1, 0, 1])
    assert binary_auc(scores, y) == pytest.approx(0.5)
    assert binary_auc(torch.tensor([0.2, 0.7, 0.7]), torch.tensor([0, 0, 1])) == pytest.approx(0.75)


def test_auc_perfect_and_inverted_and_single_class():
    y = torch.tensor([0, 0, 1, 1])
    assert binary_auc(torch.tensor([1.0, 2.0, 3.0, 4.0]), y) == 1.0
    assert binary_auc(torch.tensor([4.0, 3.0, 2.0, 1.0]), y) == 0.0
    assert math.isnan(binary_auc(torch.tensor([1.0, 2.0]), torch.tensor([1, 1])))


def test_roc_auc_uses_logit_margin():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.0, 3.0]])
    y = torch.tensor([0, 1, 0, 1])
    assert roc_auc(logits, y) == 1.0


def test_collapse_flag_when_a_class_is_never_predicted():
    y = torch.tensor([0, 0, 1, 1, 1])
    m = classification_metrics(logits_for([1, 1, 1, 1, 1]), y)
    assert m["per_class_accuracy"] == [0.0, 1.0]
    assert m["class_collapse"] is True
    assert m["balanced_accuracy"] == 0.5
    assert CLASS_COLLAPSE_THRESHOLD == 0.05
    assert is_class_collapse([0.049, 0.9]) and not is_class_collapse([0.05, 0.9])


def test_class_without_samples_is_nan_and_ignored():
    y = torch.tensor([0, 0, 1])
    acc = per_class_accuracy(torch.tensor([0, 0, 1]), y, num_classes=3)
    assert acc[:2] == [1.0, 1.0] and math.isnan(acc[2])
    assert not is_class_collapse(acc)
    m = classification_metrics(logits_for([0, 0, 1], 3), y)
    assert m["balanced_accuracy"] == 1.0
    assert macro_f1(torch.tensor([0, 0, 1]), y, 3) == pytest.approx(2 / 3)
