"""Attempt runners, by ``spec.target``: ``kubernetes`` (a Job per attempt) and ``modal`` (a Modal
Function call per attempt, through :mod:`nsm.modal.bridge`).

The Modal target is imported on first use, so an operator that never sees ``target: modal`` never
loads the bridge; if that import fails, the training fails with ``TargetUnavailable``. The Modal
SDK itself is imported only when a bridge makes a call (a missing SDK fails that attempt).
"""

from __future__ import annotations

from nsm_operator.errors import TargetUnavailable
from nsm_operator.settings import OperatorSettings
from nsm_operator.targets.base import Target, TargetContext
from nsm_operator.targets.kubernetes import KubernetesTarget

_CACHE: dict[str, Target] = {}


def get_target(name: str, settings: OperatorSettings | None = None) -> Target:
    """The target for ``spec.target``; raises :class:`TargetUnavailable` if it can't be loaded."""
    if name in _CACHE:
        return _CACHE[name]
    if name == "kubernetes":
        target: Target = KubernetesTarget()
    elif name == "modal":
        try:
            from nsm_operator.targets.modal import ModalTarget
        except ImportError as exc:
            raise TargetUnavailable(f"modal target not available ({exc})") from None
        target = ModalTarget((settings or OperatorSettings()).modal_launch_grace_seconds)
    else:
        raise TargetUnavailable(f"unknown target {name!r}")
    _CACHE[name] = target
    return target


__all__ = ["Target", "TargetContext", "get_target"]
