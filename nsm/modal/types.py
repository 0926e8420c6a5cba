"""The types every Modal bridge shares: call outcomes, :class:`BridgeError`, :class:`Credentials`
and the :class:`ModalBridge` protocol.

They live apart from :mod:`nsm.modal.bridge` (the real bridge) and :mod:`nsm.modal.sdk` (the SDK
calls under it) so that both, the CLI, the operator and the test fakes import them without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from nsm.contract import RESULTS_FILE
from nsm.spec import NSMTrainingSpec

# --- outcomes of a call ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """The call has no result yet (queued, starting, training, or being retried by Modal)."""


@dataclass(frozen=True)
class Succeeded:
    result: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    reason: str
    message: str
    retryable: bool


@dataclass(frozen=True)
class Expired:
    """Modal no longer keeps the call's output (outputs expire some days after the call ends)."""

    message: str = "the call's output has expired on Modal; see the Volume for " + RESULTS_FILE


Outcome = Pending | Succeeded | Failed | Expired


class BridgeError(Exception):
    """Talking to Modal failed; ``str()`` is safe to log and to put in status."""

    def __init__(self, reason: str, message: str, *, retryable: bool = True):
        self.reason = reason
        self.message = message
        self.retryable = retryable
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class Credentials:
    """A Modal token (``MODAL_TOKEN_ID`` / ``MODAL_TOKEN_SECRET``); ``repr`` never shows it."""

    token_id: str = field(repr=False)
    token_secret: str = field(repr=False)

    def __repr__(self) -> str:
        return "Credentials(token_id=***, token_secret=***)"

    __str__ = __repr__


@runtime_checkable
class ModalBridge(Protocol):
    def deploy(self, spec: NSMTrainingSpec) -> str: ...

    def spawn(self, spec: NSMTrainingSpec, name: str, attempt: int, token: str) -> str: ...

    def poll(self, call_id: str) -> Outcome: ...

    def cancel(self, call_id: str) -> None: ...

    def read_json(self, spec: NSMTrainingSpec, name: str, filename: str) -> Any: ...

    def find_call(self, spec: NSMTrainingSpec, name: str, attempt: int) -> dict[str, Any] | None: ...

    def retire(self, spec: NSMTrainingSpec, name: str) -> None: ...
