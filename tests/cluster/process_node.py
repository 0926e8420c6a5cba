"""A process-backed node for the e2e cluster: the pods bound to it really run, as local processes.

kwok fakes what a container does; this agent registers a Node (``exec-0`` by default, label
``nsm.dev/node-kind: process``, fake ``nvidia.com/gpu``), keeps it Ready (Lease + status
heartbeat) and, for every pod the real scheduler binds to it, does what a kubelet would (see
tests/cluster/podspec.py and docs/testing.md): resolves env and volumes, starts each container's
command as a process (no image: ``nsm`` is the project's own, from the environment), reports phase,
container states, ``startTime`` and conditions, honours ``activeDeadlineSeconds``, and on pod
deletion sends SIGTERM, then SIGKILL after the grace period, and finally removes the pod.

Usage: python -m tests.cluster.process_node --kubeconfig PATH --workdir DIR [--node exec-0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tests.cluster` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.cluster.pod_process import PodWorker, WorkerContext  # noqa: E402

log = logging.getLogger("process-node")

NODE_NAME = "exec-0"
NODE_KIND_LABEL = "nsm.dev/node-kind"
# Only pods that tolerate this taint land here: the kwok-scripted tests never run for real.
TAINT = {"key": NODE_KIND_LABEL, "value": "process", "effect": "NoSchedule"}
GPU_PRODUCT = "NVIDIA-A100-SXM4-40GB"  # same as the fake A100 nodes, so GPU Jobs fit
ALLOCATABLE = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"}
LEASE_SECONDS = 40
RENEW_SECONDS = 10
STATUS_SECONDS = 30


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                NODE_KIND_LABEL: "process", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "nvidia.com/gpu.product": GPU_PRODUCT, "nvidia.com/gpu.count": "8",
            },  # fmt: skip
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},  # deliberately no kwok annotation
        },
        "spec": {"taints": [TAINT]},
    }


def node_status(started: str) -> dict[str, Any]:
    hb = now_rfc3339()

    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {"type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": hb, "lastTransitionTime": started}

    return {"status": {
        "capacity": ALLOCATABLE, "allocatable": ALLOCATABLE,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "not emulated"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "not emulated"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "not emulated"),
            cond("Ready", "True", "KubeletReady", "process node agent is running"),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "localhost"}],
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "process-node",
                     "containerRuntimeVersion": "process://local", "kernelVersion": os.uname().release,
                     "kubeProxyVersion": "", "osImage": "host", "machineID": "", "systemUUID": "", "bootID": ""},
    }}  # fmt: skip


class NodeAgent:
    """Registers the node, keeps it Ready and runs a :class:`PodWorker` per bound pod."""

    def __init__(self, kubeconfig: str, workdir: Path, node: str = NODE_NAME, env: dict[str, str] | None = None):
        from kubernetes import client, config

        self.kubeconfig, self.node, self.workdir = kubeconfig, node, Path(workdir)
        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.coord = client.CoordinationV1Api(self.api)
        self.workers: dict[str, PodWorker] = {}
        self.finished: set[str] = set()  # uids whose pod object we already removed
        self.stopping = threading.Event()
        self.started = now_rfc3339()
        self.ctx = WorkerContext(core=self.core, node=node, root=self.workdir / "pods",
                                 claims=self.workdir / "claims", server=self.api.configuration.host,
                                 ca_file=self.api.configuration.ssl_ca_cert, allocatable=ALLOCATABLE,
                                 bin_dir=Path(sys.executable).parent, node_env=env or {})  # fmt: skip

    # ------------------------------------------------------------------ node
    def register(self) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.create_node(node_manifest(self.node))
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_node(self.node, node_manifest(self.node))
        self._heartbeat()

    def _heartbeat(self) -> None:
        self.core.patch_node_status(self.node, node_status(self.started))
        self._renew_lease()

    def _renew_lease(self) -> None:
        from kubernetes.client.rest import ApiException

        micro = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {"metadata": {"name": self.node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro}}
        try:
            self.coord.patch_namespaced_lease(self.node, "kube-node-lease", body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", body)

    def _heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        while not self.stopping.wait(RENEW_SECONDS):
            try:
                if time.monotonic() - last_status >= STATUS_SECONDS:
                    self._heartbeat()
                    last_status = time.monotonic()
                else:
                    self._renew_lease()
            except Exception as exc:  # noqa: BLE001 - the API server may be restarting
                log.warning("heartbeat failed: %s", exc)

    # ------------------------------------------------------------------ pods
    def handle(self, event: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if event == "DELETED":
            if worker is not None:
                worker.request_stop(grace=0)
            self.workers.pop(uid, None)
            return
        if worker is not None and worker.is_alive():
            worker.update(pod)
            if meta.get("deletionTimestamp"):
                worker.request_stop(grace=meta.get("deletionGracePeriodSeconds"))
            return
        if meta.get("deletionTimestamp"):  # its processes are gone (or never ran): finish the deletion
            if uid not in self.finished:
                self.ctx.remove_pod(pod)
                self.finished.add(uid)
            return
        if worker is None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            worker = self.workers[uid] = PodWorker(self.ctx, pod, on_done=self._done)
            worker.start()

    def _done(self, uid: str, removed: bool) -> None:
        worker = self.workers.get(uid)
        if removed:
            self.finished.add(uid)
        elif worker is not None and worker.deleting:  # deletion arrived while the worker was finishing
            self.ctx.remove_pod(worker.pod)
            self.finished.add(uid)

    def run(self) -> None:
        from kubernetes import watch

        self.register()
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        log.info("node %s registered; watching its pods", self.node)
        selector = f"spec.nodeName={self.node}"
        failing_since = None
        while not self.stopping.is_set():
            if not os.path.exists(self.kubeconfig):
                log.info("kubeconfig %s is gone; exiting", self.kubeconfig)
                return
            if failing_since is not None and time.monotonic() - failing_since > 120:
                log.warning("API server unreachable for 120 s; exiting")
                return
            try:
                pods = self.core.list_pod_for_all_namespaces(field_selector=selector, _request_timeout=30)
                failing_since = None
                for pod in pods.items:
                    self.handle("ADDED", self.api.sanitize_for_serialization(pod))
                w = watch.Watch()
                for ev in w.stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                   resource_version=pods.metadata.resource_version, timeout_seconds=120):
                    self.handle(ev["type"], self.api.sanitize_for_serialization(ev["object"]))
            except Exception as exc:  # noqa: BLE001 - relist after 410 Gone, API restarts, ...
                log.warning("watch restarted: %s", exc)
                failing_since = failing_since or time.monotonic()
                time.sleep(1)

    def shutdown(self) -> None:
        """Stop every pod's processes (SIGTERM, then SIGKILL after their grace periods)."""
        self.stopping.set()
        for worker in list(self.workers.values()):
            # Capped: whoever stops the node waits for it (kwok_cluster.py gives it 40 s).
            worker.request_stop(grace=min(worker.grace, 20), reason="NodeShutdown", deleting=False)
        for worker in list(self.workers.values()):
            worker.join(timeout=35)


def main(argv: list[str] | None = None) -> int:
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--workdir", required=True, type=Path, help="pod directories, logs, claim directories")
    parser.add_argument("--node", default=NODE_NAME)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="put into every container's environment (like a runtime's default env)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args.workdir.mkdir(parents=True, exist_ok=True)
    agent = NodeAgent(args.kubeconfig, args.workdir, args.node, dict(e.split("=", 1) for e in args.env))

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        agent.run()
    except KeyboardInterrupt:
        pass
    finally:
        agent.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
