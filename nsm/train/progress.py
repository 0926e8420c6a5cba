"""In-cluster progress reporter: writes progress, the last checkpoint and the result summary to
the run's own ConfigMap ``<name>-progress`` (:func:`nsm.contract.progress_data`).

The trainer's pod runs the user's image, so it is untrusted: its Role may get and patch only that
ConfigMap (by ``resourceNames``), never the NSMTraining. The operator validates the document and
mirrors it into ``status.progress``/``lastCheckpoint``/``result``.

Active only when ``NSM_TRAINING_NAME`` and ``NSM_TRAINING_NAMESPACE`` are set and the optional
``kubernetes`` package imports (``pip install nsm-operator[operator]``); ``nsm`` itself never
needs it. This is the one module of :mod:`nsm` allowed to import a Kubernetes client.

Reporting must never slow down or stop training: patches are sent by a daemon thread that always
sends the newest progress (older unsent ones are dropped), every request has a bounded timeout,
and failures are logged as warnings and otherwise ignored.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from nsm.contract import progress_configmap_name, progress_data

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 5.0
MERGE_PATCH = "application/merge-patch+json"


class ProgressReporter:
    """Sends merge patches to ConfigMap ``<name>-progress`` through ``api`` (a CoreV1Api).

    :meth:`report` takes the ``{"status": {...}}`` bodies of :func:`nsm.contract.status_body` and
    :func:`nsm.contract.result_body`; each status field becomes one JSON document in ``data``."""

    def __init__(self, api: Any, name: str, namespace: str, timeout: float = REQUEST_TIMEOUT_SECONDS):
        self.api = api
        self.name = name
        self.namespace = namespace
        self.timeout = timeout
        self.failures = 0
        self.sent = 0
        self._pending: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="nsm-progress-reporter", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "ProgressReporter | None":
        """A reporter for ``$NSM_TRAINING_NAMESPACE/$NSM_TRAINING_NAME``, or None outside a cluster."""
        env = os.environ if environ is None else environ
        name, namespace = env.get("NSM_TRAINING_NAME"), env.get("NSM_TRAINING_NAMESPACE")
        if not name or not namespace:
            return None
        try:
            from kubernetes import client, config
        except ImportError:
            log.warning("NSM_TRAINING_NAME is set but the kubernetes package is missing; "
                        "progress will not be reported (install nsm-operator[operator])")
            return None
        try:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config(config_file=env.get("KUBECONFIG"))
        except Exception as exc:  # noqa: BLE001 - any config problem only disables reporting
            log.warning("no Kubernetes configuration (in-cluster or KUBECONFIG): %s; "
                        "progress will not be reported", exc)
            return None
        return cls(client.CoreV1Api(), name, namespace)

    def report(self, body: dict[str, Any]) -> None:
        """Queue ``body``, merged over any unsent one (newer fields win); returns immediately."""
        with self._cond:
            if self._pending is None:
                self._pending = body
            else:
                self._pending = {"status": {**self._pending.get("status", {}), **body.get("status", {})}}
            self._cond.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the queue is drained; True when it was within ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued (bounded by ``timeout``, default one request timeout) and stop."""
        self.flush(self.timeout + 1 if timeout is None else timeout)
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=1)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._pending is None:
                    return
                body, self._pending, self._busy = self._pending, None, True
            self._send(body)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _send(self, body: dict[str, Any]) -> None:
        try:
            self.api.patch_namespaced_config_map(
                progress_configmap_name(self.name), self.namespace, {"data": progress_data(body.get("status") or {})},
                _request_timeout=self.timeout, _content_type=MERGE_PATCH,
            )
            self.sent += 1
            if self.failures:
                log.info("progress reporting recovered after %d failed patch(es)", self.failures)
            self.failures = 0
        except Exception as exc:  # noqa: BLE001 - reporting must never stop training
            self.failures += 1
            if self.failures == 1 or self.failures % 10 == 0:
                log.warning("could not patch progress ConfigMap %s/%s (%d consecutive failures): %s",
                            self.namespace, progress_configmap_name(self.name), self.failures, exc)
