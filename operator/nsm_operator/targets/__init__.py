"""Attempt runners, by ``spec.target``. ``kubernetes`` is built in; ``modal`` comes from
``nsm_operator.targets.modal`` when installed (it must define ``create_target() -> Target``,
or a ``ModalTarget`` class, or a ``TARGET`` instance)."""

from __future__ import annotations

import importlib

from nsm_operator.errors import TargetUnavailable
from nsm_operator.targets.base import Target, TargetContext

_CACHE: dict[str, Target] = {}


def get_target(name: str) -> Target:
    """The target for ``spec.target``; raises :class:`TargetUnavailable` if it can't be loaded."""
    if name in _CACHE:
        return _CACHE[name]
    if name == "kubernetes":
        from nsm_operator.targets.kubernetes import KubernetesTarget

        target: Target = KubernetesTarget()
    elif name == "modal":
        try:
            module = importlib.import_module("nsm_operator.targets.modal")
        except ImportError as exc:
            raise TargetUnavailable(f"modal target not available ({exc})") from None
        if hasattr(module, "create_target"):
            target = module.create_target()
        elif hasattr(module, "ModalTarget"):
            target = module.ModalTarget()
        elif hasattr(module, "TARGET"):
            target = module.TARGET
        else:
            raise TargetUnavailable("modal target not available (nsm_operator.targets.modal defines no target)")
    else:
        raise TargetUnavailable(f"unknown target {name!r}")
    _CACHE[name] = target
    return target


__all__ = ["Target", "TargetContext", "get_target"]
