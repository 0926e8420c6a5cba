"""One pod on the process node: prepare it, run its containers as processes, report its status.

A :class:`PodWorker` thread per pod (see tests/cluster/process_node.py for the node itself).
Status patches are strategic merges keyed like the kubelet's (conditions by ``type``, container
statuses by ``name``), so conditions that others add (``PodScheduled``, ``DisruptionTarget`` from
the eviction API) stay.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster import podspec
from tests.cluster.podspec import ConfigError

log = logging.getLogger("process-node")

SMP = "application/strategic-merge-patch+json"
DEFAULT_GRACE = 30
# The image is not pulled; its entrypoint is taken to be the trainer image's (docker/trainer.Dockerfile).
IMAGE_ENTRYPOINT = ["nsm"]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class WorkerContext:
    """What every pod worker shares: the API, the node's name and its directories."""

    core: Any  # kubernetes.client.CoreV1Api
    node: str
    root: Path  # <root>/<namespace>_<pod>_<uid>/: volumes, logs
    claims: Path  # per-claim directories for PVs without a hostPath
    server: str
    ca_file: str | None
    allocatable: dict[str, str]
    bin_dir: Path  # where `nsm` (the image's entrypoint) comes from
    node_env: dict[str, str] = field(default_factory=dict)  # every container's default environment

    def objects(self, pod: dict[str, Any]) -> podspec.Objects:
        from kubernetes.client.rest import ApiException

        ns = pod["metadata"]["namespace"]

        def fetch(read: Callable[..., Any]) -> Callable[[str], dict[str, Any] | None]:
            def get(name: str) -> dict[str, Any] | None:
                try:
                    return self.core.api_client.sanitize_for_serialization(read(name, ns))
                except ApiException as exc:
                    if exc.status == 404:
                        return None
                    raise ConfigError(f"reading {name!r}: {exc.reason}") from None
            return get

        def claim_dir(claim: str) -> Path:
            pvc = fetch(self.core.read_namespaced_persistent_volume_claim)(claim)
            volume = ((pvc or {}).get("spec") or {}).get("volumeName")
            if not volume:
                raise ConfigError(f"PersistentVolumeClaim {claim!r} is not bound")
            pv = self.core.api_client.sanitize_for_serialization(self.core.read_persistent_volume(volume))
            host = Path(pv["spec"].get("hostPath", {}).get("path") or self.claims / volume)
            host.mkdir(parents=True, exist_ok=True)
            return host

        def token(projection: dict[str, Any]) -> str:
            meta = pod["metadata"]
            spec: dict[str, Any] = {
                "expirationSeconds": projection.get("expirationSeconds", 3607),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            }
            if projection.get("audience"):
                spec["audiences"] = [projection["audience"]]
            sa = pod["spec"].get("serviceAccountName") or "default"
            return self.core.create_namespaced_service_account_token(sa, ns, {"spec": spec}).status.token

        return podspec.Objects(
            configmap=fetch(self.core.read_namespaced_config_map),
            secret=fetch(self.core.read_namespaced_secret),
            claim_dir=claim_dir,
            token=token,
        )

    def patch_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = {"metadata": {"uid": meta["uid"]}, "status": status}  # the uid guards against a same-named successor
        self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], body, _content_type=SMP)

    def remove_pod(self, pod: dict[str, Any]) -> None:
        """What the kubelet does once a deleted pod's containers are gone: delete with grace 0."""
        from kubernetes.client.rest import ApiException

        meta = pod["metadata"]
        try:
            # In the body: with a body, the API server ignores the gracePeriodSeconds query parameter.
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"],
                                            body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise


