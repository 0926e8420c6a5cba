"""The corpus of malformed NSMTrainings (tests/invalid_trainings.py) against the real API server
with the operator running: each is rejected by ``kubectl apply`` naming the field, or reaches
Failed naming the field within 30 s; nothing is created for any of them; the operator never
restarts. Edits of immutable fields are refused too."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.invalid_trainings import CASES, spec_of

pytestmark = pytest.mark.e2e


def _manifest(ns: str, name: str, spec: dict) -> str:
    return yaml.safe_dump({"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
                           "metadata": {"name": name, "namespace": ns}, "spec": spec})  # fmt: skip


def test_op_malformed_trainings_are_refused_naming_the_field(nsmt, cluster, core_v1, rbac_v1, operator):
    pid = operator.proc.pid
    problems, applied = [], []
    for case_id, fields, field in CASES:
        out = cluster.kubectl("apply", "-f", "-", input=_manifest(nsmt.ns, case_id, spec_of(fields)))
        if out.returncode != 0:
            if field not in out.stderr:
                problems.append(f"{case_id}: refused without naming {field}: {out.stderr.strip()}")
            continue
        applied.append((case_id, field))
    for case_id, field in applied:  # accepted by the API server: the operator must fail it
        deadline = time.monotonic() + 30
        while (st := nsmt.status(case_id)).get("phase") != "Failed" and time.monotonic() < deadline:
            time.sleep(0.5)
        if st.get("phase") != "Failed" or field not in (st.get("message") or ""):
            problems.append(f"{case_id}: applied, and not Failed naming {field} within 30 s: {st}")
    assert not problems, "\n".join(problems)
    assert not nsmt.jobs("") and not nsmt.batch.list_namespaced_job(nsmt.ns).items
    assert not core_v1.list_namespaced_persistent_volume_claim(nsmt.ns).items
    assert not core_v1.list_namespaced_config_map(nsmt.ns, label_selector="app.kubernetes.io/managed-by=nsm-operator").items
    assert [sa.metadata.name for sa in core_v1.list_namespaced_service_account(nsmt.ns).items] == ["default"]
    assert not rbac_v1.list_namespaced_role(nsmt.ns).items
    assert operator.proc.poll() is None and operator.proc.pid == pid, "the operator restarted"


def test_op_name_too_long_is_refused(nsmt, cluster):
    out = cluster.kubectl("apply", "-f", "-", input=_manifest(nsmt.ns, "n" * 57, spec_of({})))
    assert out.returncode != 0 and "metadata.name must be at most 56 characters" in out.stderr
    # Several nodes: hostnames <name>-a<n>-<i> and the Service <name>-rdzv are DNS labels.
    for name in ("n" * 53, "1abc"):
        out = cluster.kubectl("apply", "-f", "-", input=_manifest(nsmt.ns, name, spec_of({"resources": {"nodes": 2}})))
        assert out.returncode != 0 and "must start with a letter and have at most 52 characters" in out.stderr


@pytest.mark.parametrize(("field", "value"), [("domain", "planning"), ("target", "modal")])
def test_op_immutable_fields_cannot_be_edited(nsmt, cluster, field, value):
    nsmt.apply("frozen", suspend=True)
    nsmt.wait_phase("frozen", "Suspended")
    out = cluster.kubectl("patch", "nsmt", "frozen", "-n", nsmt.ns, "--type=merge", "-p",
                          f'{{"spec": {{"{field}": "{value}"}}}}')  # fmt: skip
    assert out.returncode != 0 and f"spec.{field} is immutable" in out.stderr
    assert nsmt.get("frozen")["spec"][field] != value


def test_op_nodes_cannot_be_edited(nsmt, cluster):
    """The checkpoint claim's access mode follows from resources.nodes (ReadWriteMany for several).
    The training sets no ``resources`` at all: a rule on the field itself would never run."""
    nsmt.apply("frozen-nodes", suspend=True)
    nsmt.wait_phase("frozen-nodes", "Suspended")
    out = cluster.kubectl("patch", "nsmt", "frozen-nodes", "-n", nsmt.ns, "--type=merge", "-p",
                          '{"spec": {"resources": {"nodes": 2}}}')  # fmt: skip
    assert out.returncode != 0 and "spec.resources.nodes is immutable" in out.stderr
    assert "resources" not in nsmt.get("frozen-nodes")["spec"]  # unset: 1, as before
