"""kopf's diff base: built without copying what it throws away, and kept in the status, where the
handler's own status write records it.

kopf compares every NSMTraining event's "essence" (the object without ``status`` and system
metadata) with the one stored at the last handling, to find spec changes. Two costs of kopf's stock
annotation storage are gone here (docs/performance.md, "Levers"):

* Its ``build`` deep-copies the *whole* body first and deletes ``status`` and ``metadata``
  afterwards: under a burst that copy (conditions, ``managedFields``, kopf's own annotations) was a
  tenth of the operator's CPU, for every status echo of every training. :func:`lean_body` hands
  kopf's own ``build`` only what the essence is made of, so the essence is the same (a unit test
  compares it with the stock storage's).
* Its ``store`` adds the essence to kopf's patch after the handler: one more PATCH per handled
  change, and one more watch event for kopf to process. :class:`StatusDiffBaseStorage` keeps the
  essence in ``status.lastHandledConfiguration`` instead, which the handler's own status write
  sets (``handlers/reconcile``); ``store`` then finds it already recorded (the operator notes
  each successful recording write) and adds nothing. When the handler wrote no status (nothing
  changed, a failure that raised), ``store`` puts it into kopf's patch as before: kopf's status
  PATCH records it.

The essence is recorded by the status write that ends a successful handling, never before: kopf
detects a creation by the *absence* of a stored essence, so an essence recorded by a handler that
then failed would stop kopf retrying it. Objects handled by an older operator keep the essence in
kopf's annotation; :meth:`StatusDiffBaseStorage.fetch` reads it there while the status has none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf

from nsm_operator.memo import WireMemo

__all__ = ["FIELD", "HANDLED_FIELDS", "LeanDiffBaseStorage", "StatusDiffBaseStorage", "crd_keeps_the_record",
           "encoded_essence", "lean_body"]

_KEPT_METADATA = ("labels", "annotations")
FIELD = "lastHandledConfiguration"  # status.<FIELD>: the JSON of the last handled essence
# The fields kopf adds to the essence for the operator's change handlers (main.update's field), as
# kopf's registry gives them (field paths), so that a memo key made from either is the same.
HANDLED_FIELDS = (("spec",),)


def lean_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` without ``status`` and with ``metadata`` cut to what an essence keeps (shallow)."""
    lean = {key: value for key, value in body.items() if key not in ("status", "metadata")}
    meta = body.get("metadata") or {}
    lean["metadata"] = {key: meta[key] for key in _KEPT_METADATA if key in meta}
    return lean


class LeanDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base (same key, same stored essence), cheaper to build.

    The essence of an object's event is remembered (``memo_size`` objects, least recently used
    first out) with the lean body it came from: the status echoes that follow a handling carry
    the same spec, labels and annotations, and serialising the lean body plus one ``json.loads``
    replaces kopf's build through its mapping views (``bench/operator_memos.py``: 86 → 12 µs)."""

    def __init__(self, *, memo_size: int = 2048) -> None:
        super().__init__()
        self._memo: WireMemo[str] = WireMemo(memo_size)  # per object: the essence, as JSON

    def build(self, *, body: Any, extra_fields: Iterable[Any] | None = None) -> Any:
        fields = list(extra_fields or [])
        if any(_outside_essence(field) for field in fields):
            return super().build(body=body, extra_fields=fields)  # a handler follows status/metadata
        return json.loads(self.encoded(body, fields))  # a fresh object, as a build gives

    def encoded(self, body: Mapping[str, Any], fields: Iterable[Any] = HANDLED_FIELDS) -> str:
        """The essence of ``body`` as JSON (``fields``: essence fields only), from the memo while
        the lean body is unchanged. The create handler asks for the essence kopf built for the
        same event a moment earlier (``OperatorContext.essence``): a memo hit."""
        fields = list(fields)
        lean = lean_body(body)
        meta = body.get("metadata") or {}
        key = (meta.get("namespace"), meta.get("name"), meta.get("uid"), repr(sorted(map(repr, fields))))
        build = super().build
        return self._memo.get(key if meta.get("uid") else None, lean,
                              lambda: _encode(build(body=kopf.Body(lean), extra_fields=fields)))  # fmt: skip


Recorded = Callable[[str, str], "str | None"]


class StatusDiffBaseStorage(LeanDiffBaseStorage):
    """The lean essence, kept in ``status.lastHandledConfiguration`` (read from kopf's annotation
    while the status has none). ``recorded(namespace, name)``: the essence the handler's status
    write has just recorded for that training, taken once (``OperatorContext.take_recorded``),
    set when the operator's context exists."""

    def __init__(self, recorded: Recorded | None = None) -> None:
        super().__init__()
        self.recorded = recorded
        # False when the installed CRD has no status.lastHandledConfiguration (an operator newer
        # than its CRD): the API server would prune the record, kopf would see a creation on every
        # event; the essence then goes to kopf's annotation as with kopf's own storage.
        self.in_status = True

    def fetch(self, *, body: Any) -> Any:
        encoded = (body.get("status") or {}).get(FIELD)
        if isinstance(encoded, str):
            try:
                return json.loads(encoded)
            except ValueError:
                pass  # not ours to trust: fall back to the annotation (or none: a fresh handling)
        return super().fetch(body=body)

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        if not self.in_status:
            super().store(body=body, patch=patch, essence=essence)
            return
        encoded = _encode(essence)
        meta = body.get("metadata") or {}
        if self.recorded is not None and self.recorded(meta.get("namespace") or "", meta.get("name") or "") == encoded:
            return  # the handler's own status write recorded it: no PATCH of kopf's
        patch.setdefault("status", {})[FIELD] = encoded


def crd_keeps_the_record(crd: Mapping[str, Any] | None, version: str) -> bool:
    """Whether ``crd`` (the NSMTraining CustomResourceDefinition) keeps
    ``status.lastHandledConfiguration`` in ``version`` instead of pruning it."""
    for served in (crd or {}).get("spec", {}).get("versions") or []:
        if served.get("name") != version:
            continue
        status = ((((served.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties") or {})
                  .get("status") or {})  # fmt: skip
        return FIELD in (status.get("properties") or {}) or bool(status.get("x-kubernetes-preserve-unknown-fields"))
    return False


def encoded_essence(body: Mapping[str, Any]) -> str:
    """The essence kopf stores after handling ``body``, as ``status.lastHandledConfiguration``
    holds it (``StatusDiffBaseStorage`` builds it the same way: same class, same key). Without a
    memo; the operator asks its kopf storage's (``LeanDiffBaseStorage.encoded``)."""
    return _BUILDER.encoded(dict(body))


_BUILDER = LeanDiffBaseStorage(memo_size=0)


def _encode(essence: Any) -> str:
    return json.dumps(essence, separators=(",", ":"))


def _outside_essence(field: Any) -> bool:
    path = field.split(".") if isinstance(field, str) else list(field)
    return bool(path) and path[0] in ("status", "metadata")
