"""The contract between the trainer, the Modal Function and the operator, in one torch-free module.

Everything two of those parts must agree on lives here and nowhere else:

* the exit codes of ``nsm train``, their failure reasons and whether a retry can help
  (:class:`ExitCode`, :func:`reason_of`, :func:`is_retryable`, :data:`NON_RETRYABLE_EXIT_CODES`);
* the file names in a run directory (``last.pt``, ``history.json`` … and the Modal fence files);
* the shapes of the ``status.progress`` / ``status.result`` documents built from those files
  (:func:`status_body`, :func:`result_body`);
* JSON safety (no NaN/Infinity) and RFC 3339 time helpers.

It imports nothing but the standard library, so the operator can import it (``nsm_operator`` may
import only :mod:`nsm.spec` and this module from :mod:`nsm`, see ``.importlinter``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from enum import IntEnum
from typing import Any

# --- exit codes ---------------------------------------------------------------------------------


class ExitCode(IntEnum):
    """Exit codes of ``nsm train``; the Job's podFailurePolicy and the Modal runner read them."""

    OK = 0
    ERROR = 1  # anything unexpected: retryable
    INVALID_SPEC = 2  # the spec cannot train: a retry gives the same answer
    DIVERGED = 3  # NaN/inf loss: a retry from the same checkpoint diverges again
    INTERRUPTED = 130  # 128 + SIGINT (Ctrl-C at a terminal): resume with --resume auto
    PREEMPTED = 143  # 128 + SIGTERM after writing a checkpoint: retryable, resumes from last.pt


# Failure reason (``status.failureReason``) and retryability per exit code; codes not listed
# (1, signals, OOM kills …) are retryable with the platform's own reason.
_EXIT_REASONS: Mapping[int, tuple[str, bool]] = {
    ExitCode.INVALID_SPEC: ("InvalidSpec", False),
    ExitCode.DIVERGED: ("Diverged", False),
    ExitCode.INTERRUPTED: ("Interrupted", True),
    ExitCode.PREEMPTED: ("Preempted", True),
}

NON_RETRYABLE_EXIT_CODES: tuple[int, ...] = tuple(
    int(code) for code, (_, retryable) in _EXIT_REASONS.items() if not retryable
)
"""Exit codes no retry can fix (the Job's podFailurePolicy fails the Job on them)."""


def is_retryable(exit_code: int | None) -> bool:
    """Whether another attempt may succeed after ``exit_code`` (None: unknown, so yes)."""
    return exit_code not in NON_RETRYABLE_EXIT_CODES


def reason_of(exit_code: int | None) -> str | None:
    """The failure reason named by ``exit_code`` (``"InvalidSpec"`` …), or None."""
    entry = _EXIT_REASONS.get(exit_code) if exit_code is not None else None
    return entry[0] if entry else None


def exit_code_of(reason: str | None) -> int | None:
    """The exit code that means failure ``reason`` (inverse of :func:`reason_of`), or None."""
    for code, (name, _) in _EXIT_REASONS.items():
        if name == reason:
            return int(code)
    return None


# --- run directory ------------------------------------------------------------------------------

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
HISTORY_FILE = "history.json"  # one row per epoch (the shape status_body reads)
RESULTS_FILE = "results.json"  # the final summary (the shape result_body reads)
CURVES_FILE = "curves.png"
EPOCH_CHECKPOINT_PATTERN = r"^epoch-(\d{4,})\.pt$"
FENCE_FILE = "fence.json"  # Modal: {"attempt", "token"} of the newest launch
CALLS_DIR = "calls"  # Modal: calls/a<attempt>.json, the start record of each call
WATCHED_FILES = (LAST_CHECKPOINT, BEST_CHECKPOINT, HISTORY_FILE, RESULTS_FILE)


def epoch_checkpoint(epoch: int) -> str:
    return f"epoch-{epoch:04d}.pt"


def call_record(attempt: int) -> str:
    """The start record of attempt ``attempt``'s Modal call, relative to the run directory."""
    return f"{CALLS_DIR}/a{attempt}.json"


# --- JSON and time ------------------------------------------------------------------------------


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by None: JSON has neither, and kubectl and the API
    server reject documents that contain them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def iso(ts: datetime | float | None = None) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes times; ``ts`` is a datetime,
    a POSIX timestamp, or None for now."""
    if ts is None:
        ts = now_utc()
    elif not isinstance(ts, datetime):
        ts = datetime.fromtimestamp(ts, timezone.utc)
    if ts.tzinfo is not timezone.utc:
        ts = ts.astimezone(timezone.utc)  # naive = local time, as datetime.astimezone reads it
    return f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}Z"


def parse_time(value: Any) -> datetime | None:
    """A datetime from an RFC 3339 string, a POSIX timestamp or a datetime (naive = UTC); None
    for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- status documents ---------------------------------------------------------------------------

