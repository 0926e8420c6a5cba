"""The embedded default run: what ``nsm train`` (and ``make run``) trains without ``-f``/``--domain``.

Chosen by measurement on a 2-core machine: the causal domain at 5000 scenarios (3500 training
graphs), Adam at 1e-3 with a cosine schedule over 50 epochs. On two idle cores an epoch takes
~1.7 s and early stopping (patience 15) ended the run after 43 epochs: 79 s wall-clock, test
accuracy 1.000 (per class 1.000 / 1.000). Other jobs on the same cores stretch that by up to
10x. At lr 3e-3 the loss oscillates (8000 scenarios: test 0.93). No worker processes, no AMP.
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_TRAINING: dict[str, Any] = {
    "apiVersion": "nsm.dev/v1alpha1",
    "kind": "NSMTraining",
    "metadata": {"name": "nsm-default"},
    "spec": {
        "domain": "causal",
        "target": "kubernetes",
        "epochs": 50,
        "batchSize": 32,
        "learningRate": 1.0e-3,
        "seed": 42,
        "dataset": {"numScenarios": 5000},
        "optimization": {"amp": False, "lrSchedule": "cosine", "gradientClip": 1.0},
        "earlyStopping": {"patience": 15},
        "checkpoint": {"everyEpochs": 10, "keep": 3},
        "dataLoader": {"numWorkers": 0, "pinMemory": False, "persistentWorkers": False},
        "resources": {"gpu": {"count": 0}, "cpu": "2", "memory": "4Gi"},
    },
}


def default_training() -> dict[str, Any]:
    """A fresh copy of :data:`DEFAULT_TRAINING` (callers may mutate it)."""
    return copy.deepcopy(DEFAULT_TRAINING)
