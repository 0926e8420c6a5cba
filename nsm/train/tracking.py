"""Experiment tracking beside ``history.json``: TensorBoard event files (``spec.tracking``).

One scalar per field of a history row, tagged with the field's name (a list such as
``val_per_class_accuracy`` becomes ``val_per_class_accuracy/0``, ``/1`` …; a flag 0/1), at
step = epoch.
Events go to ``<run dir>/tensorboard`` (on the training's PVC in a cluster) and are flushed after
every epoch, so ``tensorboard --logdir`` follows a running training. A resumed attempt passes
``purge_step``: events a killed attempt wrote after its last checkpoint are dropped by readers,
so every epoch appears once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nsm.spec import TrackingSpec

TENSORBOARD_DIR = "tensorboard"


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The scalars of one history row (``epoch`` is the step, not a scalar)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key == "epoch":
            continue
        if isinstance(value, (list, tuple)):
            out.update({f"{key}/{i}": float(v) for i, v in enumerate(value) if _number(v)})
        elif _number(value):
            out[key] = float(value)
    return out


def _number(value: Any) -> bool:
    # bool is an int: flags such as val_class_collapse become 0/1 series.
    return isinstance(value, (int, float)) and math.isfinite(value)


class Tracker:
    """Writes each epoch's history row to the enabled trackers."""

    def __init__(self, spec: TrackingSpec, run_dir: Path, resumed_after: int = 0):
        self.writer = None
        if spec.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR),
                                        purge_step=resumed_after + 1 if resumed_after else None)

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def log_epoch(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, global_step=row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
