"""Start, inspect and stop the e2e control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, run by ``kwokctl --runtime binary`` from the binaries that
tests/cluster/build.sh built and cached (nothing is downloaded: every binary path is passed).

Used by the pytest fixtures (tests/cluster/fixtures.py) and by tests/cluster/up.sh / down.sh::

    python tests/cluster/kwok_cluster.py up   [--name nsm-dev] [--workdir DIR]
    python tests/cluster/kwok_cluster.py down [--name nsm-dev] [--workdir DIR]
    python tests/cluster/kwok_cluster.py logs DEST [--name nsm-dev] [--workdir DIR]

Only the standard library is needed here (kubectl does the talking); pod_marker.py, started next
to the cluster, uses the ``kubernetes`` client.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD_SH = HERE / "build.sh"
STAGES = HERE / "kwok-stages.yaml"
NODES = HERE / "nodes.yaml"
POD_MARKER = HERE / "pod_marker.py"
PROCESS_NODE_MODULE = "tests.cluster.process_node"

DEV_NAME = "nsm-dev"
GPU_NODES = ("gpu-a100-0", "gpu-a100-1")
CPU_NODES = ("cpu-0",)
PROCESS_NODES = ("exec-0",)  # run by tests/cluster/process_node.py, not by kwok
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")

_ENV_TO_BIN = {
    "NSM_BIN_KUBE_APISERVER": "kube-apiserver",
    "NSM_BIN_KUBE_CONTROLLER_MANAGER": "kube-controller-manager",
    "NSM_BIN_KUBE_SCHEDULER": "kube-scheduler",
    "NSM_BIN_ETCD": "etcd",
    "NSM_BIN_KWOK": "kwok",
    "NSM_BIN_KWOKCTL": "kwokctl",
    "NSM_BIN_HELM": "helm",
    "NSM_BIN_KUBECTL": "kubectl",
}


class ClusterError(RuntimeError):
    """The control plane could not be built, started or reached."""


def cache_dir() -> Path:
    if os.environ.get("NSM_CACHE_DIR"):
        return Path(os.environ["NSM_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "nsm-operator"


def dev_workdir(name: str = DEV_NAME) -> Path:
    """Work dir of a manually started cluster (``make cluster-up``)."""
    return cache_dir() / "clusters" / name


def binaries_cached() -> bool:
    """True when build.sh would build nothing (it compares stamps only)."""
    proc = subprocess.run(["bash", str(BUILD_SH), "--check"], capture_output=True, text=True, timeout=120)
    return proc.returncode == 0


def build_binaries(timeout: float = 3 * 3600) -> dict[str, str]:
    """Run build.sh (a no-op on a warm cache) and return {tool: path}."""
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_SH), "--print-env"],
            stdout=subprocess.PIPE,
            stderr=None,  # build progress goes straight to the terminal / pytest's capture
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"tests/cluster/build.sh did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise ClusterError(f"tests/cluster/build.sh failed (exit {proc.returncode}); see its output above")
    bins: dict[str, str] = {}
    extra: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in _ENV_TO_BIN:
            bins[_ENV_TO_BIN[key]] = value
        else:
            extra[key] = value
    missing = [tool for tool in _ENV_TO_BIN.values() if not os.access(bins.get(tool, ""), os.X_OK)]
    if missing:
        raise ClusterError(f"build.sh did not provide: {', '.join(missing)}")
    return bins


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return "Z" not in line.split()[1]
    except OSError:
        return False
    return True


def _wait_gone(pids, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.1)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Cluster:
    """One kwokctl cluster with its own KWOK_WORKDIR and kubeconfig."""

    name: str
    workdir: Path
    bin: dict[str, str]
    kubeconfig: Path = field(default=None)  # type: ignore[assignment]
    owned: bool = True  # False when attached to a cluster somebody else started (NSM_KUBECONFIG)
    start_seconds: float | None = None
    # An audit policy file for kube-apiserver (bench/operator_latency.py counts each operator's
    # requests in the audit log); None = no audit log, as in the e2e tier.
    audit_policy: Path | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        if self.kubeconfig is None:
            self.kubeconfig = self.workdir / "kubeconfig.yaml"
        self.kubeconfig = Path(self.kubeconfig)

    # ---------------------------------------------------------------- helpers
    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.name

    @property
    def audit_log(self) -> Path:
        """kube-apiserver's audit log (written only with ``audit_policy``)."""
        return self.cluster_dir / "logs" / "audit.log"

    @property
    def marker_pidfile(self) -> Path:
        return self.workdir / "pod-marker.pid"

    @property
    def process_node_pidfile(self) -> Path:
        return self.workdir / "process-node.pid"

    @property
    def process_node_dir(self) -> Path:
        """The process node's files: pods/<namespace>_<pod>_<uid>/{<container>.log,volumes/}, claims/."""
        return self.workdir / "process-node"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = str(self.workdir)
        # kwokctl must never reach out for anything: no proxies, nothing but loopback.
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(var, None)
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        env["KUBECACHEDIR"] = str(self.workdir / "kube-cache")  # kubectl's discovery cache, not ~/.kube
        return env

    def kubectl(self, *args: str, check: bool = False, timeout: float = 120, input: str | None = None):
        """Run kubectl against this cluster; returns subprocess.CompletedProcess (text)."""
        proc = subprocess.run(
            [self.bin["kubectl"], "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=self.env(),
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def kwokctl(self, *args: str, check: bool = False, timeout: float = 300):
        proc = subprocess.run(
            [self.bin["kwokctl"], "--name", self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"kwokctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        return proc

    def _write_config(self) -> Path:
        b = self.bin
        options = {
            "runtime": "binary",
            "bindAddress": "127.0.0.1",
            "kubeApiserverBinary": b["kube-apiserver"],
            "kubeControllerManagerBinary": b["kube-controller-manager"],
            "kubeSchedulerBinary": b["kube-scheduler"],
            "kwokControllerBinary": b["kwok"],
            "etcdBinary": b["etcd"],
            "kubectlBinary": b["kubectl"],
            "cacheDir": str(self.workdir / "cache"),
            "quietPull": False,  # a download would be visible in kwokctl-create.log
            "kubeAuthorization": True,
            "kubeAdmission": True,
            "disableQPSLimits": True,
        }
        doc = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": options,
            "componentsPatches": [
                # kwokctl runs kwok with --manage-all-nodes=true; the process node must stay
                # out of kwok's hands, so kwok manages only the nodes annotated as fake.
                {"name": "kwok-controller", "extraArgs": [
                    {"key": "manage-all-nodes", "value": "false"},
                    {"key": "manage-nodes-with-annotation-selector", "value": "kwok.x-k8s.io/node=fake"},
                ]},
                # Namespace annotations pin a namespace's pods to a node and give them default
                # tolerations: how e2e tests send the operator's pods to the (tainted) process node.
                {"name": "kube-apiserver", "extraArgs": [
                    {"key": "enable-admission-plugins", "value": "PodNodeSelector,PodTolerationRestriction"},
                ]},
            ],
        }
        path = self.workdir / "nsm-kwokctl.yaml"
        path.write_text(json.dumps(doc, indent=2) + "\n")  # JSON is YAML
        return path

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 180) -> "Cluster":
        """Create the cluster, its fake nodes and the pod marker; idempotent for a stopped workdir."""
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "bins.json").write_text(json.dumps(self.bin, indent=2) + "\n")
        config = self._write_config()
        b = self.bin
        proc = self.kwokctl(
            "--config", str(STAGES),
            "--config", str(config),
            "create", "cluster",
            "--runtime", "binary",
            "--kube-apiserver-binary", b["kube-apiserver"],
            "--kube-controller-manager-binary", b["kube-controller-manager"],
            "--kube-scheduler-binary", b["kube-scheduler"],
            "--kwok-controller-binary", b["kwok"],
            "--etcd-binary", b["etcd"],
            "--kubeconfig", str(self.kubeconfig),
            *(["--kube-audit-policy", str(self.audit_policy)] if self.audit_policy else []),
            "--wait", f"{int(timeout)}s",
            "--timeout", f"{int(timeout)}s",
            timeout=timeout + 30,
        )
        (self.workdir / "kwokctl-create.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise ClusterError(
                f"kwokctl create cluster {self.name} failed ({proc.returncode}); "
                f"log: {self.workdir / 'kwokctl-create.log'}\n{(proc.stdout + proc.stderr)[-3000:]}"
            )
        cache = self.workdir / "cache"
        if "Download" in proc.stdout + proc.stderr or (cache.exists() and any(cache.iterdir())):
            raise ClusterError(f"kwokctl downloaded something (see {self.workdir / 'kwokctl-create.log'} and "
                               f"{cache}); every binary must come from tests/cluster/build.sh")
        self._wait_api(deadline=t0 + timeout)
        self.start_process_node()
        self.start_marker()
        self._create_nodes(deadline=t0 + timeout)
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_api(self, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            p = self.kubectl("get", "--raw", "/readyz", timeout=15)
            if p.returncode == 0 and p.stdout.strip() == "ok":
                # Namespaced objects need the default service account (ServiceAccount admission).
                sa = self.kubectl("get", "serviceaccount", "default", "-n", "default", timeout=15)
                if sa.returncode == 0:
                    return
                last = sa.stderr
            else:
                last = p.stderr or p.stdout
            time.sleep(0.5)
        raise ClusterError(f"kube-apiserver of {self.name} not ready: {last.strip()}")

    def _create_nodes(self, deadline: float) -> None:
        existing = self.kubectl("get", "nodes", "-o", "name").stdout.split()
        if not all(f"node/{n}" in existing for n in GPU_NODES + CPU_NODES):
            self.kubectl("apply", "-f", str(NODES), check=True)
        last = ""
        while time.monotonic() < deadline:
            p = self.kubectl(
                "get", "nodes", "-o",
                'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
            )
            ready = {line.split("=")[0] for line in p.stdout.split() if line.endswith("=True")}
            if set(GPU_NODES + CPU_NODES + PROCESS_NODES) <= ready:
                return
            last = p.stdout + p.stderr
            time.sleep(0.5)
        raise ClusterError(f"fake nodes of {self.name} not Ready: {last.strip()}")

    def start_marker(self) -> None:
        self.stop_marker()
        log = open(self.workdir / "pod-marker.log", "ab")  # noqa: SIM115 - handed to the child
        python = sys.executable
        proc = subprocess.Popen(
            [python, str(POD_MARKER), "--kubeconfig", str(self.kubeconfig)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(self.workdir),
        )
        log.close()
        self.marker_pidfile.write_text(str(proc.pid))

    def stop_marker(self) -> None:
        _stop_helper(self.marker_pidfile, "pod_marker.py", wait=5)

    def start_process_node(self) -> None:
        """The agent of the process-backed node exec-0 (tests/cluster/process_node.py)."""
        self.stop_process_node()
        self.process_node_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "process-node.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [sys.executable, "-m", PROCESS_NODE_MODULE, "--kubeconfig", str(self.kubeconfig),
             "--workdir", str(self.process_node_dir), "--node", PROCESS_NODES[0],
             # One intra-op thread per trainer: the machine is shared (CI has 2 cores), and a run's
             # numbers then match a local OMP_NUM_THREADS=1 run exactly.
             "--env", "OMP_NUM_THREADS=1"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(REPO), env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self.process_node_pidfile.write_text(str(proc.pid))

    def stop_process_node(self) -> None:
        # Its pods' processes get SIGTERM and their grace period (capped here) before the agent exits.
        _stop_helper(self.process_node_pidfile, "tests.cluster.process_node", wait=40)

    def component_pids(self) -> dict[str, int]:
        pids = {}
        for pidfile in (self.cluster_dir / "pids").glob("*.pid"):
            try:
                pids[pidfile.stem] = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
        return pids

    def stop(self, remove: bool = True) -> None:
        """Stop every process this cluster started and (by default) remove its work dir."""
        if not self.owned:
            return
        self.stop_marker()
        self.stop_process_node()
        pids = self.component_pids()
        if self.cluster_dir.exists():
            self.kwokctl("delete", "cluster", timeout=120)
        # kwokctl signals its components; wait for them and make sure, by the pid files it wrote,
        # that none survived (only processes whose command line names this work dir are touched).
        _wait_gone(pids.values(), 15)
        for pid in pids.values():
            if _pid_alive(pid) and str(self.workdir) in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids.values(), 5)
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---------------------------------------------------------------- logs
    def collect_logs(self, dest: Path) -> Path:
        """Copy component logs and a dump of the cluster's state under dest."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        logs_dir = self.cluster_dir / "logs"
        if logs_dir.is_dir():
            for f in logs_dir.iterdir():
                if f.is_file():
                    shutil.copy2(f, dest / f.name)
        else:  # attached cluster: ask kwokctl if it knows the cluster
            for comp in COMPONENTS:
                p = self.kwokctl("logs", comp, timeout=30)
                if p.returncode == 0:
                    (dest / f"{comp}.log").write_text(p.stdout)
        for extra in ("pod-marker.log", "process-node.log", "kwokctl-create.log"):
            if (self.workdir / extra).is_file():
                shutil.copy2(self.workdir / extra, dest / extra)
        for log in (self.process_node_dir / "pods").glob("*/*.log"):
            shutil.copy2(log, dest / f"process-node-{log.parent.name}-{log.name}")
        dumps = {
            "events.txt": ("get", "events", "-A", "--sort-by=.lastTimestamp", "-o", "wide"),
            "all.txt": ("get", "nodes,pods,jobs,configmaps,serviceaccounts", "-A", "-o", "wide"),
            "describe-pods.txt": ("describe", "pods", "-A"),
            "describe-jobs.txt": ("describe", "jobs", "-A"),
            "describe-nodes.txt": ("describe", "nodes"),
            "crs.txt": ("get", "nsmtrainings", "-A", "-o", "yaml"),
        }
        for fname, args in dumps.items():
            try:
                p = self.kubectl(*args, timeout=60)
                (dest / fname).write_text(p.stdout + (f"\n# stderr:\n{p.stderr}" if p.stderr else ""))
            except subprocess.TimeoutExpired:
                (dest / fname).write_text("timed out\n")
        return dest


def _stop_helper(pidfile: Path, needle: str, wait: float) -> None:
    """SIGTERM a helper we started (checked by its command line), SIGKILL after ``wait`` seconds."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    if _pid_alive(pid) and needle in _cmdline(pid):
        os.kill(pid, signal.SIGTERM)
        _wait_gone([pid], wait)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, os.WNOHANG)  # reap if it is our child
    except ChildProcessError:
        pass
    pidfile.unlink(missing_ok=True)


_SESSION_DIR = re.compile(r"^(nsm-e2e-(\d+)-[0-9a-f]{6})-")


def reap_orphans(bins: dict[str, str], tmpdir: str | None = None) -> list[str]:
    """Stop and remove session clusters whose pytest process is gone (killed sessions)."""
    reaped = []
    root = Path(tmpdir or os.environ.get("NSM_CLUSTER_TMPDIR") or tempfile.gettempdir())
    for d in root.glob("nsm-e2e-*"):
        m = _SESSION_DIR.match(d.name)
        if not m or not d.is_dir() or _pid_alive(int(m.group(2))):
            continue
        try:
            Cluster(name=m.group(1), workdir=d, bin=bins).stop(remove=True)
            reaped.append(str(d))
        except Exception:  # noqa: BLE001 - best effort
            pass
    return reaped


def session_cluster_name() -> str:
    return f"nsm-e2e-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def new_session_cluster(bins: dict[str, str]) -> Cluster:
    name = session_cluster_name()
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=os.environ.get("NSM_CLUSTER_TMPDIR")))
    return Cluster(name=name, workdir=workdir, bin=bins)


