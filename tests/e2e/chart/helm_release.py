"""Fixture of the chart's e2e tests: a helm release of charts/nsm-operator in a fresh namespace
of the local control plane (tests/cluster), uninstalled afterwards. Imported by the test module
(not a conftest.py, whose module name other test directories rely on)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "nsm-operator"


def kube_version() -> str:
    """The cluster's Kubernetes version (tests/cluster/versions.sh), for `helm template`: a helm
    built with `go install` otherwise assumes v1.20.0 and rejects the chart's kubeVersion."""
    text = (REPO / "tests" / "cluster" / "versions.sh").read_text()
    return re.search(r"^K8S_VERSION=(v?[0-9][^\s#]*)", text, re.M).group(1)


@dataclass
class Release:
    name: str
    namespace: str
    fullname: str
    serviceaccount: str


def run_helm(cluster, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/nsm-helm/cache", "HELM_CONFIG_HOME": "/tmp/nsm-helm/config",
           "HELM_DATA_HOME": "/tmp/nsm-helm/data"}
    proc = subprocess.run([cluster.bin["helm"], "--kubeconfig", str(cluster.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def release(cluster, namespace) -> Release:
    """`helm install` of the chart (default values) into a namespace that enforces the
    *restricted* Pod Security Standard, so the API server itself vets the operator pod."""
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest", check=True)
    name = f"nsmop-{namespace[-5:]}"  # cluster-scoped RBAC objects need a name unique per test
    # --take-ownership: the CRD is cluster-wide and outlives releases (helm.sh/resource-policy:
    # keep), so in one test session it may come from the nsm_crd fixture or an earlier release.
    run_helm(cluster, "install", name, str(CHART), "--namespace", namespace, "--take-ownership")
    fullname = f"{name}-nsm-operator"
    yield Release(name=name, namespace=namespace, fullname=fullname, serviceaccount=fullname)
    run_helm(cluster, "uninstall", name, "--namespace", namespace, "--wait", check=False)


def can_i(cluster, user: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i VERB RESOURCE[/SUBRESOURCE] --as USER [-n NAMESPACE]`."""
    # `can-i VERB TYPE/NAME` reads "jobs/status" as a name; subresources go in --subresource
    # (but "secrets/NAME" is a name: secrets have no subresources).
    sub = ""
    if not resource.startswith("secrets/"):
        resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, resource, f"--as={user}"] + ([f"--subresource={sub}"] if sub else [])
    args += ["-n", namespace] if namespace else []
    proc = cluster.kubectl(*args)
    answer = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stdout} {proc.stderr}"
    return answer == "yes"
