"""Prometheus metrics of one training run, served on ``--metrics-port`` (9400 in the cluster).

The names are a contract with the Grafana dashboard and the alerts (docs/operations): change
them only together. Every series carries ``training`` and ``domain`` labels; the metrics live in
a dedicated :class:`~prometheus_client.CollectorRegistry`, so several trainers (tests) can
coexist in one process.
"""

from __future__ import annotations

import math
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

BASE_LABELS = ("training", "domain")

# name -> (help, extra labels)
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "nsm_training_epoch": ("Epochs completed.", ()),
    "nsm_training_epochs_planned": ("Maximum number of epochs (spec.epochs).", ()),
    "nsm_training_train_loss": ("Mean training loss of the last epoch.", ()),
    "nsm_training_val_loss": ("Validation loss of the last epoch.", ()),
    "nsm_training_best_val_loss": ("Lowest validation loss so far.", ()),
    "nsm_training_train_accuracy": ("Training accuracy of the last epoch.", ()),
    "nsm_training_val_accuracy": ("Validation accuracy of the last epoch.", ()),
    "nsm_training_class_accuracy": ("Validation accuracy (recall) per class, last epoch.", ("class",)),
    "nsm_training_cycle_loss": ("Validation cycle-consistency loss per level (l1, l2).", ("level",)),
    "nsm_training_learning_rate": ("Learning rate used in the last epoch.", ()),
    "nsm_training_samples_per_second": ("Training throughput of the last epoch, graphs/s.", ()),
    "nsm_training_class_collapse": ("1 when a class has validation recall below 5 %.", ()),
    "nsm_training_last_checkpoint_timestamp_seconds": ("Unix time of the last checkpoint written.", ()),
    "nsm_training_checkpoint_age_seconds": ("Seconds since the last checkpoint (NaN before the first).", ()),
    "nsm_training_epoch_duration_seconds": ("Wall-clock seconds of the last epoch.", ()),
    "nsm_training_info": ("Always 1; labels describe the run.", ("attempt", "device")),
}


class TrainerMetrics:
    """The gauges of one run; call :meth:`observe_epoch` and :meth:`checkpoint_written`."""

    def __init__(
        self,
        training: str,
        domain: str,
        *,
        epochs_planned: int,
        attempt: str = "1",
        device: str = "cpu",
        registry: CollectorRegistry | None = None,
    ):
        self.registry = registry if registry is not None else CollectorRegistry()
        self._base = {"training": training, "domain": domain}
        self._gauges = {
            name: Gauge(name, doc, BASE_LABELS + extra, registry=self.registry)
            for name, (doc, extra) in GAUGES.items()
        }
        self._last_checkpoint: float | None = None
        self._server: Any = None
        self._thread: Any = None
        self.gauge("nsm_training_epochs_planned").set(epochs_planned)
        self.gauge("nsm_training_epoch").set(0)
        self.gauge("nsm_training_info", attempt=str(attempt), device=device).set(1)
        self.gauge("nsm_training_checkpoint_age_seconds").set_function(self._checkpoint_age)

    def gauge(self, name: str, **extra: str):
        return self._gauges[name].labels(**self._base, **extra)

    def _checkpoint_age(self) -> float:
        if self._last_checkpoint is None:
            return math.nan
        return max(0.0, time.time() - self._last_checkpoint)

    def observe_epoch(self, row: dict[str, Any], best_val_loss: float) -> None:
        """Update the gauges from one ``history.json`` row."""
        g = self.gauge
        g("nsm_training_epoch").set(row["epoch"])
        g("nsm_training_train_loss").set(row["train_loss"])
        g("nsm_training_val_loss").set(row["val_loss"])
        g("nsm_training_best_val_loss").set(best_val_loss)
        g("nsm_training_train_accuracy").set(row["train_accuracy"])
        g("nsm_training_val_accuracy").set(row["val_accuracy"])
        for cls, acc in enumerate(row["val_per_class_accuracy"]):
            g("nsm_training_class_accuracy", **{"class": str(cls)}).set(acc)
        g("nsm_training_cycle_loss", level="l1").set(row["val_cycle_loss_l1"])
        g("nsm_training_cycle_loss", level="l2").set(row["val_cycle_loss_l2"])
        g("nsm_training_learning_rate").set(row["lr"])
        g("nsm_training_samples_per_second").set(row["samples_per_second"])
        g("nsm_training_class_collapse").set(1 if row["val_class_collapse"] else 0)
        g("nsm_training_epoch_duration_seconds").set(row["epoch_seconds"])

    def checkpoint_written(self, timestamp: float | None = None) -> None:
        self._last_checkpoint = time.time() if timestamp is None else timestamp
        self.gauge("nsm_training_last_checkpoint_timestamp_seconds").set(self._last_checkpoint)

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Start the HTTP endpoint in a daemon thread; returns the bound port (``0`` picks one)."""
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