def _terminated(name: str, image: str, code: int, started: str, pid: int | None,
                reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    state = {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"),
             "startedAt": started, "finishedAt": now()}
    if message:
        state["message"] = message
    if pid is not None:
        state["containerID"] = f"process://{pid}"
    return {"name": name, "image": image, "imageID": "", "ready": False, "started": False, "restartCount": 0,
            "containerID": f"process://{pid}" if pid else "", "state": {"running": None, "waiting": None,
                                                                       "terminated": state}}


def _conditions(ready: bool, reason: str | None = None) -> list[dict[str, Any]]:
    stamp = now()
    out = []
    for type_ in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"):
        up = ready or type_ in ("Initialized",)
        cond = {"type": type_, "status": "True" if up else "False", "lastTransitionTime": stamp, "lastProbeTime": None}
        if not up and reason:
            cond["reason"] = reason
        out.append(cond)
    return out


class PodWorker(threading.Thread):
    """Runs one pod's containers (``restartPolicy`` Never semantics) and reports its status."""

    def __init__(self, ctx: WorkerContext, pod: dict[str, Any], on_done: Callable[[str, bool], None]):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx, self.pod, self.on_done = ctx, pod, on_done
        self.dir = ctx.root / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        self._stopping = threading.Event()
        self._grace: float | None = None
        self._stop_reason = "Killing"
        self.deleting = False  # the pod object is being deleted: remove it once the processes are gone
        self.procs: dict[str, subprocess.Popen] = {}

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod

    def request_stop(self, grace: float | None, reason: str = "Killing", deleting: bool = True) -> None:
        self.deleting = self.deleting or deleting
        if not self._stopping.is_set():
            self._grace, self._stop_reason = grace, reason
            self._stopping.set()

    @property
    def grace(self) -> float:
        if self._grace is not None:
            return float(self._grace)
        value = self.pod["spec"].get("terminationGracePeriodSeconds")
        return float(DEFAULT_GRACE if value is None else value)

    # ------------------------------------------------------------------ prepare
    def _prepare(self, container: dict[str, Any], volume_hosts: dict[str, Path]) -> podspec.Command:
        base = {"PATH": f"{self.ctx.bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOSTNAME": self.pod["metadata"]["name"],
                "HOME": str(self.dir / "home"), **self.ctx.node_env}  # fmt: skip
        (self.dir / "home").mkdir(parents=True, exist_ok=True)
        objects = self.ctx.objects(self.pod)
        env = podspec.container_env(self.pod, container, objects, base, self.ctx.allocatable)
        mounts = podspec.mounts_for(container, volume_hosts)
        sa_dir = mounts.host(podspec.SA_MOUNT)
        if sa_dir is not None and "KUBECONFIG" not in env:
            # The documented override: no mount namespace, so the in-cluster path does not exist;
            # a kubeconfig that reads the projected token file stands in for it.
            env["KUBECONFIG"] = str(self._write_kubeconfig(Path(sa_dir)))
            base["KUBECONFIG"] = env["KUBECONFIG"]
        host_env = frozenset(k for k, v in base.items() if env.get(k) == v)
        return podspec.command_for(container, env, mounts, self.dir, IMAGE_ENTRYPOINT, host_env)

    def _write_kubeconfig(self, sa_dir: Path) -> Path:
        ca = sa_dir / "ca.crt" if (sa_dir / "ca.crt").is_file() else self.ctx.ca_file
        ns = self.pod["metadata"]["namespace"]
        cluster: dict[str, Any] = {"server": self.ctx.server}
        if ca:
            cluster["certificate-authority"] = str(ca)
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "pod",
               "clusters": [{"name": "cluster", "cluster": cluster}],
               "users": [{"name": "sa", "user": {"tokenFile": str(sa_dir / "token")}}],
               "contexts": [{"name": "pod", "context": {"cluster": "cluster", "user": "sa", "namespace": ns}}]}
        path = self.dir / "kubeconfig"
        path.write_text(json.dumps(doc, indent=1))
        return path

    def _volumes(self) -> dict[str, Path]:
        objects = self.ctx.objects(self.pod)
        return {v["name"]: podspec.materialise(self.pod, v, self.dir / "volumes" / v["name"], objects)
                for v in self.pod["spec"].get("volumes") or []}

    def _prepare_all(self) -> tuple[list, list] | None:
        """Commands of init and app containers; retried while the config is not there yet."""
        while not self._stopping.is_set():
            try:
                volumes = self._volumes()
                inits = [(c, self._prepare(c, volumes)) for c in self.pod["spec"].get("initContainers") or []]
                apps = [(c, self._prepare(c, volumes)) for c in self.pod["spec"]["containers"]]
                return inits, apps
            except ConfigError as exc:
                log.warning("%s: %s", self.name, exc)
                waiting = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                            "restartCount": 0, "started": False,
                            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}}
                           for c in self.pod["spec"]["containers"]]  # fmt: skip
                self._safe_patch({"phase": "Pending", "containerStatuses": waiting})
                self._stopping.wait(2)
        return None

    # ------------------------------------------------------------------ run
    def _spawn(self, container: dict[str, Any], cmd: podspec.Command) -> subprocess.Popen | str:
        log_path = self.dir / f"{container['name']}.log"
        try:
            with open(log_path, "ab") as out:
                return subprocess.Popen(cmd.argv, cwd=cmd.cwd, env=cmd.env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return f"{cmd.argv[0]} (in {cmd.cwd}): {exc.strerror or exc}: {exc.filename}"

    def _terminate(self, procs: list[subprocess.Popen], grace: float) -> None:
        """SIGTERM to each container's main process, SIGKILL to its whole group after ``grace``."""
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.1)
        for p in procs:
            _killpg(p)
            p.wait()

    def _run_init(self, inits: list) -> dict[str, Any] | None:
        for container, cmd in inits:
            proc = self._spawn(container, cmd)
            if isinstance(proc, str):
                return _terminated(container["name"], container.get("image", ""), 128, now(), None, "StartError", proc)
            started = now()
            while proc.poll() is None:
                if self._stopping.wait(0.2):
                    self._terminate([proc], self.grace)
            _killpg(proc)
            code = _exit_code(proc.returncode)
            if code != 0:
                return _terminated(container["name"], container.get("image", ""), code, started, proc.pid)
        return None

    def run(self) -> None:
        removed = False
        try:
            removed = self._run_pod()
        except Exception:  # noqa: BLE001 - one pod's failure must not stop the node
            log.exception("%s: worker failed", self.name)
        finally:
            self.on_done(self.pod["metadata"]["uid"], removed)

    def _run_pod(self) -> bool:
        start_time = self.pod.get("status", {}).get("startTime") or now()
        self._safe_patch({"startTime": start_time})
        prepared = self._prepare_all()
        if prepared is None:  # deleted before it could start
            self._safe_patch({"phase": "Failed", "reason": self._stop_reason})
            return self._finish()
        inits, apps = prepared
        failed_init = self._run_init(inits)
        if failed_init is not None:
            self._safe_patch({"phase": "Failed", "initContainerStatuses": [failed_init],
                              "conditions": _conditions(False, "PodFailed")})
            return self._finish()
        started, procs, statuses = now(), {}, {}
        for container, cmd in apps:
            proc = self._spawn(container, cmd)
            if isinstance(proc, str):
                statuses[container["name"]] = _terminated(container["name"], container.get("image", ""), 128,
                                                          started, None, "StartError", proc)
            else:
                procs[container["name"]] = proc
        self.procs = procs
        images = {c["name"]: c.get("image", "") for c, _ in apps}
        if procs and not statuses:
            running = [{"name": n, "image": images[n], "imageID": "", "ready": True, "started": True,
                        "restartCount": 0, "containerID": f"process://{p.pid}",
                        "state": {"waiting": None, "running": {"startedAt": started}}} for n, p in procs.items()]
            self._safe_patch({"phase": "Running", "hostIP": podspec.NODE_IP, "podIP": podspec.NODE_IP,
                              "hostIPs": [{"ip": podspec.NODE_IP}], "podIPs": [{"ip": podspec.NODE_IP}],
                              "containerStatuses": running, "conditions": _conditions(True)})  # fmt: skip
            log.info("%s: started %s", self.name, {n: p.pid for n, p in procs.items()})
        reason, message = self._wait(list(procs.values()), _parse_time(start_time))
        for name, proc in procs.items():
            statuses[name] = _terminated(name, images[name], _exit_code(proc.returncode), started, proc.pid)
        ok = all(s["state"]["terminated"]["exitCode"] == 0 for s in statuses.values()) and reason is None
        status: dict[str, Any] = {"phase": "Succeeded" if ok else "Failed", "containerStatuses": list(statuses.values()),
                                  "conditions": _conditions(False, "PodCompleted" if ok else "PodFailed")}
        if reason:
            status.update(reason=reason, message=message)
        self._safe_patch(status)
        log.info("%s: %s %s", self.name, status["phase"],
                 {n: s["state"]["terminated"]["exitCode"] for n, s in statuses.items()})
        return self._finish()

    def _wait(self, procs: list[subprocess.Popen], start: float) -> tuple[str | None, str | None]:
        """Until every process exited, the pod's deadline passed or it is deleted."""
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        while any(p.poll() is None for p in procs):
            if deadline is not None and time.time() - start > deadline:
                self._terminate(procs, self.grace)
                return "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
            if self._stopping.wait(0.2):
                self._terminate(procs, self.grace)
                return None, None
        for p in procs:  # a container's other processes die with it
            _killpg(p)
        return None, None

    def _finish(self) -> bool:
        if self.deleting or self.pod["metadata"].get("deletionTimestamp"):
            self.ctx.remove_pod(self.pod)
            return True
        return False

    def _safe_patch(self, status: dict[str, Any]) -> None:
        from kubernetes.client.rest import ApiException

        for attempt in range(5):
            try:
                self.ctx.patch_status(self.pod, status)
                return
            except ApiException as exc:
                if exc.status in (404, 409, 422):  # gone, or a successor with the same name
                    log.warning("%s: status patch rejected (%s): %s", self.name, exc.status, exc.body)
                    return
                log.warning("%s: status patch failed (%s); retrying", self.name, exc.reason)
            except Exception as exc:  # noqa: BLE001 - connection trouble: retry
                log.warning("%s: status patch failed (%s); retrying", self.name, exc)
            time.sleep(0.5 * (attempt + 1))


def _exit_code(returncode: int | None) -> int:
    """What a container runtime reports: 128 + N for a process killed by signal N."""
    if returncode is None:
        return 137
    return 128 - returncode if returncode < 0 else returncode


def _killpg(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
