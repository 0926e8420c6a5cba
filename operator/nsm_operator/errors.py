"""The operator's one error taxonomy; converted to kopf errors only at the handler boundary
(``handlers/boundary.py``).

- :class:`InvalidSpec`: the NSMTraining can never work as written -> ``kopf.PermanentError``,
  phase Failed, the field named, a Warning event, no children created.
- :class:`TransientError`: the API server or network failed; retry later ->
  ``kopf.TemporaryError(delay=…)``.
- :class:`Rejected`: the API server refused to create or patch a child for good (a 4xx other than
  401, 404, 408, 409 and 429): the same request can never succeed, so the training fails (phase
  Failed, the API server's message quoted, a Warning event) instead of retrying in a loop.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error the operator raises on purpose."""


class InvalidSpec(OperatorError):
    """The spec is invalid; ``str()`` names the field (``spec.poolRatio: …``)."""


class TransientError(OperatorError):
    """A failure worth retrying after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 5.0):
        super().__init__(message)
        self.delay = delay


class TargetUnavailable(OperatorError):
    """The spec names a target this operator cannot run (e.g. the Modal bridge is not installed)."""


# 401: credentials rotate; 404: what a new object refers to may not exist yet (a RoleBinding's
# Role, created concurrently, is resolved for the escalation check); 408: a timeout; 409: a
# conflict (create: already exists); 429: throttled.
RETRYABLE_CLIENT_ERRORS = frozenset({401, 404, 408, 409, 429})


def is_permanent(status: int) -> bool:
    """Whether an HTTP status from the API server means "never retry this request"."""
    return 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS


class Rejected(OperatorError):
    """The API server rejected creating or patching a child (``verb kind name``) for good."""

    def __init__(self, verb: str, kind: str, name: str, status: int, message: str):
        self.status = status
        self.reason = {400: "InvalidSpec", 422: "InvalidSpec", 403: "Forbidden"}.get(status, "Rejected")
        super().__init__(f"the API server rejected {verb} {kind} {name} (HTTP {status}): {message}")


class ForeignObject(OperatorError):
    """A child's deterministic name is taken by an object this training does not control: the
    attempt fails (final) instead of using it; ``str()`` says which object and what to do."""
