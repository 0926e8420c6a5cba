"""Prometheus metrics of the operator (served on NSM_OPERATOR_METRICS_PORT at /metrics).

Per-training gauges carry {namespace, name, domain} and are removed when the training is
deleted, so cardinality is bounded by the number of live NSMTrainings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nsm_operator.diagnosis import waiting_reason

PHASES = ("Pending", "Queued", "Running", "Retrying", "Succeeded", "Failed", "Suspended")

TRAININGS = "nsm_operator_trainings"
ATTEMPTS_TOTAL = "nsm_operator_attempts_total"
RETRIES_TOTAL = "nsm_operator_retries_total"
FAILURES_TOTAL = "nsm_operator_failures_total"
RECONCILE_ERRORS_TOTAL = "nsm_operator_reconcile_errors_total"
JOB_CREATION_SECONDS = "nsm_operator_job_creation_seconds"
TIME_TO_RUNNING_SECONDS = "nsm_operator_time_to_running_seconds"
TRAINING_EPOCH = "nsm_operator_training_epoch"
TRAINING_EPOCHS = "nsm_operator_training_epochs"
TRAINING_BEST_VAL_LOSS = "nsm_operator_training_best_val_loss"
TRAINING_VAL_ACCURACY = "nsm_operator_training_val_accuracy"
TRAINING_MIN_CLASS_ACCURACY = "nsm_operator_training_min_class_accuracy"
TRAINING_ATTEMPTS = "nsm_operator_training_attempts"
TRAINING_COST_USD = "nsm_operator_training_cost_usd"
TRAINING_PROGRESS_TIMESTAMP = "nsm_operator_training_progress_timestamp_seconds"
TRAINING_PHASE = "nsm_operator_training_phase"
TRAINING_WAITING = "nsm_operator_training_waiting"
TRAININGS_WAITING = "nsm_operator_trainings_waiting"
EVENTS_TOTAL = "nsm_operator_events_total"
EVENT_QUEUE_DEPTH = "nsm_operator_event_queue_depth"
EVENT_OUTCOMES = ("posted", "patched", "deduplicated", "dropped_overflow", "dropped_rejected", "dropped_error")
WATCH_EVENTS_TOTAL = "nsm_operator_watch_events_total"
WATCH_RESTARTS_TOTAL = "nsm_operator_watch_restarts_total"
WATCH_HANDLER_ERRORS_TOTAL = "nsm_operator_watch_handler_errors_total"
API_REQUESTS_WAITING = "nsm_operator_api_requests_waiting"
API_REQUESTS_IN_FLIGHT = "nsm_operator_api_requests_in_flight"

METRIC_NAMES = (
    TRAININGS, ATTEMPTS_TOTAL, RETRIES_TOTAL, FAILURES_TOTAL, RECONCILE_ERRORS_TOTAL,
    JOB_CREATION_SECONDS, TIME_TO_RUNNING_SECONDS, TRAINING_EPOCH, TRAINING_EPOCHS,
    TRAINING_BEST_VAL_LOSS, TRAINING_VAL_ACCURACY, TRAINING_MIN_CLASS_ACCURACY, TRAINING_ATTEMPTS,
    TRAINING_COST_USD, TRAINING_PROGRESS_TIMESTAMP, TRAINING_PHASE, TRAINING_WAITING, TRAININGS_WAITING,
    EVENTS_TOTAL, EVENT_QUEUE_DEPTH,
    WATCH_EVENTS_TOTAL, WATCH_RESTARTS_TOTAL, WATCH_HANDLER_ERRORS_TOTAL, API_REQUESTS_WAITING, API_REQUESTS_IN_FLIGHT,
)  # fmt: skip

# (waiting requests per priority name, requests in flight): Admission.snapshot
AdmissionSnapshot = Callable[[], "tuple[dict[str, int], int]"]


class _AdmissionCollector(Collector):
    """The operator client's admission (nsm_operator/admission.py), read at scrape time: what
    waits for the API server, by priority, costs nothing per request."""

    def __init__(self, metrics: "OperatorMetrics") -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snapshot = self.metrics.admission
        waiting, in_flight = snapshot() if snapshot is not None else ({}, 0)
        family = GaugeMetricFamily(API_REQUESTS_WAITING, "Operator API requests waiting for a slot, by priority "
                                   "(urgent: a launch's ServiceAccount and Job; normal: status writes, reads, "
                                   "Events; later: the children a pod needs only later).",
                                   labels=["priority"])  # fmt: skip
        for priority, count in sorted(waiting.items()):
            family.add_metric([priority], count)
        yield family
        yield GaugeMetricFamily(API_REQUESTS_IN_FLIGHT, "Operator API requests in flight (at most the pool's 64).",
                                value=in_flight)  # fmt: skip

_TRAINING_LABELS = ("namespace", "name", "domain")
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 900, 3600)


class OperatorMetrics:
    """All operator metrics in one registry (a fresh registry per instance keeps tests isolated)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.admission: AdmissionSnapshot | None = None  # set by describe_admission (main.startup)
        r.register(_AdmissionCollector(self))
        self.trainings = Gauge(TRAININGS, "NSMTrainings by phase.", ["phase"], registry=r)
        self.attempts_total = Counter(
            ATTEMPTS_TOTAL.removesuffix("_total"), "Attempts started.", ["namespace", "domain"], registry=r
        )
        self.retries_total = Counter(
            RETRIES_TOTAL.removesuffix("_total"), "Retries scheduled after a failed attempt.",
            ["namespace", "domain", "reason"], registry=r,
        )  # fmt: skip
        self.failures_total = Counter(
            FAILURES_TOTAL.removesuffix("_total"), "Trainings that ended Failed.",
            ["namespace", "domain", "reason"], registry=r,
        )  # fmt: skip
        self.reconcile_errors_total = Counter(
            RECONCILE_ERRORS_TOTAL.removesuffix("_total"), "Handler errors (retried by kopf).", ["handler"],
            registry=r,
        )  # fmt: skip
        self.job_creation_seconds = Histogram(
            JOB_CREATION_SECONDS, "NSMTraining creation to its first Job created.", buckets=_LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.time_to_running_seconds = Histogram(
            TIME_TO_RUNNING_SECONDS, "Attempt Job created to its pod running.", buckets=_LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        g = lambda n, h, extra=(): Gauge(n, h, [*_TRAINING_LABELS, *extra], registry=r)  # noqa: E731
        self.training_epoch = g(TRAINING_EPOCH, "Last completed epoch.")
        self.training_epochs = g(TRAINING_EPOCHS, "Epochs requested.")
        self.training_best_val_loss = g(TRAINING_BEST_VAL_LOSS, "Best validation loss so far.")
        self.training_val_accuracy = g(TRAINING_VAL_ACCURACY, "Validation accuracy of the last epoch.")
        self.training_min_class_accuracy = g(TRAINING_MIN_CLASS_ACCURACY, "Lowest per-class validation accuracy.")
        self.training_attempts = g(TRAINING_ATTEMPTS, "Attempts started so far.")
        self.training_cost_usd = g(TRAINING_COST_USD, "Estimated cost in USD.")
        self.training_progress_timestamp = g(TRAINING_PROGRESS_TIMESTAMP, "Unix time of the last progress report.")
        self.training_phase = g(TRAINING_PHASE, "1 for the training's current phase.", ("phase",))
        self.training_waiting = g(TRAINING_WAITING, "1 while the training's attempt waits, by status.reason.", ("reason",))
        self.trainings_waiting = Gauge(TRAININGS_WAITING, "Pending NSMTrainings whose attempt waits, by status.reason.",
                                       ["reason"], registry=r)  # fmt: skip
        # Kubernetes Events (nsm_operator/events.py); the outcome label takes EVENT_OUTCOMES only.
        self.events_total = Counter(
            EVENTS_TOTAL.removesuffix("_total"), "Kubernetes Events recorded, by outcome: posted, patched (a "
            "repeat's count), deduplicated (a repeat folded into an Event), dropped_*.", ["outcome"], registry=r,
        )  # fmt: skip
        self.event_queue_depth = Gauge(EVENT_QUEUE_DEPTH, "Kubernetes Events waiting to be posted.", registry=r)
        # The children's watches (nsm_operator/watches.py): kind x event type / restart reason.
        self.watch_events_total = Counter(
            WATCH_EVENTS_TOTAL.removesuffix("_total"),
            "Objects received by the operator's own watches (LISTED: from a relist).",
            ["kind", "type"], registry=r,
        )  # fmt: skip
        self.watch_restarts_total = Counter(
            WATCH_RESTARTS_TOTAL.removesuffix("_total"),
            "Child watch streams ended: closed (server timeout), gone (410, relist), error, forbidden, rejected.",
            ["kind", "reason"], registry=r,
        )  # fmt: skip
        self.watch_handler_errors_total = Counter(
            WATCH_HANDLER_ERRORS_TOTAL.removesuffix("_total"), "Child event handler calls that raised.",
            ["kind"], registry=r,
        )  # fmt: skip
        self._phases: dict[tuple[str, str], str] = {}  # (namespace, name) -> phase
        self._waiting: dict[tuple[str, str], str] = {}  # (namespace, name) -> status.reason

    def describe_admission(self, snapshot: AdmissionSnapshot) -> None:
        """Expose the client's admission (``Admission.snapshot``) from now on."""
        self.admission = snapshot

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Start the /metrics HTTP endpoint on ``address`` in a background thread (port 0: don't serve)."""
        if port:
            start_http_server(port, addr=address, registry=self.registry)

    def observe_training(self, namespace: str, name: str, domain: str, status: Mapping[str, Any]) -> None:
        """Refresh the per-training gauges and the phase counts from a status mapping."""
        labels = (namespace, name, domain)
        progress = status.get("progress") or {}
        _set(self.training_epoch, labels, progress.get("epoch"))
        _set(self.training_epochs, labels, progress.get("epochs"))
        _set(self.training_best_val_loss, labels, progress.get("bestValLoss"))
        _set(self.training_val_accuracy, labels, progress.get("valAccuracy"))
        classes = progress.get("classAccuracy") or {}
        numbers = [v for v in classes.values() if isinstance(v, (int, float))]
        _set(self.training_min_class_accuracy, labels, min(numbers) if numbers else None)
        _set(self.training_attempts, labels, status.get("attempts"))
        _set(self.training_cost_usd, labels, (status.get("costEstimate") or {}).get("usd"))
        _set(self.training_progress_timestamp, labels, _unix(progress.get("updatedAt")))
        phase = status.get("phase")
        key = (namespace, name)
        old = self._phases.get(key)
        if phase and phase != old:
            if old:
                self.training_phase.remove(*labels, old)
                self.trainings.labels(old).dec()
            self.training_phase.labels(*labels, phase).set(1)
            self.trainings.labels(phase).inc()
            self._phases[key] = phase
        # Waiting: a waiting reason while Pending (Retrying/Failed keep the reason but wait no more;
        # a launch's AttemptCreated is no wait).
        self._set_waiting(labels, waiting_reason(status) if phase == "Pending" else None)

    def _set_waiting(self, labels: tuple[str, str, str], reason: str | None) -> None:
        key = (labels[0], labels[1])
        old = self._waiting.get(key)
        if reason == old:
            return
        if old:
            _remove(self.training_waiting, (*labels, old))
            self.trainings_waiting.labels(old).dec()
            del self._waiting[key]
        if reason:
            self.training_waiting.labels(*labels, reason).set(1)
            self.trainings_waiting.labels(reason).inc()
            self._waiting[key] = reason

    def forget_training(self, namespace: str, name: str, domain: str) -> None:
        """Drop every per-training series of a deleted training."""
        labels = (namespace, name, domain)
        for gauge in (
            self.training_epoch, self.training_epochs, self.training_best_val_loss, self.training_val_accuracy,
            self.training_min_class_accuracy, self.training_attempts, self.training_cost_usd,
            self.training_progress_timestamp,
        ):  # fmt: skip
            _remove(gauge, labels)
        old = self._phases.pop((namespace, name), None)
        if old:
            _remove(self.training_phase, (*labels, old))
            self.trainings.labels(old).dec()
        self._set_waiting(labels, None)


def _set(gauge: Gauge, labels: tuple[str, ...], value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        gauge.labels(*labels).set(value)


def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


def _unix(timestamp: Any) -> float | None:
    from datetime import datetime

    if not isinstance(timestamp, str):
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
