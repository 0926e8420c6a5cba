"""Several nodes (issue #14) on the local control plane: one Indexed Job whose pods the real
scheduler places on the fake A100 nodes, the headless Service whose EndpointSlice (filled by the
real EndpointSlice controller) carries the records the cluster DNS would serve, gang failure and a
new Indexed Job on retry, and the waiting reason of one pod that cannot be placed.

The cluster has no DNS server: the records are read from the EndpointSlice, which is what CoreDNS's
kubernetes plugin serves ``<hostname>.<service>.<namespace>.svc`` from. Pod outcomes come from the
kwok.nsm.dev/* annotations (tests/cluster/kwok-stages.yaml), copied onto the pod template.
"""

from __future__ import annotations

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.e2e


def _discovery(core_v1):
    from kubernetes import client

    return client.DiscoveryV1Api(core_v1.api_client)


def _pods(core_v1, ns: str, job: str) -> list:
    return core_v1.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={job}").items


def dns_records(discovery, ns: str, service: str) -> dict[str, list[str]]:
    """``<hostname>.<service>.<ns>.svc.cluster.local`` -> addresses, from the Service's EndpointSlices."""
    slices = discovery.list_namespaced_endpoint_slice(ns, label_selector=f"kubernetes.io/service-name={service}").items
    records: dict[str, list[str]] = {}
    for s in slices:
        for ep in s.endpoints or []:
            if ep.hostname:
                records.setdefault(f"{ep.hostname}.{service}.{ns}.svc.cluster.local", []).extend(ep.addresses)
    return records


def test_op_two_nodes_run_as_one_indexed_job_behind_a_headless_service(nsmt, core_v1):
    nsmt.apply("ddp", annotations={"kwok.nsm.dev/outcome": "hang"}, resources={"nodes": 2, "gpu": {"count": 2}})
    uid = nsmt.get("ddp")["metadata"]["uid"]
    st = nsmt.wait_phase("ddp", "Running", timeout=60)  # Running once both pods are
    assert st["attempts"] == 1 and st["activeJob"] == "ddp-a1"

    (job,) = nsmt.jobs("ddp")
    spec = job.spec
    assert (spec.completion_mode, spec.completions, spec.parallelism, spec.backoff_limit) == ("Indexed", 2, 2, 0)
    assert spec.template.spec.subdomain == "ddp-rdzv"
    pods = sorted(_pods(core_v1, nsmt.ns, "ddp-a1"), key=lambda p: p.spec.hostname)
    assert [p.spec.hostname for p in pods] == ["ddp-a1-0", "ddp-a1-1"]  # the Job controller's, per index
    for index, pod in enumerate(pods):
        assert pod.spec.node_name.startswith("gpu-a100-") and pod.spec.subdomain == "ddp-rdzv"
        container = pod.spec.containers[0]
        assert container.command[-4:] == ["--nproc-per-node", "2", "--nnodes", "2"]
        env = {e.name: e for e in container.env}
        assert env["MASTER_ADDR"].value == "ddp-a1-0.ddp-rdzv" and env["MASTER_PORT"].value == "29500"
        # The node rank: the Job controller adds JOB_COMPLETION_INDEX to every pod of an Indexed Job.
        assert env["JOB_COMPLETION_INDEX"].value_from.field_ref.field_path.endswith("job-completion-index']")
        assert pod.metadata.annotations["batch.kubernetes.io/job-completion-index"] == str(index)
        assert container.resources.limits["nvidia.com/gpu"] == "2"

    service = core_v1.read_namespaced_service("ddp-rdzv", nsmt.ns)
    assert service.spec.cluster_ip == "None" and service.spec.publish_not_ready_addresses is True
    assert [(r.kind, r.uid, r.controller) for r in service.metadata.owner_references] == [("NSMTraining", uid, True)]
    claim = core_v1.read_namespaced_persistent_volume_claim("ddp-checkpoints", nsmt.ns)
    assert claim.spec.access_modes == ["ReadWriteMany"]

    # What the DNS would answer: pod 0's stable name (MASTER_ADDR) resolves to pod 0's address.
    discovery = _discovery(core_v1)
    domain = f"ddp-rdzv.{nsmt.ns}.svc.cluster.local"
    records = wait_for(lambda: (r := dns_records(discovery, nsmt.ns, "ddp-rdzv")) and len(r) == 2 and r, 30,
                       "EndpointSlice with both pods' hostnames", lambda: str(dns_records(discovery, nsmt.ns, "ddp-rdzv")))
    assert records == {f"ddp-a1-{i}.{domain}": [pods[i].status.pod_ip] for i in (0, 1)}

    # Deleted with the training (owner reference, garbage collector).
    nsmt.cluster.kubectl("delete", "nsmt", "ddp", "-n", nsmt.ns, "--wait=false", check=True)
    from kubernetes.client.rest import ApiException

    def service_gone() -> bool:
        try:
            core_v1.read_namespaced_service("ddp-rdzv", nsmt.ns)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(service_gone, 60, "the Service garbage-collected with its training")


