from __future__ import annotations

from pathlib import Path

import pytest

from nsm.spec import parse_training
from nsm.train.trainer import TIMING_KEYS, RunOptions, Trainer

from .standin import synthetic_dataset, tiny_model_factory


def make_training(**spec):
    base = {"domain": "causal", "epochs": 3, "batchSize": 16, "learningRate": 0.01,
            "dataLoader": {"numWorkers": 0}, "checkpoint": {"everyEpochs": 1, "keep": 2}}
    base.update(spec)
    return parse_training({"metadata": {"name": "unit"}, "spec": base})


@pytest.fixture
def run_tiny(tmp_path):
    """Train the stand-in model on the synthetic dataset; returns (results, output dir)."""

    def run(out: Path | None = None, *, log=None, options=None, **spec):
        out = out or tmp_path / "run"
        opts = RunOptions(output_dir=out, quiet=log is None, **(options or {}))
        trainer = Trainer(make_training(**spec), opts, dataset=synthetic_dataset(),
                          model_factory=tiny_model_factory, log=log)
        return trainer.run(), out

    return run


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


class Crash(Exception):
    """Raised by :func:`crash_after_epoch`'s log callback: the run dies like a killed attempt."""


def crash_after_epoch(epoch: int):
    """A ``log=`` callback for ``run_tiny`` that raises :class:`Crash` once ``epoch`` is logged
    (its checkpoint and history are already written)."""

    def log(line: str) -> None:
        if line.startswith(f"epoch {epoch:>4}/"):
            raise Crash

    return log
