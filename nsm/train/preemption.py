"""Graceful preemption: a stop signal ends training at the next optimiser step, with a checkpoint.

Kubernetes sends SIGTERM (pod deletion, eviction, node drain, preemption) and SIGKILL after the
pod's ``terminationGracePeriodSeconds``; Modal sends SIGINT before it preempts a container. While
:class:`PreemptionGuard` is active, the first such signal only sets a flag; the epoch loop polls it
after every optimiser step and raises :class:`EpochInterrupted` with the exact position
(:class:`PartialEpoch`); the trainer writes ``last.pt`` with that position and exits with
``128 + signal`` (143 for SIGTERM), a retryable exit code. ``--resume auto`` then continues the
epoch at the next batch, so the finished run equals an uninterrupted one.

A second SIGINT raises ``KeyboardInterrupt`` at once (Ctrl-C twice on a laptop).
"""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class PartialEpoch:
    """How far an interrupted epoch got: everything :func:`nsm.train.loop.train_epoch` carries."""

    epoch: int  # the epoch in progress (1-based)
    steps: int  # optimiser steps (= batches) done in it
    sums: list[float] = field(default_factory=list)  # the loop's running sums (float64)
    samples: int = 0
    finite: bool = True
    lr: float | None = None  # learning rate at the start of the epoch (the history's ``lr``)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "PartialEpoch":
        return cls(**state)


class EpochInterrupted(Exception):
    """Raised by the epoch loop after the step during which a stop was requested."""

    def __init__(self, partial: PartialEpoch):
        self.partial = partial
        super().__init__(f"epoch {partial.epoch} interrupted after {partial.steps} steps")


class PreemptionGuard:
    """Context manager: turns SIGTERM/SIGINT into a flag (:attr:`requested`) while active.

    Handlers can only be installed from the main thread; elsewhere the guard stays inert and the
    signals keep their previous behaviour.
    """

    def __init__(self, signals: tuple[int, ...] = PREEMPTION_SIGNALS):
        self.signals = signals
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def __enter__(self) -> "PreemptionGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
