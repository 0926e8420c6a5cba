"""Label the pods whose kwok outcome depends on "is this the first pod of its Job".

kwok's stage selectors only see the pod they act on, and a Job's replacement pod is a copy of the
same template (same labels, same annotations), so ``kwok.nsm.dev/outcome: disrupt-first`` cannot
tell the first pod of a Job from its replacement on its own. This small watcher runs next to the
cluster (started by tests/cluster/kwok_cluster.py, so by the pytest fixture and by up.sh) and puts
``kwok.nsm.dev/pod-seq: "<n>"`` on every pod annotated ``kwok.nsm.dev/outcome: disrupt-first``:
``n`` is the pod's rank, by creation time, among the pods its Job has created (1 for a pod with no
Job). The stages in kwok-stages.yaml keep such a pod Running until the label is there.

Usage: python tests/cluster/pod_marker.py --kubeconfig PATH
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

OUTCOME = "kwok.nsm.dev/outcome"
SEQ_LABEL = "kwok.nsm.dev/pod-seq"
NEEDS_SEQ = {"disrupt-first"}

log = logging.getLogger("pod-marker")


def _job_uid(pod) -> str | None:
    for ref in pod.metadata.owner_references or []:
        if ref.kind == "Job" and ref.controller:
            return ref.uid
    return None


def _seq(core, pod) -> int:
    uid = _job_uid(pod)
    if uid is None:
        return 1
    siblings = core.list_namespaced_pod(
        pod.metadata.namespace, label_selector=f"batch.kubernetes.io/controller-uid={uid}"
    ).items
    siblings = [p for p in siblings if _job_uid(p) == uid]
    if not any(p.metadata.uid == pod.metadata.uid for p in siblings):
        siblings.append(pod)
    siblings.sort(key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))
    return 1 + [p.metadata.uid for p in siblings].index(pod.metadata.uid)


_labelled: set[str] = set()  # pod uids already patched (watch events may predate the patch)


def handle(core, pod) -> None:
    meta = pod.metadata
    if (meta.annotations or {}).get(OUTCOME) not in NEEDS_SEQ:
        return
    if SEQ_LABEL in (meta.labels or {}) or meta.deletion_timestamp is not None or meta.uid in _labelled:
        return
    seq = _seq(core, pod)
    core.patch_namespaced_pod(meta.name, meta.namespace, {"metadata": {"labels": {SEQ_LABEL: str(seq)}}})
    _labelled.add(meta.uid)
    log.info("labelled %s/%s %s=%d", meta.namespace, meta.name, SEQ_LABEL, seq)


def run(kubeconfig: str) -> None:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException

    api = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api)
    failing_since = None
    while True:
        # The cluster's work dir (and kubeconfig) is removed when it stops: so do we. Also give up
        # when the API server has been unreachable for two minutes (an orphaned marker).
        if not os.path.exists(kubeconfig):
            log.info("kubeconfig %s is gone; exiting", kubeconfig)
            return
        if failing_since is not None and time.monotonic() - failing_since > 120:
            log.warning("API server unreachable for 120 s; exiting")
            return
        try:
            pods = core.list_pod_for_all_namespaces(_request_timeout=30)
            failing_since = None
            for pod in pods.items:
                handle(core, pod)
            rv = pods.metadata.resource_version
            w = watch.Watch()
            for event in w.stream(
                core.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=300
            ):
                if event["type"] in ("ADDED", "MODIFIED"):
                    try:
                        handle(core, event["object"])
                    except ApiException as exc:  # pod gone, conflict: the next event retries
                        log.warning("patch failed: %s", exc.reason)
        except Exception as exc:  # noqa: BLE001 - keep watching whatever happens (API restarts, 410 Gone)
            log.warning("watch restarted: %s", exc)
            if failing_since is None:
                failing_since = time.monotonic()
            time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run(args.kubeconfig)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