def attach(kubeconfig: str | os.PathLike, bins: dict[str, str]) -> Cluster:
    """A Cluster object for an already running cluster (NSM_KUBECONFIG); never stopped by us."""
    kubeconfig = Path(kubeconfig).resolve()
    workdir = kubeconfig.parent
    name = DEV_NAME
    # kwokctl's kubeconfig context is "kwok-<name>"
    try:
        ctx = subprocess.run(
            [bins["kubectl"], "--kubeconfig", str(kubeconfig), "config", "current-context"],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip()
        if ctx.startswith("kwok-"):
            name = ctx[len("kwok-"):]
    except (OSError, subprocess.TimeoutExpired):
        pass
    cluster = Cluster(name=name, workdir=workdir, bin=bins, kubeconfig=kubeconfig, owned=False)
    p = cluster.kubectl("get", "--raw", "/readyz", timeout=30)
    if p.returncode != 0:
        raise ClusterError(f"cluster at NSM_KUBECONFIG={kubeconfig} is not reachable: {p.stderr.strip()}")
    return cluster


# -------------------------------------------------------------------- CLI (up.sh / down.sh)
def _cli_up(args: argparse.Namespace) -> int:
    bins = build_binaries()
    workdir = Path(args.workdir) if args.workdir else dev_workdir(args.name)
    cluster = Cluster(name=args.name, workdir=workdir, bin=bins)
    if cluster.cluster_dir.exists():
        print(f"cluster {args.name} exists in {workdir}; restarting it (make cluster-down removes it)", file=sys.stderr)
        cluster.stop(remove=True)
    t0 = time.monotonic()
    try:
        cluster.start(timeout=args.timeout)
    except ClusterError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        cluster.stop(remove=False)
        print(f"(files kept in {workdir} for inspection; make cluster-down removes them)", file=sys.stderr)
        return 1
    print(f"cluster {args.name} up in {time.monotonic() - t0:.1f}s (work dir {workdir})", file=sys.stderr)
    print(cluster.kubectl("get", "nodes", "-L", "nvidia.com/gpu.product").stdout, file=sys.stderr)
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f"export NSM_KUBECONFIG={cluster.kubeconfig}   # makes pytest reuse this cluster")
    return 0


