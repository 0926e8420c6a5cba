"""Status fields from the files a Modal call leaves on its Volume (pure functions).

On Kubernetes the trainer patches ``status.progress`` itself; a Modal container has no way into
the cluster, so the operator copies the newest ``history.json`` row at each poll, in the same
shape (:func:`nsm.contract.status_body`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from nsm.contract import LAST_CHECKPOINT, json_safe, result_summary, status_body
from nsm.spec import NSMTrainingSpec

__all__ = ["checkpoint_path", "progress_fields", "result_summary"]


def checkpoint_path(spec: NSMTrainingSpec, name: str) -> str:
    return f"modal://{spec.modal.volume}/{name}/{LAST_CHECKPOINT}"


def progress_fields(
    history: Any, spec: NSMTrainingSpec, name: str, current: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``{"progress", "lastCheckpoint"}`` for the newest epoch, or {} when nothing changed."""
    if not isinstance(history, Sequence) or not history or not isinstance(history[-1], Mapping):
        return {}
    row = history[-1]
    if current and current.get("epoch") == row.get("epoch"):
        return {}
    losses = [r.get("val_loss") for r in history if isinstance(r, Mapping)]
    finite = [x for x in losses if isinstance(x, (int, float)) and math.isfinite(x)]
    try:
        body = status_body(dict(row), spec.epochs, min(finite) if finite else float("nan"),
                           {"epoch": row["epoch"], "path": checkpoint_path(spec, name)})
    except (KeyError, TypeError):
        return {}  # a row from an older trainer; the next one may do
    status = body["status"]
    status["lastCheckpoint"]["time"] = status["progress"]["updatedAt"]
    return json_safe(status)  # type: ignore[no-any-return]
