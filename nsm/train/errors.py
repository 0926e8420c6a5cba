"""Errors the trainer raises; the CLI maps them to exit codes (see ``nsm.cli.train``)."""

from __future__ import annotations


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; retrying the same spec would diverge again (exit code 3)."""

    def __init__(self, epoch: int, what: str = "training loss"):
        self.epoch = epoch
        super().__init__(f"{what} is not finite in epoch {epoch}; training diverged")


class TrainingPreempted(RuntimeError):
    """A stop signal ended training after a checkpoint (``last.pt``) at the exact position;
    ``--resume auto`` continues from it. Exit code ``128 + signum`` (143 for SIGTERM): retryable."""

    def __init__(self, signum: int, where: str):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"stopped by signal {signum} {where}; checkpoint written, resume with --resume auto")
