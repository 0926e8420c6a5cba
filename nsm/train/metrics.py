"""Classification metrics computed with torch from logits and labels.

All functions take ``logits [N, C]`` (or scores) and ``y [N]`` on any device and return Python
floats, so the results go straight into ``history.json`` and Prometheus. A class without samples
has per-class accuracy ``nan`` (``null`` in JSON) and is left out of balanced accuracy and of the
collapse check.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# A class the model (almost) never predicts correctly: below 5 % recall the classifier has
# collapsed onto the other class(es). Chance on a balanced binary task is 50 %, so 5 % is far
# from noise and only fires when a class is essentially ignored.
CLASS_COLLAPSE_THRESHOLD = 0.05


def per_class_accuracy(pred: Tensor, y: Tensor, num_classes: int) -> list[float]:
    """Recall of every class: correct predictions of class ``c`` / samples of class ``c``."""
    support = torch.bincount(y, minlength=num_classes).double()
    correct = torch.bincount(y[pred == y], minlength=num_classes).double()
    acc = correct / support  # 0/0 -> nan for classes without samples
    return [float(v) for v in acc.cpu()]


def macro_f1(pred: Tensor, y: Tensor, num_classes: int) -> float:
    """Unweighted mean of per-class F1 = 2TP / (2TP + FP + FN); a class with no TP, FP, FN scores 0."""
    tp = torch.bincount(y[pred == y], minlength=num_classes).double()
    pred_count = torch.bincount(pred, minlength=num_classes).double()
    true_count = torch.bincount(y, minlength=num_classes).double()
    denom = pred_count + true_count  # = 2TP + FP + FN
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(denom))
    return float(f1.mean())


def binary_auc(scores: Tensor, y: Tensor) -> float:
    """ROC-AUC of ``scores`` for the positive label ``y == 1``, by ranks (Mann–Whitney U).

    Tied scores share their average rank, which is the same as counting a tie as half a win.
    ``nan`` when only one class is present.
    """
    scores = scores.double().flatten()
    pos = y.flatten() == 1
    n_pos = int(pos.sum())
    n_neg = scores.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    sorted_scores, order = torch.sort(scores)
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    # Ranks are 1-based; a tie group starting at rank r with k members gets r + (k - 1) / 2.
    first_rank = torch.cumsum(counts, 0) - counts + 1
    avg_rank = first_rank.double() + (counts.double() - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = avg_rank[inverse]
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def roc_auc(logits: Tensor, y: Tensor) -> float:
    """Binary: AUC of ``logit[1] - logit[0]``; more classes: macro one-vs-rest AUC of the softmax."""
    num_classes = logits.size(1)
    if num_classes == 2:
        return binary_auc(logits[:, 1].double() - logits[:, 0].double(), y)
    probs = torch.softmax(logits.double(), dim=1)
    aucs = [binary_auc(probs[:, c], (y == c).long()) for c in range(num_classes)]
    aucs = [a for a in aucs if not math.isnan(a)]
    return sum(aucs) / len(aucs) if aucs else math.nan


def classification_metrics(logits: Tensor, y: Tensor) -> dict[str, object]:
    """Accuracy, per-class accuracy, balanced accuracy, macro F1, ROC-AUC and the collapse flag."""
    num_classes = logits.size(1)
    logits = logits.detach().float()
    pred = logits.argmax(dim=1)
    per_class = per_class_accuracy(pred, y, num_classes)
    present = [a for a in per_class if not math.isnan(a)]
    return {
        "accuracy": float((pred == y).double().mean()) if y.numel() else math.nan,
        "balanced_accuracy": sum(present) / len(present) if present else math.nan,
        "per_class_accuracy": per_class,
        "f1_macro": macro_f1(pred, y, num_classes),
        "auc": roc_auc(logits, y),
        "class_collapse": is_class_collapse(per_class),
    }


def is_class_collapse(per_class: list[float], threshold: float = CLASS_COLLAPSE_THRESHOLD) -> bool:
    """True when any class that has samples is recognised less than ``threshold`` of the time."""
    return any(a < threshold for a in per_class if not math.isnan(a))