def _bins_for_down(workdir: Path) -> dict[str, str]:
    """The binaries a cluster was started with (recorded in its work dir), without building."""
    try:
        return json.loads((workdir / "bins.json").read_text())
    except (OSError, ValueError):
        kwokctls = sorted((cache_dir() / "bin").glob("kwok-*/kwokctl"))
        kubectls = sorted((cache_dir() / "bin").glob("kubectl-*/kubectl"))
        return {
            "kwokctl": str(kwokctls[-1]) if kwokctls else "kwokctl",
            "kubectl": str(kubectls[-1]) if kubectls else "kubectl",
        }


def _cli_down(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else dev_workdir(args.name)
    if not workdir.exists():
        print(f"cluster {args.name}: nothing to remove ({workdir} does not exist)", file=sys.stderr)
        return 0
    bins = _bins_for_down(workdir)
    cluster = Cluster(name=args.name, workdir=workdir, bin=bins)
    pids = cluster.component_pids()
    cluster.stop(remove=True)
    alive = [f"{n}({p})" for n, p in pids.items() if _pid_alive(p)]
    if alive:
        print(f"WARNING: still running: {', '.join(alive)}", file=sys.stderr)
        return 1
    print(f"cluster {args.name} stopped; removed {workdir}", file=sys.stderr)
    return 0


def _cli_logs(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else dev_workdir(args.name)
    cluster = Cluster(name=args.name, workdir=workdir, bin=_bins_for_down(workdir))
    print(cluster.collect_logs(Path(args.dest)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="nsm-operator e2e control plane (kwokctl, binary runtime)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("up", "down", "logs"):
        p = sub.add_parser(cmd)
        if cmd == "logs":
            p.add_argument("dest")
        p.add_argument("--name", default=os.environ.get("NSM_CLUSTER_NAME", DEV_NAME))
        p.add_argument("--workdir", default=None, help="default: $NSM_CACHE_DIR/clusters/<name>")
        if cmd == "up":
            p.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args(argv)
    return {"up": _cli_up, "down": _cli_down, "logs": _cli_logs}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