# results.json keys too bulky or redundant for status.result (results.json keeps everything).
RESULT_OMIT = frozenset({"config", "dataset", "baselines"})


def status_body(row: Mapping[str, Any], epochs: int, best_val_loss: float,
                checkpoint: Mapping[str, Any] | None) -> dict[str, Any]:
    """The merge patch of ``status.progress`` (and ``lastCheckpoint``) for one ``history.json`` row."""
    progress = {
        "epoch": row["epoch"],
        "epochs": epochs,
        "trainLoss": row["train_loss"],
        "valLoss": row["val_loss"],
        "bestValLoss": best_val_loss,
        "valAccuracy": row["val_accuracy"],
        "classAccuracy": {str(c): a for c, a in enumerate(row["val_per_class_accuracy"])},
        "samplesPerSecond": row["samples_per_second"],
        "updatedAt": iso(),
    }
    status: dict[str, Any] = {"progress": progress}
    if checkpoint is not None:
        status["lastCheckpoint"] = dict(checkpoint)
    # NaN/inf (a class without validation samples) are not JSON; the API server would reject them.
    return json_safe({"status": status})  # type: ignore[no-any-return]


def result_summary(results: Mapping[str, Any]) -> dict[str, Any]:
    """``results.json`` for ``status.result``, without the bulky keys."""
    return json_safe({k: v for k, v in results.items() if k not in RESULT_OMIT})  # type: ignore[no-any-return]


def result_body(results: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that puts the ``results.json`` summary into ``status.result``."""
    return {"status": {"result": result_summary(results)}}


# --- the progress channel -----------------------------------------------------------------------
# The trainer never writes its NSMTraining: it writes these keys (each a JSON document) into the
# ConfigMap ``<name>-progress``, the only object its Role lets it touch; the operator validates
# them and mirrors them into the training's status.

PROGRESS_CONFIGMAP_SUFFIX = "-progress"
PROGRESS_LABEL = "nsm.dev/channel"  # on the progress ConfigMap; the operator's watch selects it
PROGRESS_LABEL_VALUE = "progress"
PROGRESS_KEYS = ("progress", "lastCheckpoint", "result", "checkpointsMovedAside")
"""ConfigMap data keys; the first three mirror the status fields of the same name."""


def progress_configmap_name(training: str) -> str:
    return f"{training}{PROGRESS_CONFIGMAP_SUFFIX}"


def progress_data(status: Mapping[str, Any]) -> dict[str, str]:
    """ConfigMap ``data`` for the status fields in ``status`` (a ``status_body``/``result_body``
    ``["status"]``): one compact JSON document per key, unknown keys left out."""
    return {k: json.dumps(json_safe(v), separators=(",", ":"), allow_nan=False)
            for k, v in status.items() if k in PROGRESS_KEYS}  # fmt: skip


# --- checkpoint ownership -----------------------------------------------------------------------

TRAINING_UID_ENV = "NSM_TRAINING_UID"
"""The NSMTraining's metadata.uid, set by the operator as a literal env value (a pod's Downward
API ``metadata.uid`` is the pod's own uid, not the training's)."""
LABEL_TRAINING_UID = "nsm.dev/training-uid"  # on the checkpoint PVC: whose files it holds
MOVED_ASIDE_PREFIX = "previous-"  # <run dir>/previous-<UTC time>-<old uid>/: another training's files


# --- distributed training (issue #14) -----------------------------------------------------------
# ``nsm train --nproc-per-node N --nnodes M`` starts N processes on each of M nodes through torch's
# own launcher (torch.distributed.run); world size N·M. The operator passes the flags from
# ``resources.gpu.count`` and ``resources.nodes``; the node's rank and the rendezvous address come
# from the environment below (an Indexed Job sets JOB_COMPLETION_INDEX in every pod; the operator
# sets MASTER_ADDR to pod 0's stable hostname behind the training's headless Service).

NPROC_PER_NODE_FLAG = "--nproc-per-node"
NNODES_FLAG = "--nnodes"
NODE_RANK_ENV = "JOB_COMPLETION_INDEX"  # absent: node rank 0 (one node, or a laptop)
MASTER_ADDR_ENV = "MASTER_ADDR"  # absent: 127.0.0.1 (one node)
MASTER_PORT_ENV = "MASTER_PORT"  # absent: RENDEZVOUS_PORT
RENDEZVOUS_PORT = 29500
