"""kopf's diff base, built without copying what it throws away.

kopf compares every NSMTraining event's "essence" (the object without ``status`` and system
metadata) with the one stored at the last handling, to find spec changes. Its stock ``build``
deep-copies the *whole* body first and deletes ``status`` and ``metadata`` afterwards: under a
burst that copy (conditions, ``managedFields``, kopf's own annotations) was a tenth of the
operator's CPU, for every status echo of every training (docs/performance.md, "Levers").

:class:`LeanDiffBaseStorage` hands kopf's own ``build`` only what the essence is made of (every
top-level field but ``status``, and ``metadata`` cut to labels and annotations), so the result is
the same essence, compared by a unit test against the stock storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import kopf

_KEPT_METADATA = ("labels", "annotations")


def lean_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` without ``status`` and with ``metadata`` cut to what an essence keeps (shallow)."""
    lean = {key: value for key, value in body.items() if key not in ("status", "metadata")}
    meta = body.get("metadata") or {}
    lean["metadata"] = {key: meta[key] for key in _KEPT_METADATA if key in meta}
    return lean


class LeanDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base (same key, same stored essence), cheaper to build."""

    def build(self, *, body: Any, extra_fields: Iterable[Any] | None = None) -> Any:
        fields = list(extra_fields or [])
        if any(_outside_essence(field) for field in fields):
            return super().build(body=body, extra_fields=fields)  # a handler follows status/metadata
        return super().build(body=kopf.Body(lean_body(body)), extra_fields=fields)


def _outside_essence(field: Any) -> bool:
    path = field.split(".") if isinstance(field, str) else list(field)
    return bool(path) and path[0] in ("status", "metadata")
