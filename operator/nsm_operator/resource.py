"""A validated NSMTraining as the builders and the lifecycle see it (pure: no client, no kopf)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nsm.spec import API_GROUP, API_VERSION, KIND, NSMTrainingSpec, SpecError, parse_spec

from nsm_operator.errors import InvalidSpec
from nsm_operator.memo import WireMemo


@dataclass(frozen=True)
class Training:
    """Identity, metadata and parsed spec of one NSMTraining object."""

    name: str
    namespace: str
    uid: str
    spec: NSMTrainingSpec
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    generation: int = 0

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "Training":
        """Parse a resource body; raises :class:`InvalidSpec` naming the field."""
        meta = body.get("metadata") or {}
        spec = _parsed_spec(meta, body.get("spec") or {})
        return cls(
            name=meta["name"],
            namespace=meta.get("namespace") or "default",
            uid=meta.get("uid", ""),
            spec=spec,
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            generation=int(meta.get("generation") or 0),
        )

    def owner_reference(self) -> dict[str, Any]:
        """A controller owner reference to this training (cascading deletion)."""
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


# The specs parsed last, per training: every Job, pod and progress event of a training
# reconciles with the same spec, and pydantic's validation was half the cost of a Job event's
# reconcile under a burst (docs/performance.md). A parsed spec is never mutated (nothing in the
# operator assigns to it), so one parse serves every reconcile until the spec changes.
PARSED_SPECS = 4096  # trainings whose parsed spec is kept (least recently used first out)
_PARSED: WireMemo[NSMTrainingSpec] = WireMemo(PARSED_SPECS)


def _parsed_spec(meta: Mapping[str, Any], raw: Mapping[str, Any]) -> NSMTrainingSpec:
    """``parse_spec(raw)``, reused while ``raw`` serialises as what was parsed for this object."""
    key = (meta.get("namespace"), meta.get("name"), meta.get("uid")) if meta.get("uid") else None
    return _PARSED.get(key, raw, lambda: _parse(raw))


def _parse(raw: Mapping[str, Any]) -> NSMTrainingSpec:
    try:
        return parse_spec(dict(raw))
    except SpecError as exc:
        raise InvalidSpec(str(exc)) from None
