"""The operator's e2e tier: ONE real ``nsm-operator`` process for the session, serving every
namespace named ``test-op-*`` (the harness names a test's namespace after the test, so tests here
are called ``test_op_*``), plus a tiny PV "provisioner" for its checkpoint PVCs (the test cluster
has none: a pod with an unbound claim would never be scheduled).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
NAMESPACE_GLOB = "test-op-*"
LOG_DIR = REPO / "test-logs" / "operator"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    """``nsm-operator --namespace test-op-*`` as a subprocess; kill()/start() for restart tests."""

    def __init__(self, kubeconfig: str, log_path: Path, env: dict[str, str] | None = None):
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = env or {}
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.trainer_metrics_port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "OperatorProcess":
        exe = Path(sys.executable).parent / "nsm-operator"
        args = [str(exe), "--namespace", NAMESPACE_GLOB, f"--liveness=http://127.0.0.1:{self.health_port}/healthz"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("NSM_OPERATOR_")}
        # Trainers on the process node share the host's network: a per-session metrics port keeps
        # concurrent sessions (and anything else on :9400) from colliding.
        env.update({"KUBECONFIG": self.kubeconfig, "NSM_OPERATOR_METRICS_PORT": str(self.metrics_port),
                    "NSM_OPERATOR_TRAINER_METRICS_PORT": str(self.trainer_metrics_port),
                    "NSM_OPERATOR_PRICE_PER_GPU_HOUR": "3.0", "PYTHONUNBUFFERED": "1", **self.env})  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nsm-operator exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"nsm-operator not healthy within {timeout}s:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown (a crashed pod)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""


class Provisioner(threading.Thread):
    """Binds the operator's Pending checkpoint PVCs in test-op-* namespaces to hostPath PVs."""

    def __init__(self, core_v1):
        super().__init__(daemon=True, name="pv-provisioner")
        self.core_v1 = core_v1
        self.stopping = threading.Event()
        self.created: list[str] = []

    def run(self) -> None:
        from kubernetes.client.rest import ApiException

        while not self.stopping.wait(0.3):
            try:
                claims = self.core_v1.list_persistent_volume_claim_for_all_namespaces(
                    label_selector="app.kubernetes.io/managed-by=nsm-operator").items
            except Exception:  # noqa: BLE001 - the API server may be restarting; try again
                continue
            for pvc in claims:
                ns, name = pvc.metadata.namespace, pvc.metadata.name
                if not ns.startswith("test-op-") or pvc.spec.volume_name or pvc.status.phase != "Pending":
                    continue
                pv_name = f"pv-{ns}-{name}"[:253]
                pv = {"apiVersion": "v1", "kind": "PersistentVolume",
                      "metadata": {"name": pv_name, "labels": {"nsm.dev/e2e": "operator"}},
                      "spec": {"capacity": {"storage": pvc.spec.resources.requests["storage"]},
                               "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
                               "storageClassName": pvc.spec.storage_class_name or "",
                               "hostPath": {"path": f"/tmp/{pv_name}"},
                               "claimRef": {"namespace": ns, "name": name, "uid": pvc.metadata.uid}}}  # fmt: skip
                try:
                    self.core_v1.create_persistent_volume(pv)
                    self.created.append(pv_name)
                except ApiException as exc:
                    if exc.status != 409:
                        print(f"provisioner: {exc}", file=sys.stderr)

    def cleanup(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        for name in self.created:
            try:
                self.core_v1.delete_persistent_volume(name)
            except Exception:  # noqa: BLE001 - best effort at session end
                pass


@pytest.fixture(scope="session")
def provisioner(cluster, core_v1) -> Iterator[Provisioner]:
    p = Provisioner(core_v1)
    p.start()
    yield p
    p.cleanup()


@pytest.fixture(scope="session")
def operator_process(cluster, nsm_crd, provisioner) -> Iterator[OperatorProcess]:
    op = OperatorProcess(str(cluster.kubeconfig), LOG_DIR / f"nsm-operator-{int(time.time())}.log")
    op.start()
    yield op
    op.stop()


@pytest.fixture
def operator(operator_process, request) -> Iterator[OperatorProcess]:
    """The session's operator (restarted if a previous test killed it); its log on failure."""
    if operator_process.proc is None or operator_process.proc.poll() is not None:
        operator_process.start()
    start = len(operator_process.log())
    yield operator_process
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"---- nsm-operator log during {request.node.name} ----\n{operator_process.log()[start:][-8000:]}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


class Trainings:
    """kubectl-style helpers for one test namespace."""

    def __init__(self, cluster, namespace: str, custom_objects, batch_v1, core_v1):
        self.cluster, self.ns = cluster, namespace
        self.custom, self.batch, self.core = custom_objects, batch_v1, core_v1

    def apply(self, name: str, *, annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
              **spec: Any) -> dict[str, Any]:  # fmt: skip
        body = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
                "metadata": {"name": name, "namespace": self.ns, "annotations": annotations or {},
                             "labels": labels or {}},
                "spec": {"domain": "causal", "epochs": 3, **spec}}  # fmt: skip
        self.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=True)
        return body

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.custom.get_namespaced_custom_object("nsm.dev", "v1alpha1", self.ns, "nsmtrainings", name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, name: str) -> dict[str, Any]:
        return (self.get(name) or {}).get("status") or {}

    def wait_phase(self, name: str, phase: str, timeout: float = 45) -> dict[str, Any]:
        return wait_for(lambda: (st := self.status(name)).get("phase") == phase and st, timeout,
                        f"{self.ns}/{name} phase {phase}", lambda: json.dumps(self.status(name), indent=1))

    def jobs(self, name: str) -> list:
        return self.batch.list_namespaced_job(self.ns, label_selector=f"nsm.dev/training={name}").items


@pytest.fixture
def nsmt(cluster, namespace, operator, custom_objects, batch_v1, core_v1) -> Trainings:
    assert namespace.startswith("test-op-"), "name tests test_op_* so the operator serves their namespace"
    return Trainings(cluster, namespace, custom_objects, batch_v1, core_v1)
