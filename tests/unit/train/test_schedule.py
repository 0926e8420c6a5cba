import math

import pytest
import torch

from nsm.spec import parse_spec
from nsm.train.schedule import (
    MIN_LR_FRACTION,
    PLATEAU_PATIENCE,
    current_lr,
    make_optimizer,
    make_scheduler,
    step_scheduler,
)
from nsm.train.state import EarlyStopping


def setup(schedule: str, epochs: int = 10, **opt):
    spec = parse_spec({"domain": "causal", "epochs": epochs, "learningRate": 0.1,
                       "optimization": {"lrSchedule": schedule, **opt}})
    model = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(model, spec)
    return optimizer, make_scheduler(optimizer, spec)


def test_plateau_halves_after_patience_without_improvement():
    optimizer, sched = setup("plateau")
    step_scheduler(sched, 1.0)
    for _ in range(PLATEAU_PATIENCE):
        step_scheduler(sched, 1.0)
        assert current_lr(optimizer) == pytest.approx(0.1)
    step_scheduler(sched, 1.0)
    assert current_lr(optimizer) == pytest.approx(0.05)


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_cosine_anneals_to_min_over_epochs():
    optimizer, sched = setup("cosine", epochs=10)
    lrs = []
    for _ in range(10):
        lrs.append(current_lr(optimizer))
        step_scheduler(sched, 0.0)
    assert lrs[0] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert current_lr(optimizer) == pytest.approx(0.1 * MIN_LR_FRACTION)
    mid = 0.1 * MIN_LR_FRACTION + (0.1 - 0.1 * MIN_LR_FRACTION) * (1 + math.cos(math.pi * 5 / 10)) / 2
    assert lrs[5] == pytest.approx(mid)


def test_none_is_constant():
    optimizer, sched = setup("none")
    assert sched is None
    for _ in range(5):
        step_scheduler(sched, 1.0)
    assert current_lr(optimizer) == 0.1


def test_adamw_weight_decay_from_spec():
    optimizer, _ = setup("none", weightDecay=0.01)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["weight_decay"] == 0.01
    optimizer, _ = setup("none")
    assert optimizer.param_groups[0]["weight_decay"] == 0.0


def test_early_stopping_counts_epochs_without_improvement():
    es = EarlyStopping(patience=2, min_delta=0.1)
    assert es.update(1, 1.0) and es.best_epoch == 1
    assert not es.update(2, 0.95)  # better, but not by min_delta
    assert not es.should_stop
    assert es.update(3, 0.8) and es.bad_epochs == 0
    assert not es.update(4, 0.9)
    assert not es.update(5, 0.85)
    assert es.should_stop and es.best_loss == 0.8 and es.best_epoch == 3


def test_early_stopping_patience_zero_never_stops():
    es = EarlyStopping(patience=0)
    es.update(1, 1.0)
    for e in range(2, 50):
        es.update(e, 2.0)
    assert not es.should_stop and es.best_epoch == 1
