"""Chaos under load: 100 trainings applied in a burst while the operator process is SIGKILLed
three times (and restarted each time, as its Deployment would). Afterwards every training has
exactly its first attempt's Job and exactly the children the builders define for it, each
controlled by it (the ones made after the launch's status write included: a restart finishes them); none is lost (every one has its status) and none started a second attempt.

The trainings name a ``queueName``, so their Jobs are created suspended (no Kueue here): the test
is about the operator's bookkeeping across crashes (children, attempt Jobs, status), not pods.
No timing is asserted; the kills are placed by how many Jobs exist.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from nsm_operator.builders import build_children, build_job
from nsm_operator.builders.names import LABEL_TRAINING
from nsm_operator.resource import Training
from nsm_operator.settings import OperatorSettings
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.e2e
COUNT = 100
KILL_AT_JOBS = (15, 45, 75)  # SIGKILL once this many Jobs exist: early, mid and late in the burst


def _controller_uid(obj) -> str | None:
    return next((ref.uid for ref in obj.metadata.owner_references or [] if ref.controller), None)


def _built_controller_uid(manifest) -> str | None:
    """The controller the builder gives a child (none for a retained checkpoint PVC)."""
    refs = manifest["metadata"].get("ownerReferences") or []
    return next((ref["uid"] for ref in refs if ref.get("controller")), None)


def _children(nsmt, core_v1, rbac_v1) -> dict[str, set[tuple[str, str, str | None]]]:
    """Per training label: the (kind, name, controller uid) of every labelled child in the namespace."""
    ns, selector = nsmt.ns, LABEL_TRAINING
    listed = {
        "Job": nsmt.batch.list_namespaced_job(ns, label_selector=selector).items,
        "PersistentVolumeClaim": core_v1.list_namespaced_persistent_volume_claim(ns, label_selector=selector).items,
        "ConfigMap": core_v1.list_namespaced_config_map(ns, label_selector=selector).items,
        "ServiceAccount": core_v1.list_namespaced_service_account(ns, label_selector=selector).items,
        "Role": rbac_v1.list_namespaced_role(ns, label_selector=selector).items,
        "RoleBinding": rbac_v1.list_namespaced_role_binding(ns, label_selector=selector).items,
    }
    found: dict[str, set[tuple[str, str, str | None]]] = defaultdict(set)
    for kind, items in listed.items():
        for obj in items:
            found[obj.metadata.labels[LABEL_TRAINING]].add((kind, obj.metadata.name, _controller_uid(obj)))
    return found


def test_op_sigkill_during_a_burst_loses_nothing_and_duplicates_nothing(nsmt, operator, core_v1, rbac_v1):
    names = [f"chaos-{i:03d}" for i in range(COUNT)]

    def create(name: str) -> None:
        body = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
                "metadata": {"name": name, "namespace": nsmt.ns},
                "spec": {"domain": "causal", "epochs": 3, "queueName": "chaos",
                         "resources": {"gpu": {"count": 0}, "cpu": "100m", "memory": "128Mi"}}}  # fmt: skip
        nsmt.custom.create_namespaced_custom_object("nsm.dev", "v1alpha1", nsmt.ns, "nsmtrainings", body)

    def apply_all() -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, names))

    applying = threading.Thread(target=apply_all, daemon=True)
    applying.start()
    kills = []
    for threshold in KILL_AT_JOBS:
        jobs = wait_for(lambda t=threshold: (n := len(nsmt.batch.list_namespaced_job(nsmt.ns).items)) >= t and n,
                        240, f"{threshold} Jobs before a SIGKILL", operator.log)  # fmt: skip
        operator.kill()
        kills.append(jobs)
        operator.start()
    applying.join(timeout=120)
    assert not applying.is_alive(), "the trainings were not all created"
    print(f"SIGKILLs with {kills} of {COUNT} Jobs in place")

    def all_queued() -> bool:
        items = nsmt.custom.list_namespaced_custom_object("nsm.dev", "v1alpha1", nsmt.ns, "nsmtrainings")["items"]
        return len(items) == COUNT and all((t.get("status") or {}).get("phase") == "Queued" for t in items) and items

    trainings = wait_for(all_queued, 300, f"all {COUNT} trainings Queued", operator.log, interval=1.0)
    settings = OperatorSettings.from_env({})
    expected = {}
    for body in trainings:
        training = Training.from_body(body)
        status = body["status"]
        assert status["attempts"] == 1, json.dumps(status)
        assert status.get("activeJob") == f"{training.name}-a1", json.dumps(status)
        expected[training.name] = {(c["kind"], c["metadata"]["name"], _built_controller_uid(c))
                                   for c in [*build_children(training), build_job(training, 1, settings)]}  # fmt: skip
    # The PVC, ConfigMaps and RBAC follow the launch's status write (handlers/finishing.py): wait
    # until every training has at least its own, then compare exactly.
    seen: dict[str, set] = {}

    def complete() -> dict | None:
        seen.clear()
        seen.update(_children(nsmt, core_v1, rbac_v1))
        return dict(seen) if all(expected[n] <= seen.get(n, set()) for n in names) else None

    def missing() -> str:
        lacking = {n: sorted(expected[n] - seen.get(n, set())) for n in names if expected[n] - seen.get(n, set())}
        return f"{operator.log()}\nmissing children: {lacking}"

    children = wait_for(complete, 120, "every training's children", missing, interval=1.0)
    assert set(children) == set(names), "children labelled for a training that does not exist"
    for name in names:
        # Exactly the builders' children, controlled as the builders say (by this training): no
        # second attempt's Job, no duplicate, no orphan (e.g. a child of a lost training object).
        assert children[name] == expected[name], name
