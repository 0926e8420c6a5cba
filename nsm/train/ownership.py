"""Whose checkpoints are in a run directory, and whether they fit the model being built.

A checkpoint records the NSMTraining's UID (``$NSM_TRAINING_UID``, set by the operator) and the
model's shape. ``--resume auto`` resumes only its own training's checkpoint: a retained PVC met by
a new training of the same name holds another training's files, which are moved aside into
``previous-<UTC time>-<old uid>/`` (never deleted) and reported through the progress document, so
the operator posts an event. Resuming a checkpoint of another model shape is a
:class:`~nsm.spec.SpecError` (exit 2), never a ``load_state_dict`` crash.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from nsm.contract import (
    BEST_CHECKPOINT, CURVES_FILE, EPOCH_CHECKPOINT_PATTERN, HISTORY_FILE, LAST_CHECKPOINT, MOVED_ASIDE_PREFIX,
    RESULTS_FILE, TRAINING_UID_ENV, iso, now_utc,
)  # fmt: skip
from nsm.spec import SpecError
from nsm.train.tracking import TENSORBOARD_DIR, WANDB_RUN_ID

# NSMConfig fields that decide parameter shapes, and the spec field each comes from.
SHAPE_FIELDS: Mapping[str, str] = {
    "feature_vocab": "spec.dataset", "num_relations": "spec.dataset", "num_classes": "spec.dataset",
    "hidden_dim": "spec.model.hiddenDim", "num_bases": "spec.model.numBases",
    "l1_layers": "spec.model.l1Layers", "coarse_layers": "spec.model.coarseLayers",
}  # fmt: skip
_RUN_FILES = (LAST_CHECKPOINT, BEST_CHECKPOINT, HISTORY_FILE, RESULTS_FILE, CURVES_FILE, WANDB_RUN_ID)
WANDB_DIR = "wandb"  # where W&B writes offline runs (dir=<run dir>)
_RUN_DIRS = (TENSORBOARD_DIR, WANDB_DIR)  # another training's tracking runs must not be continued
_EPOCH_FILE = re.compile(EPOCH_CHECKPOINT_PATTERN)


def training_uid(environ: Mapping[str, str] | None = None) -> str | None:
    """The NSMTraining's UID when running for the operator; None locally."""
    return (os.environ if environ is None else environ).get(TRAINING_UID_ENV) or None


def belongs(state: Mapping[str, Any], uid: str | None) -> bool:
    """Whether a checkpoint's ``state`` is this training's (always, outside the operator)."""
    return uid is None or state.get("training_uid") == uid


def shape_errors(saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for every shape field where checkpoint and model differ."""
    if not saved:
        return []  # a model without a config (tests' stand-ins): load_state_dict decides
    return [(SHAPE_FIELDS[k], f"checkpoint has {k}={saved.get(k)!r}, the spec builds {current.get(k)!r}")
            for k in SHAPE_FIELDS if k in current and saved.get(k) != current.get(k)]  # fmt: skip


def check_shape(path: Path, saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> None:
    """Raise :class:`SpecError` (exit 2) when ``path`` was written by a model of another shape."""
    errors = shape_errors(saved, current)
    if errors:
        raise SpecError([(f, f"cannot resume {path}: {m}; use --resume never or another --output-dir")
                         for f, m in errors])  # fmt: skip


def run_files(directory: Path) -> list[Path]:
    """The files of a run (checkpoints, history, results, curves, tracking) in ``directory``."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if (p.is_file() and (p.name in _RUN_FILES or _EPOCH_FILE.match(p.name)))
                  or (p.is_dir() and p.name in _RUN_DIRS))  # fmt: skip


def move_aside(directory: Path, previous_uid: str | None, now: datetime | None = None) -> dict[str, Any]:
    """Move another training's run files into ``previous-<time>-<uid>/`` (same filesystem:
    renames, nothing copied or deleted); returns the ``checkpointsMovedAside`` document."""
    now = now or now_utc()
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    base = f"{MOVED_ASIDE_PREFIX}{stamp}-{(previous_uid or 'unknown')[:8]}"
    target = directory / base
    n = 1
    while target.exists():
        n += 1
        target = directory / f"{base}.{n}"
    files = run_files(directory)
    target.mkdir()
    for path in files:
        os.replace(path, target / path.name)
    return {"path": str(target), "previousUid": previous_uid or "unknown", "files": len(files), "time": iso(now)}
