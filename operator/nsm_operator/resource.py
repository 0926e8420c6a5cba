"""A validated NSMTraining as the builders and the lifecycle see it (pure: no client, no kopf)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nsm.spec import API_GROUP, API_VERSION, KIND, NSMTrainingSpec, SpecError, parse_spec

from nsm_operator.errors import InvalidSpec


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
        try:
            spec = parse_spec(dict(body.get("spec") or {}))
        except SpecError as exc:
            raise InvalidSpec(str(exc)) from None
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
