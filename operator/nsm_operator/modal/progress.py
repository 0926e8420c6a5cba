"""Status fields from the files a Modal call leaves on its Volume (pure functions).

On Kubernetes the trainer patches ``status.progress`` itself; a Modal container has no way into
the cluster, so the operator copies the newest ``history.json`` row at each poll, in the same
shape (``nsm.train.reporter.status_body``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from nsm.spec import NSMTrainingSpec
from nsm.train.reporter import status_body

# results.json keys too bulky or redundant for status.result (the Volume keeps the whole file).
_RESULT_OMIT = frozenset({"config", "dataset", "baselines"})


def checkpoint_path(spec: NSMTrainingSpec, name: str) -> str:
    return f"modal://{spec.modal.volume}/{name}/last.pt"


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
    return _json_safe(status)


def result_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """``results.json`` for ``status.result``, without the bulky keys."""
    return _json_safe({k: v for k, v in result.items() if k not in _RESULT_OMIT})


def _json_safe(obj: Any) -> Any:
    # NaN/inf are not JSON; the API server would reject the patch.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
