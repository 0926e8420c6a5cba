"""Fixtures of the chart tests: the helm binary and ``render(...)`` of charts/nsm-operator.

Imported by the test modules (not a conftest.py: several test directories import names from
their conftest, and a second ``conftest`` module would shadow theirs).

helm comes from the same cache as the e2e control plane (tests/cluster/build.sh builds it, pinned
by tests/cluster/versions.sh; ``make test`` runs ``make cluster-bins`` first, so this is a no-op
then). NSM_BIN_HELM=/path/to/helm overrides it. A missing helm FAILS these tests; only
NSM_SKIP_E2E=1 (laptops without Go, which cannot build helm either) skips them, visibly.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "nsm-operator"
VALUES = Path(__file__).resolve().parent / "values"


def kube_version() -> str:
    """The e2e cluster's Kubernetes version (tests/cluster/versions.sh), passed to helm as
    --kube-version: a helm built from source (go install) otherwise assumes v1.20.0 and rejects
    the chart's kubeVersion constraint."""
    text = (REPO / "tests" / "cluster" / "versions.sh").read_text()
    match = re.search(r"^K8S_VERSION=(v?[0-9][^\s#]*)", text, re.M)
    assert match, "K8S_VERSION not found in tests/cluster/versions.sh"
    return match.group(1)


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of the pinned helm binary."""
    override = os.environ.get("NSM_BIN_HELM")
    if override:
        if not os.access(override, os.X_OK):
            pytest.fail(f"NSM_BIN_HELM={override} is not executable", pytrace=False)
        return override
    if _truthy("NSM_SKIP_E2E"):
        pytest.skip("NSM_SKIP_E2E=1: helm is built with the e2e control plane (tests/cluster/build.sh)")
    from tests.cluster import kwok_cluster

    try:
        return kwok_cluster.build_binaries()["helm"]
    except kwok_cluster.ClusterError as exc:
        pytest.fail(f"helm unavailable: {exc} (run `make cluster-bins`, or set NSM_BIN_HELM)", pytrace=False)


class HelmError(AssertionError):
    """helm exited non-zero; the message holds its stderr."""


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # A private HOME/XDG dirs: helm must not read or write the developer's repositories/config.
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/nsm-helm/cache", "HELM_CONFIG_HOME": "/tmp/nsm-helm/config",
           "HELM_DATA_HOME": "/tmp/nsm-helm/data"}
    proc = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


Render = Callable[..., list[dict]]


@pytest.fixture(scope="session")
def render(helm: str) -> Render:
    """``render(*values_files, set=[...], namespace=..., release=...)`` → the rendered objects.

    Values files are names under tests/unit/chart/values/ (or paths).
    """

    def _render(*values: str, set: tuple[str, ...] | list[str] = (), namespace: str = "nsm-system",
                release: str = "nsm-operator", include_crds: bool = False) -> list[dict]:
        args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version()]
        if include_crds:
            args.append("--include-crds")
        for v in values:
            path = Path(v) if os.sep in v else VALUES / v
            args += ["-f", str(path)]
        for s in set:
            args += ["--set", s]
        out = run_helm(helm, *args).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    return _render


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]
