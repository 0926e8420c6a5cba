"""The process node's pod → process translation (tests/cluster/podspec.py), on plain dicts."""

import base64
from pathlib import Path

import pytest

from tests.cluster import podspec
from tests.cluster.podspec import ConfigError

POD = {"metadata": {"name": "t-a1-xyz", "namespace": "ns1", "uid": "u-1", "labels": {"app": "nsm"},
                    "annotations": {"note": "hi"}},
       "spec": {"nodeName": "exec-0", "serviceAccountName": "t-trainer"}}  # fmt: skip
SECRET = {"data": {"token": base64.b64encode(b"s3cret").decode()}}
CONFIG = {"data": {"mode": "fast", "training.yaml": "spec: {}\n"}}


def objects(tmp_path: Path) -> podspec.Objects:
    return podspec.Objects(
        configmap=lambda name: CONFIG if name == "cfg" else None,
        secret=lambda name: SECRET if name == "sec" else None,
        claim_dir=lambda claim: tmp_path / "claims" / claim,
        token=lambda projection: f"token-for-{projection.get('audience', 'api')}",
    )


def test_env_resolves_every_value_source_in_order(tmp_path):
    container = {
        "resources": {"limits": {"memory": "2Gi"}, "requests": {"cpu": "1500m"}},
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": True}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "GREETING", "value": "$(NAME) on $(NODE) costs $$(NOT) $(UNDEFINED)"},
        ],
    }
    env = podspec.container_env(POD, container, objects(tmp_path), {"PATH": "/bin"}, {"cpu": "64"})
    assert env == {"PATH": "/bin", "CFG_mode": "fast", "CFG_training.yaml": "spec: {}\n", "NAME": "t-a1-xyz",
                   "APP": "nsm", "NODE": "exec-0", "TOKEN": "s3cret", "MODE": "fast", "CPU": "1500",
                   "MEM": "2048", "GREETING": "t-a1-xyz on exec-0 costs $(NOT) $(UNDEFINED)"}  # fmt: skip


@pytest.mark.parametrize("ref", [{"secretKeyRef": {"name": "missing", "key": "k"}},
                                 {"configMapKeyRef": {"name": "cfg", "key": "missing"}}])
def test_missing_reference_is_a_config_error(tmp_path, ref):
    with pytest.raises(ConfigError, match="missing"):
        podspec.container_env(POD, {"env": [{"name": "X", "valueFrom": ref}]}, objects(tmp_path), {}, {})


def test_volumes_and_mount_mapping(tmp_path):
    objs = objects(tmp_path)
    volumes = [
        {"name": "spec", "configMap": {"name": "cfg", "items": [{"key": "training.yaml", "path": "training.yaml"}]}},
        {"name": "creds", "secret": {"secretName": "sec", "defaultMode": 0o400}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "ckpt", "persistentVolumeClaim": {"claimName": "t-checkpoints"}},
        {"name": "api", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "cfg", "items": [{"key": "mode", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
    ]  # fmt: skip
    hosts = {v["name"]: podspec.materialise(POD, v, tmp_path / "vol" / v["name"], objs) for v in volumes}
    assert (hosts["spec"] / "training.yaml").read_text() == "spec: {}\n" and not (hosts["spec"] / "mode").exists()
    assert (hosts["creds"] / "token").read_bytes() == b"s3cret" and (hosts["creds"] / "token").stat().st_mode & 0o777 == 0o400
    assert hosts["ckpt"] == tmp_path / "claims" / "t-checkpoints"
    assert (hosts["api"] / "token").read_text() == "token-for-api"
    assert (hosts["api"] / "namespace").read_text() == "ns1" and (hosts["api"] / "ca.crt").read_text() == "fast"

    container = {"command": ["nsm", "train", "-f", "/etc/nsm/training.yaml", "--output-dir=/checkpoints"],
                 "args": ["--x", "$(HOME)/a"], "workingDir": "/checkpoints/run",
                 "volumeMounts": [{"name": "spec", "mountPath": "/etc/nsm"}, {"name": "ckpt", "mountPath": "/checkpoints"},
                                  {"name": "tmp", "mountPath": "/tmp"}, {"name": "ckpt", "mountPath": "/checkpoints/sub",
                                                                          "subPath": "deeper"}]}  # fmt: skip
    mounts = podspec.mounts_for(container, hosts)
    cmd = podspec.command_for(container, {"HOME": "/tmp"}, mounts, tmp_path / "pod", ["ignored"])
    ckpt = tmp_path / "claims" / "t-checkpoints"
    assert cmd.argv == ["nsm", "train", "-f", f"{hosts['spec']}/training.yaml", f"--output-dir={ckpt}",
                        "--x", f"{hosts['tmp']}/a"]  # fmt: skip
    assert cmd.env == {"HOME": str(hosts["tmp"])} and cmd.cwd == ckpt / "run"
    assert mounts.host("/checkpoints/sub/x") == f"{ckpt}/deeper/x" and mounts.host("/etcetera") is None


def test_image_entrypoint_when_no_command_and_unsupported_volume(tmp_path):
    cmd = podspec.command_for({"args": ["train"], "workingDir": "/app"}, {}, podspec.Mounts(), tmp_path, ["nsm"])
    assert cmd.argv == ["nsm", "train"] and cmd.cwd == tmp_path / "rootfs" / "app"
    with pytest.raises(ConfigError, match="unsupported volume type"):
        podspec.materialise(POD, {"name": "x", "nfs": {}}, tmp_path / "x", objects(tmp_path))


def test_host_env_is_never_rewritten(tmp_path):
    mounts = podspec.Mounts()
    mounts.add("/work", tmp_path / "work")
    env = {"PATH": "/work/venv/bin:/usr/bin", "DATA": "/work/data"}
    cmd = podspec.command_for({"command": ["x"]}, env, mounts, tmp_path, [], host_env=frozenset({"PATH"}))
    assert cmd.env == {"PATH": "/work/venv/bin:/usr/bin", "DATA": f"{tmp_path}/work/data"}
