"""Experiment tracking beside ``history.json`` (``spec.tracking``): TensorBoard and W&B.

One scalar per field of a history row, tagged with the field's name (a list such as
``val_per_class_accuracy`` becomes ``val_per_class_accuracy/0``, ``/1`` …; a flag 0/1), at
step = epoch.
Events go to ``<run dir>/tensorboard`` (on the training's PVC in a cluster) and are flushed after
every epoch, so ``tensorboard --logdir`` follows a running training. A resumed attempt passes
``purge_step``: events a killed attempt wrote after its last checkpoint are dropped by readers,
so every epoch appears once.

W&B: one run per run directory, its id kept in ``wandb-run-id`` so every attempt continues it
(``resume="allow"``); online with ``WANDB_API_KEY`` (the Job maps ``secretRef`` to it), else
offline under ``<run dir>/wandb``. W&B ignores steps it already has, so a resumed attempt's
repeated epoch is logged once.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from nsm.spec import TrackingSpec

TENSORBOARD_DIR = "tensorboard"
WANDB_RUN_ID = "wandb-run-id"


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


def wandb_run_id(run_dir: Path, resumed_after: int) -> str:
    """The W&B run id of this run directory: kept in ``wandb-run-id`` and reused by every resumed
    attempt (the PVC outlives attempts), new for a run that starts from epoch 0."""
    path = Path(run_dir) / WANDB_RUN_ID
    if resumed_after and path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    import uuid

    run_id = uuid.uuid4().hex[:16]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


class Tracker:
    """Writes each epoch's history row to the enabled trackers."""

    def __init__(self, spec: TrackingSpec, run_dir: Path, resumed_after: int = 0, *, name: str = "",
                 config: dict[str, Any] | None = None):
        self.writer = None
        self.wandb_run = None
        if spec.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR),
                                        purge_step=resumed_after + 1 if resumed_after else None)
        if spec.wandb is not None:
            import wandb

            # Offline without a key: the run is written under <run dir>/wandb (`wandb sync` later).
            self.wandb_run = wandb.init(
                project=spec.wandb.project, entity=spec.wandb.entity, name=name or None, config=config,
                id=wandb_run_id(run_dir, resumed_after), resume="allow", dir=str(run_dir),
                mode="online" if os.environ.get("WANDB_API_KEY") else "offline",
            )

    def log_epoch(self, row: dict[str, Any]) -> None:
        values = scalars(row)
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, global_step=row["epoch"])
            self.writer.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(values, step=row["epoch"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.finish()
            self.wandb_run = None
            # finish() can return before W&B's service process has written the last records;
            # teardown waits for it, so the run directory is complete when the trainer exits.
            wandb.teardown()
