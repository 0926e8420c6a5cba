"""How the process node (tests/cluster/process_node.py) turns a pod's container into a process.

Pure translation, given the objects the pod refers to: the environment (``env``/``envFrom`` with
``value``, ``$(VAR)`` expansion and ``valueFrom`` fieldRef / resourceFieldRef / secretKeyRef /
configMapKeyRef), the files of each volume (ConfigMap, Secret, downwardAPI, projected with a
ServiceAccount token, emptyDir, hostPath, PVC → a host directory) and the mapping of every
``mountPath`` onto the host directory that backs it. The pod is a plain dict (the API's JSON).

There is no mount namespace: the process sees the host's file system, so a container path under a
``mountPath`` (in ``command``, ``args``, env values and ``workingDir``) is rewritten to the host
directory of its volume. See docs/testing.md for what is and is not emulated.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
NODE_IP = "127.0.0.1"


class ConfigError(Exception):
    """The container cannot be configured yet (a missing Secret, ConfigMap key, ...); the
    kubelet's ``CreateContainerConfigError``: the pod stays Pending and is retried."""


@dataclass
class Objects:
    """The API objects a pod refers to, fetched by the caller (None = not found)."""

    configmap: Callable[[str], dict[str, Any] | None]
    secret: Callable[[str], dict[str, Any] | None]
    claim_dir: Callable[[str], Path]  # PVC name -> host directory of its bound volume
    token: Callable[[dict[str, Any]], str]  # serviceAccountToken projection -> token


@dataclass
class Mounts:
    """Container paths → host paths, longest mountPath first."""

    table: list[tuple[str, Path]] = field(default_factory=list)

    def add(self, mount_path: str, host: Path) -> None:
        self.table.append((mount_path.rstrip("/") or "/", host))
        self.table.sort(key=lambda item: len(item[0]), reverse=True)

    def host(self, path: str) -> str | None:
        for mount, host in self.table:
            if path == mount or path.startswith(mount + "/"):
                return str(host) + path[len(mount):]
        return None

    def rewrite(self, text: str) -> str:
        """``/mnt/x`` → host path; also the value of ``--flag=/mnt/x``."""
        mapped = self.host(text)
        if mapped is not None:
            return mapped
        flag, sep, value = text.partition("=")
        if sep and flag.startswith("-") and (mapped := self.host(value)) is not None:
            return f"{flag}={mapped}"
        return text


# ---------------------------------------------------------------------------- quantities
_SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}  # fmt: skip


def quantity(text: str | int | float) -> Decimal:
    """A Kubernetes resource quantity (``500m``, ``16Gi``, ``1e3``) as a number."""
    m = re.fullmatch(r"([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)", str(text).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ConfigError(f"invalid quantity {text!r}")
    return Decimal(m.group(1)) * Decimal(_SUFFIX[m.group(2)])


# ---------------------------------------------------------------------------- env
_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


def field_value(pod: dict[str, Any], path: str) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": NODE_IP, "status.hostIPs": NODE_IP, "status.podIP": NODE_IP, "status.podIPs": NODE_IP,
    }  # fmt: skip
    if path in simple:
        return str(simple[path] or "")
    if m := _FIELD.fullmatch(path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(container: dict[str, Any], ref: dict[str, Any], node_allocatable: dict[str, str]) -> str:
    kind, _, name = ref["resource"].partition(".")
    res = container.get("resources") or {}
    raw = (res.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (res.get("limits") or {}).get(name)
    if raw is None:  # the kubelet reports the node's allocatable for an unset limit
        raw = node_allocatable.get(name, "0")
    divisor = quantity(ref.get("divisor") or "1")
    return str(math.ceil(quantity(raw) / divisor))


def _key_ref(kind: str, ref: dict[str, Any], fetch: Callable[[str], dict[str, Any] | None]) -> str | None:
    obj = fetch(ref["name"])
    data = (obj or {}).get("data") or {}
    if ref["key"] in data:
        value = data[ref["key"]]
        return base64.b64decode(value).decode() if kind == "Secret" else value
    if ref.get("optional"):
        return None
    what = f"{kind} {ref['name']!r}" if obj is None else f"key {ref['key']!r} in {kind} {ref['name']!r}"
    raise ConfigError(f"{what} not found")


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined variables are substituted, ``$$`` escapes."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, text)


def container_env(pod: dict[str, Any], container: dict[str, Any], objects: Objects,
                  base: dict[str, str], node_allocatable: dict[str, str]) -> dict[str, str]:
    """``envFrom`` then ``env`` over ``base``, in order, with ``$(VAR)`` expansion."""
    env = dict(base)
    for src in container.get("envFrom") or []:
        kind, ref = ("ConfigMap", src["configMapRef"]) if "configMapRef" in src else ("Secret", src.get("secretRef"))
        if ref is None:
            continue
        obj = (objects.configmap if kind == "ConfigMap" else objects.secret)(ref["name"])
        if obj is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f"{kind} {ref['name']!r} not found")
        for key, value in (obj.get("data") or {}).items():
            env[src.get("prefix", "") + key] = base64.b64decode(value).decode() if kind == "Secret" else value
    for var in container.get("env") or []:
        name, source = var["name"], var.get("valueFrom")
        if source is None:
            env[name] = expand(var.get("value", ""), env)
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"], node_allocatable)
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
            ref = source["secretKeyRef" if kind == "Secret" else "configMapKeyRef"]
            value = _key_ref(kind, ref, objects.secret if kind == "Secret" else objects.configmap)
            if value is not None:
                env[name] = value
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
    return env


# ---------------------------------------------------------------------------- volumes
def _write(directory: Path, rel: str, content: bytes, mode: int | None) -> None:
    path = directory / rel
    if not path.resolve().is_relative_to(directory.resolve()):
        raise ConfigError(f"volume item path {rel!r} escapes the volume")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode if mode is not None else 0o644)