def test_op_one_failed_pod_fails_the_attempt_and_the_retry_is_a_new_indexed_job(nsmt, core_v1):
    # Attempt 1: pod 1 exits 1 after 2 s, pod 0 hangs (a rank waiting for its peer); attempt 2 succeeds.
    nsmt.apply("gang", annotations={"kwok.nsm.dev/outcome": "fail-first-index", "kwok.nsm.dev/run-seconds": "2"},
               resources={"nodes": 2}, retry={"maxRetries": 1, "initialDelaySeconds": 3, "maxDelaySeconds": 3})
    service = wait_for(lambda: _service(core_v1, nsmt.ns, "gang-rdzv"), 30, "the rendezvous Service")
    st = nsmt.wait_phase("gang", "Retrying", timeout=60)
    assert st["attempts"] == 1 and st["retries"] == 1 and st["failureReason"] == "Error"
    st = nsmt.wait_phase("gang", "Succeeded", timeout=120)
    assert st["attempts"] == 2 and st["retries"] == 1

    jobs = {j.metadata.name: j for j in nsmt.jobs("gang")}
    assert set(jobs) == {"gang-a1", "gang-a2"}
    failed = next(c for c in jobs["gang-a1"].status.conditions or [] if c.type == "Failed" and c.status == "True")
    assert failed.reason == "BackoffLimitExceeded" and not jobs["gang-a1"].status.succeeded  # pod 0 never finished
    a2 = jobs["gang-a2"]
    assert (a2.spec.completion_mode, a2.spec.completions, a2.spec.parallelism) == ("Indexed", 2, 2)
    assert a2.status.succeeded == 2
    env = {e.name: e.value for e in a2.spec.template.spec.containers[0].env}
    assert env["MASTER_ADDR"] == "gang-a2-0.gang-rdzv"
    # One Service for the training, reused by the retry.
    assert _service(core_v1, nsmt.ns, "gang-rdzv").metadata.uid == service.metadata.uid


def test_op_one_pod_that_cannot_be_placed_keeps_the_attempt_waiting(nsmt):
    # 3 pods x 8 GPUs on two 8-GPU nodes: two run, the scheduler cannot place the third.
    nsmt.apply("big", annotations={"kwok.nsm.dev/outcome": "hang"}, resources={"nodes": 3, "gpu": {"count": 8}},
               startupTimeoutSeconds=3600)  # fmt: skip
    st = wait_for(lambda: (s := nsmt.status("big")).get("reason") == "Unschedulable" and s, 45,
                  "status.reason Unschedulable", lambda: str(nsmt.status("big")))  # fmt: skip
    assert st["phase"] == "Pending" and "Insufficient nvidia.com/gpu" in st["message"]
    waiting = next(c for c in st["conditions"] if c["type"] == "Waiting")
    assert waiting["status"] == "True" and waiting["reason"] == "Unschedulable"


def _service(core_v1, ns: str, name: str):
    from kubernetes.client.rest import ApiException

    try:
        return core_v1.read_namespaced_service(name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
