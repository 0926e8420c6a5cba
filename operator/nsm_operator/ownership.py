"""Whether an object belongs to a training (pure): only what the operator created for this very
training (its controller owner reference carries the training's UID) may change its status.

Labels prove nothing: anyone who may create Jobs or ConfigMaps in the namespace can copy them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nsm.spec import KIND


def controller_uid(obj: Mapping[str, Any] | None) -> str | None:
    """The UID of ``obj``'s controller owner reference, or None."""
    for ref in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")  # type: ignore[no-any-return]
    return None


def owned_by(obj: Mapping[str, Any] | None, uid: str) -> bool:
    """True when the training with ``uid`` is ``obj``'s controller."""
    return bool(uid) and controller_uid(obj) == uid


def describe_owner(obj: Mapping[str, Any] | None) -> str:
    """Who controls ``obj``, for messages: ``"NSMTraining x (uid …)"`` or ``"no controller"``."""
    for ref in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')} {ref.get('name')} (uid {ref.get('uid')})"
    return "no controller"


def stale_sibling(obj: Mapping[str, Any] | None, name: str) -> bool:
    """``obj`` is controlled by an earlier NSMTraining of the same name (deleted and re-created;
    the garbage collector has not removed its children yet)."""
    for ref in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == KIND and ref.get("name") == name:
            return True
    return False