def _key_files(kind: str, src: dict[str, Any], obj: dict[str, Any] | None, directory: Path,
               default_mode: int | None) -> None:
    name = src.get("name") or src.get("secretName")
    if obj is None:
        if src.get("optional"):
            return
        raise ConfigError(f"{kind} {name!r} for a volume not found")
    data = {k: (base64.b64decode(v) if kind == "Secret" else v.encode()) for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    items = src.get("items") or [{"key": k, "path": k} for k in sorted(data)]
    for item in items:
        if item["key"] not in data:
            if src.get("optional"):
                continue
            raise ConfigError(f"key {item['key']!r} not found in {kind} {name!r}")
        _write(directory, item["path"], data[item["key"]], item.get("mode", default_mode))


def _downward_files(pod: dict[str, Any], items: list[dict[str, Any]], directory: Path,
                    default_mode: int | None) -> None:
    for item in items:
        if "fieldRef" not in item:
            raise ConfigError(f"downwardAPI item {item.get('path')!r}: only fieldRef is supported")
        _write(directory, item["path"], field_value(pod, item["fieldRef"]["fieldPath"]).encode(),
               item.get("mode", default_mode))


def materialise(pod: dict[str, Any], volume: dict[str, Any], directory: Path, objects: Objects) -> Path:
    """Create the files of ``volume`` under ``directory``; returns the host path that backs it."""
    if "persistentVolumeClaim" in volume:
        return objects.claim_dir(volume["persistentVolumeClaim"]["claimName"])
    if "hostPath" in volume:
        host = Path(volume["hostPath"]["path"])
        if volume["hostPath"].get("type") in ("DirectoryOrCreate",):
            host.mkdir(parents=True, exist_ok=True)
        return host
    directory.mkdir(parents=True, exist_ok=True)
    if "emptyDir" in volume:
        return directory
    if "configMap" in volume:
        src = volume["configMap"]
        _key_files("ConfigMap", src, objects.configmap(src["name"]), directory, src.get("defaultMode"))
    elif "secret" in volume:
        src = volume["secret"]
        _key_files("Secret", src, objects.secret(src["secretName"]), directory, src.get("defaultMode"))
    elif "downwardAPI" in volume:
        src = volume["downwardAPI"]
        _downward_files(pod, src.get("items") or [], directory, src.get("defaultMode"))
    elif "projected" in volume:
        mode = volume["projected"].get("defaultMode")
        for source in volume["projected"].get("sources") or []:
            if "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                _write(directory, token["path"], objects.token(token).encode(), 0o600)
            elif "configMap" in source:
                src = source["configMap"]
                _key_files("ConfigMap", src, objects.configmap(src["name"]), directory, mode)
            elif "secret" in source:
                src = source["secret"]
                _key_files("Secret", src, objects.secret(src["name"]), directory, mode)
            elif "downwardAPI" in source:
                _downward_files(pod, source["downwardAPI"].get("items") or [], directory, mode)
            else:
                raise ConfigError(f"volume {volume['name']!r}: unsupported projection {sorted(source)}")
    else:
        kinds = sorted(k for k in volume if k != "name")
        raise ConfigError(f"volume {volume['name']!r}: unsupported volume type {kinds}")
    return directory


def mounts_for(container: dict[str, Any], volume_hosts: dict[str, Path]) -> Mounts:
    mounts = Mounts()
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volume_hosts:
            raise ConfigError(f"volumeMount {vm['mountPath']!r}: no volume named {vm['name']!r}")
        host = volume_hosts[vm["name"]]
        if vm.get("subPath"):
            host = host / vm["subPath"]
            host.mkdir(parents=True, exist_ok=True)
        mounts.add(vm["mountPath"], host)
    return mounts


@dataclass
class Command:
    """What to execute for one container."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    mounts: Mounts


def command_for(container: dict[str, Any], env: dict[str, str], mounts: Mounts, default_cwd: Path,
                entrypoint: list[str], host_env: frozenset[str] = frozenset()) -> Command:
    """argv (``command`` or the image's entrypoint, then ``args``) with ``$(VAR)`` expanded and
    container paths mapped to the host; the same mapping for env values and ``workingDir``.

    ``host_env`` names variables whose values are already host paths (the runner's own: PATH,
    HOME, KUBECONFIG): never rewritten, or a mount at ``/work`` would capture ``/work/...``."""
    command = container.get("command") or list(entrypoint)
    argv = [mounts.rewrite(expand(a, env)) for a in [*command, *(container.get("args") or [])]]
    if not argv:
        raise ConfigError("container has neither command nor an image entrypoint")
    mapped_env = {k: v if k in host_env else mounts.rewrite(v) for k, v in env.items()}
    cwd = default_cwd
    if container.get("workingDir"):
        # Outside every volume the path belongs to the (absent) image: a directory of the pod's.
        wd = container["workingDir"]
        cwd = Path(mounts.host(wd) or default_cwd / "rootfs" / wd.lstrip("/"))
        cwd.mkdir(parents=True, exist_ok=True)
    return Command(argv, mapped_env, cwd, mounts)
