"""The operator's one error taxonomy; converted to kopf errors only at the handler boundary
(``handlers/boundary.py``).

- :class:`InvalidSpec`: the NSMTraining can never work as written -> ``kopf.PermanentError``,
  phase Failed, the field named, a Warning event, no children created.
- :class:`TransientError`: the API server or network failed; retry later ->
  ``kopf.TemporaryError(delay=…)``.
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


class ForeignObject(OperatorError):
    """A child's deterministic name is taken by an object this training does not control: the
    attempt fails (final) instead of using it; ``str()`` says which object and what to do."""
