"""Fixtures of the Modal target's e2e tests: the real operator process on the local control plane,
talking to the FAKE Modal bridge (Modal's servers are unreachable from the test machines).

The operator is started with ``NSM_OPERATOR_MODAL_BRIDGE=tests.fakes.modal_bridge:from_env`` and
``NSM_FAKE_MODAL_DIR=<tmp>`` (and the repository on ``PYTHONPATH`` so it can import the fake);
the tests script each training's calls by writing ``<tmp>/script/<name>.json`` (see
``tests/fakes/modal_bridge.py``) and read what the operator did from the same directory.

No __init__.py in this directory on purpose: a test package named ``modal`` would shadow the SDK.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.waiting import wait_crd_established
from tests.e2e.chart.operator_process import OperatorProcess
from tests.e2e.modal.support import CRD, POLL_SECONDS, REPO, TOKEN_ID, TOKEN_SECRET
from tests.fakes.modal_bridge import FakeBridge


@pytest.fixture(scope="session")
def nsm_crd(cluster) -> None:
    """The NSMTraining CRD, applied once (idempotent) and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD), check=True)
    wait_crd_established(cluster, "nsmtrainings.nsm.dev")


@pytest.fixture
def fake_modal(tmp_path: Path) -> FakeBridge:
    """The fake bridge's state directory, shared with the operator process."""
    return FakeBridge(tmp_path / "fake-modal")


@pytest.fixture
def modal_secret(core_v1, namespace: str) -> dict[str, str]:
    """The credentials Secret the operator reads (NSM_OPERATOR_MODAL_SECRET, default name)."""
    data = {"MODAL_TOKEN_ID": TOKEN_ID, "MODAL_TOKEN_SECRET": TOKEN_SECRET}
    core_v1.create_namespaced_secret(namespace, {
        "metadata": {"name": "modal-credentials"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    })
    return data


@pytest.fixture
def modal_operator(cluster, nsm_crd, namespace: str, fake_modal: FakeBridge, modal_secret, custom_objects,
                   tmp_path: Path) -> Iterator[Callable[[], OperatorProcess]]:
    """``start()`` → a running operator for ``namespace`` using the fake bridge (call again after
    it died to restart it). At the end the test's trainings are deleted while the operator still
    runs (Modal trainings carry its finalizer), then it is stopped; its log is printed when a
    test fails."""
    procs: list[OperatorProcess] = []

    def start() -> OperatorProcess:
        proc = OperatorProcess(
            kubeconfig=Path(cluster.kubeconfig), namespaces=[namespace],
            log_path=tmp_path / f"operator-{len(procs) + 1}.log",
            env={
                "NSM_OPERATOR_MODAL_BRIDGE": "tests.fakes.modal_bridge:from_env",
                "NSM_FAKE_MODAL_DIR": str(fake_modal.root),
                "NSM_OPERATOR_MODAL_POLL_SECONDS": str(POLL_SECONDS),
                "NSM_OPERATOR_MODAL_LAUNCH_GRACE_SECONDS": "3",
                "PYTHONPATH": str(REPO),
            },
        )
        procs.append(proc)
        return proc.start()

    yield start
    try:
        _delete_trainings(custom_objects, namespace, operator_alive=bool(procs) and procs[-1].proc.poll() is None)
    finally:
        for proc in procs:
            proc.stop()


def _delete_trainings(custom_objects, namespace: str, operator_alive: bool, timeout: float = 30) -> None:
    group, version, plural = "nsm.dev", "v1alpha1", "nsmtrainings"
    for item in custom_objects.list_namespaced_custom_object(group, version, namespace, plural)["items"]:
        custom_objects.delete_namespaced_custom_object(group, version, namespace, plural, item["metadata"]["name"])
    deadline = time.monotonic() + (timeout if operator_alive else 0)
    while True:
        left = custom_objects.list_namespaced_custom_object(group, version, namespace, plural)["items"]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for item in left:  # no operator to release them: drop the finalizer so the namespace can go
        custom_objects.patch_namespaced_custom_object(group, version, namespace, plural, item["metadata"]["name"],
                                                      {"metadata": {"finalizers": None}})


@pytest.fixture
def operator_logs(request, tmp_path: Path) -> Iterator[None]:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for log in sorted(tmp_path.glob("operator-*.log")):
            print(f"----- {log.name} -----\n{log.read_text()[-8000:]}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
