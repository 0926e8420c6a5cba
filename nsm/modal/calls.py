"""The calls ``nsm modal run`` spawned, by training name, so that ``nsm modal logs|attach NAME``
find a detached run again.

One small JSON file, ``${XDG_STATE_HOME:-~/.local/state}/nsm/modal-calls.json``::

    {"<name>": {"callId": "fc-…", "app": "…", "environment": null, "volume": "…",
                "epochs": 50, "spawnedAt": 1764410000.0}}

The newest run of a name replaces the older entry (a name is a directory on the Volume; a second
run of it fences the first out, see ``nsm.modal.runner``). The file is rewritten atomically
(temp file + rename) so that an interrupted CLI never leaves half a file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from nsm.spec import NSMTrainingSpec

CALLS_FILE = "modal-calls.json"


class UnknownCall(LookupError):
    """No call is recorded for the name."""


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "nsm"


def calls_path() -> Path:
    return state_dir() / CALLS_FILE


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}  # a damaged file must not stop new runs; the next record rewrites it
    return data if isinstance(data, dict) else {}


def record_call(name: str, call_id: str, spec: NSMTrainingSpec) -> Path:
    """Remember ``call_id`` as the current call of ``name``; returns the file written."""
    path = calls_path()
    calls = _load(path)
    calls[name] = {"callId": call_id, "app": spec.modal.app, "environment": spec.modal.environment,
                   "volume": spec.modal.volume, "epochs": spec.epochs, "spawnedAt": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(calls, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def find_recorded_call(name: str) -> dict[str, Any]:
    """The record of ``name``'s newest call; :class:`UnknownCall` naming the file when none."""
    path = calls_path()
    entry = _load(path).get(name)
    if not isinstance(entry, dict) or not entry.get("callId"):
        raise UnknownCall(f"no Modal call recorded for training {name!r} in {path} "
                          "(it is recorded by `nsm modal run` on this machine)")
    return entry
