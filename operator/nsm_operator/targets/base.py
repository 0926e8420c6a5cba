"""What a place that runs attempts (a Kubernetes Job, a Modal call) must offer the lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from nsm_operator.kube import Kube
from nsm_operator.lifecycle import Observation
from nsm_operator.resource import Training
from nsm_operator.settings import OperatorSettings


@dataclass
class TargetContext:
    """Everything a target needs for one training: the validated resource, its status, the
    operator settings, the API client, and the training's body (for events)."""

    training: Training
    status: Mapping[str, Any]
    settings: OperatorSettings
    kube: Kube
    body: Mapping[str, Any] = field(default_factory=dict)
    on_created: Callable[[], None] | None = None
    """Called by ``launch`` as soon as the attempt exists (before slower follow-up work)."""
    launched: Mapping[str, Any] | None = None
    """Set by ``launch``: the attempt as it was just created or found (a Job), so the caller
    observes it in the same reconcile instead of on its watch event (one status write)."""
    unfinished: int | None = None
    """Set by ``launch``: the attempt whose later needs (:meth:`Target.finish_launch`) are still
    to be made; the caller finishes them after its status write, without the training's lock."""

    def created(self) -> None:
        if self.on_created is not None:
            self.on_created()
            self.on_created = None


@runtime_checkable
class Target(Protocol):
    """An attempt runner. Every method is idempotent: names are deterministic per attempt."""

    name: str
    polling: bool
    """True: the operator polls ``observe`` on a timer; False: events drive it (Kubernetes)."""

    async def launch(self, ctx: TargetContext, attempt: int) -> dict[str, Any]:
        """Start attempt ``attempt`` if it isn't running yet; returns status fields to set
        (e.g. ``{"activeJob": …}`` or ``{"modal": {"callId": …}}``). A target that must wait
        before it may start (an earlier attempt's pod still terminating) starts nothing and
        returns ``{"reason": …, "message": …}`` saying what it waits for; the caller calls
        ``launch`` again later."""
        ...

    async def finish_launch(self, ctx: TargetContext, resumed: bool = False) -> None:
        """Make what the current attempt needs only after it started (a Job's PVC, ConfigMaps
        and RBAC), for a ``launch`` that set ``ctx.unfinished``; ``resumed``: after an operator
        restart, when it may be done already. Idempotent. Raises ``ForeignObject`` or
        ``Rejected`` (the attempt cannot go on) and ``TransientError`` (try again)."""
        ...

    async def observe(self, ctx: TargetContext) -> Observation:
        """The state of the current attempt (``ctx.status["attempts"]``)."""
        ...

    async def observe_event(self, ctx: TargetContext, event: Mapping[str, Any]) -> Observation | None:
        """The state of the current attempt from ``event``, an object a watch just delivered (a
        Job), saving a GET; None when the event says nothing about the current attempt (then the
        caller falls back to :meth:`observe`)."""
        ...

    async def stop(self, ctx: TargetContext) -> None:
        """Stop the current attempt (suspend); keep the checkpoint."""
        ...

    async def delete(self, ctx: TargetContext) -> str | None:
        """The training is being deleted: stop (cancel) its current attempt; keep the checkpoint.
        Bounded: never blocks the deletion for good; returns a message (posted as a Warning
        event) when the attempt could not be stopped and someone must stop it by hand."""
        ...

    def finished_fields(self, ctx: TargetContext) -> dict[str, Any]:
        """Status fields to write once the current attempt has ended (e.g. forget the Modal call
        id, so nothing is left to cancel and the training needs no finalizer)."""
        ...
