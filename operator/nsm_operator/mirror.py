"""The trainer's progress ConfigMap as status fields: validated, whitelisted, bounded (pure).

The document comes from the user's image, so nothing in it is trusted: only the fields below are
copied (``phase``, ``attempts``, ``retries``, ``gpuSeconds``, ``costEstimate`` … can never come from
it), numbers must be finite and bounded, strings are truncated, maps are capped, and a document
larger than :data:`MAX_DOCUMENT_BYTES` is ignored whole. Every problem is reported (the handler
posts one Warning event), none raises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nsm.contract import PROGRESS_KEYS, iso, parse_time

MAX_DOCUMENT_BYTES = 64 * 1024  # all keys together; the trainer's real documents are ~2 KiB
MAX_STRING = 256
MAX_ITEMS = 64  # entries of a map (classAccuracy, result rows) or a list
MAX_INT = 10**9
MAX_ABS = 1e15

Check = Callable[[Any, str, list[str]], Any]
_DROP = object()


@dataclass
class Mirrored:
    """What a progress document may change: ``fields`` for the status, ``moved_aside`` for an event."""

    fields: dict[str, Any] = field(default_factory=dict)
    moved_aside: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)


def _int(value: Any, where: str, problems: list[str]) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT:
        return value
    problems.append(f"{where}: expected an integer from 0 to {MAX_INT}")
    return _DROP


def _num(value: Any, where: str, problems: list[str]) -> Any:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and abs(value) <= MAX_ABS:  # fmt: skip
        return value
    problems.append(f"{where}: expected a number with |x| <= {MAX_ABS:g} or null")
    return _DROP


def _str(value: Any, where: str, problems: list[str]) -> Any:
    if not isinstance(value, str):
        problems.append(f"{where}: expected a string")
        return _DROP
    if len(value) > MAX_STRING:
        problems.append(f"{where}: truncated to {MAX_STRING} characters")
        return value[:MAX_STRING]
    return value


def _time(value: Any, where: str, problems: list[str]) -> Any:
    try:
        parsed = parse_time(value) if isinstance(value, str) and len(value) <= 40 else None
    except ValueError:
        parsed = None
    if parsed is None:
        problems.append(f"{where}: expected an RFC 3339 time")
        return _DROP
    return iso(parsed)  # normalised: what the CRD's date-time format accepts


def _numbers(value: Any, where: str, problems: list[str]) -> Any:
    """A number, a flag, null, or a list of at most MAX_ITEMS numbers (a row of results.json)."""
    if isinstance(value, bool):
        return value  # e.g. class_collapse
    if isinstance(value, list):
        if len(value) > MAX_ITEMS:
            problems.append(f"{where}: more than {MAX_ITEMS} items")
            return _DROP
        items = [_num(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
        return _DROP if any(v is _DROP for v in items) else items
    return _num(value, where, problems)


def _map(check: Check, key_ok: Callable[[str], bool] = lambda k: len(k) <= 64) -> Check:
    def run(value: Any, where: str, problems: list[str]) -> Any:
        if not isinstance(value, Mapping):
            problems.append(f"{where}: expected an object")
            return _DROP
        if len(value) > MAX_ITEMS:
            problems.append(f"{where}: more than {MAX_ITEMS} entries")
            return _DROP
        out = {}
        for k, v in value.items():
            if not (isinstance(k, str) and key_ok(k)):
                problems.append(f"{where}: key {str(k)[:32]!r} not allowed")
                continue
            checked = check(v, f"{where}.{k}", problems)
            if checked is not _DROP:
                out[k] = checked
        return out

    return run


def _object(schema: Mapping[str, Check]) -> Check:
    """An object with exactly the whitelisted keys (unknown ones are reported and dropped)."""

    def run(value: Any, where: str, problems: list[str]) -> Any:
        if not isinstance(value, Mapping):
            problems.append(f"{where}: expected an object")
            return _DROP
        unknown = sorted(str(k)[:32] for k in value if k not in schema)
        if unknown:
            problems.append(f"{where}: ignored fields {', '.join(unknown[:8])}")
        out = {}
        for key, check in schema.items():
            if key in value:
                checked = check(value[key], f"{where}.{key}", problems)
                if checked is not _DROP:
                    out[key] = checked
        return out

    return run


_ROW = _map(_numbers)  # history rows, test metrics, timing: numbers by metric name
PROGRESS = _object({
    "epoch": _int, "epochs": _int, "trainLoss": _num, "valLoss": _num, "bestValLoss": _num,
    "valAccuracy": _num, "samplesPerSecond": _num, "updatedAt": _time,
    "classAccuracy": _map(_num, lambda k: k.isdigit() and len(k) <= 4),
})  # fmt: skip
LAST_CHECKPOINT = _object({"epoch": _int, "path": _str, "time": _time})
RESULT = _object({
    "status": _str, "stop_reason": _str, "name": _str, "domain": _str, "device": _str, "attempt": _str,
    "epochs_run": _int, "epochs_planned": _int, "resumed_from_epoch": _int, "best_epoch": _int,
    "finished_at": _time, "final": _ROW, "best": _ROW, "test": _ROW, "timing": _ROW,
})  # fmt: skip
MOVED_ASIDE = _object({"path": _str, "previousUid": _str, "files": _int, "time": _time})
_SCHEMAS: Mapping[str, Check] = {"progress": PROGRESS, "lastCheckpoint": LAST_CHECKPOINT, "result": RESULT,
                                 "checkpointsMovedAside": MOVED_ASIDE}  # fmt: skip
assert set(_SCHEMAS) == set(PROGRESS_KEYS)


def read_document(data: Mapping[str, Any] | None) -> Mirrored:
    """Validate a progress ConfigMap's ``data``; never raises."""
    out = Mirrored()
    data = data if isinstance(data, Mapping) else {}
    size = sum(len(str(k)) + len(v.encode()) if isinstance(v, str) else MAX_DOCUMENT_BYTES for k, v in data.items())
    if size > MAX_DOCUMENT_BYTES:
        out.problems.append(f"document of {size} bytes ignored (limit {MAX_DOCUMENT_BYTES})")
        return out
    unknown = sorted(str(k)[:32] for k in data if k not in _SCHEMAS)
    if unknown:
        out.problems.append(f"ignored keys {', '.join(unknown[:8])}")
    for key, check in _SCHEMAS.items():
        if key not in data:
            continue
        try:
            doc = json.loads(data[key])
        except (ValueError, RecursionError) as exc:  # RecursionError: hostile nesting
            out.problems.append(f"{key}: not JSON ({type(exc).__name__})")
            continue
        checked = check(doc, key, out.problems)
        if checked is _DROP or not checked:
            continue
        if key == "checkpointsMovedAside":
            out.moved_aside = checked
        else:
            out.fields[key] = checked
    return out


def changed(fields: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """The mirrored fields whose content differs from ``status`` (a merge patch keeps sub-keys
    the new value lacks, so compare the merged result, not the raw values)."""
    out = {}
    for key, value in fields.items():
        current = status.get(key)
        merged = {**current, **value} if isinstance(current, Mapping) else value
        if merged != current:
            out[key] = value
    return out


def summary(problems: list[str], limit: int = 5) -> str:
    """One event message for ``problems`` (bounded: events are small)."""
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more
