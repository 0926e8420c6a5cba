"""pytest fixtures for the real control plane (registered by tests/conftest.py via pytest_plugins).

Fixtures
  cluster_bins      session: {tool: path} of the cached binaries (runs build.sh; no cluster)
  cluster           session: a started kwok cluster (lazy: only when a test asks for it), torn down
                    at the end; attributes .name .kubeconfig .workdir .bin {tool: path, incl.
                    kubectl, helm, kwokctl} and .kubectl(*args) -> CompletedProcess
  kubeconfig        session: str path of the cluster's kubeconfig
  k8s_api           session: kubernetes.client.ApiClient for that kubeconfig
  core_v1, batch_v1, custom_objects, apiextensions_v1, rbac_v1   session: API clients on k8s_api
  namespace         function: a fresh namespace (its `default` ServiceAccount exists), deleted after

Environment
  NSM_KUBECONFIG=path  reuse a running cluster (e.g. `make cluster-up`) instead of starting one
  NSM_SKIP_E2E=1       skip every test that needs the cluster (laptops without Go); otherwise a
                       cluster that cannot be built or started FAILS those tests (also when CI=true)
  NSM_KEEP_CLUSTER=1   leave the session cluster running at the end (its kubeconfig is printed)

Tests that use `cluster` (directly or through the fixtures above) get the `e2e` marker
automatically, so `-m e2e` / `-m "not e2e"` select them. When any test of the session failed, the
component logs, events and pod/job descriptions are copied under test-logs/cluster/.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from . import kwok_cluster
from .kwok_cluster import Cluster, ClusterError

REPO = Path(__file__).resolve().parents[2]
LOG_DIR = REPO / "test-logs" / "cluster"
_CLUSTER_FIXTURES = {
    "cluster", "cluster_bins", "kubeconfig", "k8s_api", "core_v1", "batch_v1", "custom_objects",
    "apiextensions_v1", "rbac_v1", "namespace",
}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _CLUSTER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def _say(request):
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def say(msg: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[cluster] {msg}")
        else:
            print(f"[cluster] {msg}", file=sys.stderr)

    return say


@pytest.fixture(scope="session")
def cluster_bins(request) -> dict[str, str]:
    """{tool: path} of the cached control-plane binaries (built by build.sh on first use)."""
    if _truthy("NSM_SKIP_E2E"):
        pytest.skip("NSM_SKIP_E2E=1: tests that need the local control plane are skipped on request")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    t0 = time.monotonic()
    if not kwok_cluster.binaries_cached():
        _say(request)("cold cache: building the control plane binaries (tens of minutes on 2 cores; "
                      "`make cluster-bins` does this outside pytest)")
        # pytest-timeout's per-test limit must not kill a cold build run from a fixture.
        item = getattr(request, "_pyfuncitem", None)
        hook = getattr(request.config.hook, "pytest_timeout_cancel_timer", None)
        if item is not None and hook is not None:
            hook(item=item)
    error = None
    try:
        # Let build.sh's progress reach the terminal (a cold build takes tens of minutes).
        if capman is not None:
            with capman.global_and_fixture_disabled():
                bins = kwok_cluster.build_binaries()
        else:
            bins = kwok_cluster.build_binaries()
    except ClusterError as exc:
        error = str(exc)
    if error:
        pytest.fail(f"e2e control plane binaries unavailable: {error} (set NSM_SKIP_E2E=1 to skip e2e tests)",
                    pytrace=False)
    _say(request)(f"binaries ready in {time.monotonic() - t0:.1f}s")
    return bins


@pytest.fixture(scope="session")
def cluster(request, cluster_bins) -> Cluster:
    say = _say(request)
    bins = cluster_bins

    reuse = os.environ.get("NSM_KUBECONFIG")
    if reuse:
        error = None
        try:
            c = kwok_cluster.attach(reuse, bins)
        except ClusterError as exc:
            error = str(exc)
        if error:
            pytest.fail(error, pytrace=False)
        say(f"reusing cluster {c.name} (NSM_KUBECONFIG={c.kubeconfig})")
        yield c
        if request.session.testsfailed:
            _save_logs(c, say)
        return

    for path in kwok_cluster.reap_orphans(bins):
        say(f"removed orphaned cluster {path} (its pytest process is gone)")
    c = kwok_cluster.new_session_cluster(bins)
    keep = _truthy("NSM_KEEP_CLUSTER")
    if not keep:
        atexit.register(_stop_quietly, c)  # also on an interrupted session
        _stop_on_sigterm(c)  # `timeout pytest ...` sends SIGTERM, which skips atexit
    error = None
    try:
        c.start()
    except Exception as exc:  # noqa: BLE001
        error = f"{type(exc).__name__}: {exc}"
    if error:
        _save_logs(c, say)
        c.stop()
        pytest.fail(f"could not start the e2e control plane: {error} (logs: {LOG_DIR / c.name}; "
                    "set NSM_SKIP_E2E=1 to skip e2e tests)", pytrace=False)
    say(f"started {c.name} in {c.start_seconds:.1f}s; KUBECONFIG={c.kubeconfig}")
    try:
        yield c
    finally:
        if request.session.testsfailed:
            _save_logs(c, say)
        if keep:
            say(f"NSM_KEEP_CLUSTER=1: left running; export KUBECONFIG={c.kubeconfig}; "
                f"stop with: python tests/cluster/kwok_cluster.py down --name {c.name} --workdir {c.workdir}")
        else:
            c.stop()
            say(f"stopped {c.name}")


def _stop_on_sigterm(c: Cluster) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # somebody else handles it

    def handler(signum, frame):
        _stop_quietly(c)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)


def _stop_quietly(c: Cluster) -> None:
    try:
        c.stop()
    except Exception:  # noqa: BLE001
        pass


def _save_logs(c: Cluster, say) -> None:
    dest = LOG_DIR / c.name
    try:
        if dest.exists():
            shutil.rmtree(dest)
        c.collect_logs(dest)
        say(f"cluster logs saved under {dest}")
    except Exception as exc:  # noqa: BLE001 - never hide the test result behind a log failure
        say(f"could not save cluster logs: {exc}")


@pytest.fixture(scope="session")
def kubeconfig(cluster) -> str:
    return str(cluster.kubeconfig)


@pytest.fixture(scope="session")
def k8s_api(kubeconfig):
    from kubernetes import config

    api = config.new_client_from_config(config_file=kubeconfig)
    yield api
    api.close()


@pytest.fixture(scope="session")
def core_v1(k8s_api):
    from kubernetes import client

    return client.CoreV1Api(k8s_api)


@pytest.fixture(scope="session")
def batch_v1(k8s_api):
    from kubernetes import client

    return client.BatchV1Api(k8s_api)


@pytest.fixture(scope="session")
def custom_objects(k8s_api):
    from kubernetes import client

    return client.CustomObjectsApi(k8s_api)


@pytest.fixture(scope="session")
def apiextensions_v1(k8s_api):
    from kubernetes import client

    return client.ApiextensionsV1Api(k8s_api)


@pytest.fixture(scope="session")
def rbac_v1(k8s_api):
    from kubernetes import client

    return client.RbacAuthorizationV1Api(k8s_api)


@pytest.fixture
def namespace(request, core_v1) -> str:
    """A fresh namespace named after the test; deleted (without waiting) afterwards."""
    from kubernetes.client.rest import ApiException

    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-") or "t"
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace({"metadata": {"name": name, "labels": {"nsm.dev/e2e": "true"}}})
    # ServiceAccount admission rejects pods until the namespace's `default` ServiceAccount exists.
    deadline = time.monotonic() + 30
    while True:
        try:
            core_v1.read_namespaced_service_account("default", name)
            break
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield name
    try:
        core_v1.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
