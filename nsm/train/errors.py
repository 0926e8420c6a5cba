"""Errors the trainer raises; the CLI maps them to exit codes (see ``nsm.cli.train``)."""

from __future__ import annotations


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; retrying the same spec would diverge again (exit code 3)."""

    def __init__(self, epoch: int, what: str = "training loss"):
        self.epoch = epoch
        super().__init__(f"{what} is not finite in epoch {epoch}; training diverged")
