"""Run the real operator as a local process with a chosen identity (used by the chart's e2e
tests and by tests/e2e/prometheus, which scrapes its /metrics).

The identity is the chart's ServiceAccount: a kubeconfig that carries a token from
``kubectl create token`` (the API server authenticates it as ``system:serviceaccount:<ns>:<sa>``,
so RBAC sees exactly what the in-cluster Deployment would).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serviceaccount_kubeconfig(cluster, namespace: str, serviceaccount: str, path: Path) -> Path:
    """A kubeconfig for the cluster's API server that authenticates as the ServiceAccount."""
    token = cluster.kubectl("create", "token", serviceaccount, "-n", namespace, "--duration=2h", check=True).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    ctx_name = admin["current-context"]
    ctx = next(c["context"] for c in admin["contexts"] if c["name"] == ctx_name)
    server = next(c["cluster"] for c in admin["clusters"] if c["name"] == ctx["cluster"])
    user = f"system:serviceaccount:{namespace}:{serviceaccount}"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": server}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "e2e", "user": user, "namespace": namespace}}],
        "current-context": "sa",
    }))
    path.chmod(0o600)
    return path


@dataclass
class OperatorProcess:
    """``nsm-operator -n NAMESPACE`` against ``kubeconfig``; a context manager."""

    kubeconfig: Path
    namespaces: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60) -> "OperatorProcess":
        exe = Path(sys.executable).parent / "nsm-operator"
        args = [str(exe), f"--liveness=http://127.0.0.1:{self.health_port}/healthz"]
        for ns in self.namespaces:
            args += ["-n", ns]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NSM_OPERATOR_", "KUBERNETES_"))}
        env.update({"KUBECONFIG": str(self.kubeconfig), "NSM_OPERATOR_METRICS_PORT": str(self.metrics_port),
                    "PYTHONUNBUFFERED": "1", **self.env})
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nsm-operator exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"nsm-operator not healthy within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: only the operator's processes
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "OperatorProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def static_volume(cluster, namespace: str, claim: str, size: str = "1Gi") -> str:
    """A PersistentVolume pre-bound to ``namespace/claim``: the test cluster has no provisioner, so
    the operator's checkpoint PVC binds to this and the trainer pod can be scheduled. Its access mode
    is the operator's default for checkpoint PVCs (a claim binds only to a volume that offers it)."""
    name = f"pv-{namespace}-{claim}"[:63].rstrip("-")
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": {"nsm.dev/e2e": "true"}},
          "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOncePod"],
                   "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "",
                   "hostPath": {"path": f"/tmp/{name}"},
                   "claimRef": {"namespace": namespace, "name": claim}}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(pv), check=True)
    return name
