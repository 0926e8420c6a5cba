"""The progress channel against kmock: the trainer's ConfigMap is mirrored into the status with
no GET of the training and one status patch per change; a forged field changes nothing."""

from __future__ import annotations

import json
import re

from tests.operator.conftest import NAMESPACE, RUNNING, eventually, phase_is, set_job_status, training


def _requests(k8s, method: str, path: str) -> int:
    return len(list(k8s[method, re.compile(rf".*/namespaces/{NAMESPACE}/nsmtrainings/{path}$")]))


async def test_progress_configmap_is_mirrored_cheaply_and_only_whitelisted(k8s, api, operator):
    body = training("p", epochs=10)
    # kmock keeps no resourceVersion of its own; without one the operator's body cache (which
    # spares the mirror a GET) cannot order bodies, so give the object one, as the API server does.
    body["metadata"]["resourceVersion"] = "1"
    await api.create(body)
    cm = await eventually(lambda: api.get("ConfigMap", NAMESPACE, "p-progress"))
    assert cm["metadata"]["labels"]["nsm.dev/channel"] == "progress" and not cm.get("data")
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-p"
    await eventually(lambda: api.get("Job", NAMESPACE, "p-a1"))
    await set_job_status(api, "p-a1", RUNNING)
    await eventually(lambda: phase_is(api, "p", "Running"))
    await eventually(lambda: (operator.ctx.cached(NAMESPACE, "p") or {}).get("status", {}).get("phase") == "Running")

    gets, patches = _requests(k8s, "get", "p"), _requests(k8s, "patch", "p/status")
    progress = {"epoch": 3, "epochs": 10, "valAccuracy": 0.75, "updatedAt": "2026-01-01T00:10:00Z",
                "phase": "Succeeded", "retries": 0}  # fmt: skip
    await api.patch("ConfigMap", NAMESPACE, "p-progress", {"data": {
        "progress": json.dumps(progress), "status": json.dumps({"phase": "Succeeded", "attempts": 9})}})

    def mirrored():
        st = (operator.ctx.cached(NAMESPACE, "p") or {}).get("status") or {}
        return st if (st.get("progress") or {}).get("epoch") == 3 else None

    st = await eventually(mirrored)
    assert st["phase"] == "Running" and st["attempts"] == 1 and st["epochSummary"] == "3/10"
    assert "phase" not in st["progress"] and "retries" not in st["progress"]
    assert "costEstimate" in st  # derived in the same patch (its value: test_handlers.py)
    assert _requests(k8s, "get", "p") == gets, "the mirror must not GET the training"
    assert _requests(k8s, "patch", "p/status") == patches + 1, "one status patch per progress change"
