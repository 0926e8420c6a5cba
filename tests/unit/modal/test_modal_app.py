"""The Modal App definition, checked offline.

Modal's servers are unreachable from the test machines, so nothing here deploys or calls a
Function. modal 1.6.4 keeps a locally defined Function's options in ``Function.info()`` (a
``modal.types.FunctionInfo``, no network request while the handle is local): GPU type and count,
CPU, memory, timeout, max_retries and Volume mounts. The full retry policy (coefficient, delays)
is not in ``FunctionInfo``; it is read from the ``FunctionRetryPolicy`` proto that Modal would send
at deploy time (a private detail of modal==1.6.4, pinned in pyproject.toml).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

modal = pytest.importorskip("modal", reason="pip install nsm-operator[modal]")

from modal._utils.async_utils import synchronizer  # noqa: E402

from nsm.modal import app as modal_app  # noqa: E402
from nsm.modal.mapping import ModalLimitError  # noqa: E402
from nsm.spec import parse_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def _retry_policy(function: Any) -> Any:
    """The api_pb2.FunctionRetryPolicy that deploying ``function`` would send (modal 1.6.4 internals)."""
    load = synchronizer._translate_in(function)._load
    cells = dict(zip(load.__code__.co_freevars, (c.cell_contents for c in load.__closure__)))
    return cells["retry_policy"]


def _spec(**overrides: Any):
    body = {"domain": "causal", **overrides}
    return parse_spec(body)


def test_function_info_matches_the_spec() -> None:
    spec = _spec(
        timeoutSeconds=5400,
        resources={"gpu": {"count": 1, "product": "A100-40GB"}, "cpu": "4", "memory": "16Gi"},
        retry={"maxRetries": 3, "backoffCoefficient": 2.5, "initialDelaySeconds": 10, "maxDelaySeconds": 50},
        modal={"app": "nsm-test", "volume": "nsm-test-ckpt"},
    )
    app, function = modal_app.build_app(spec)
    assert app.name == "nsm-test"
    assert synchronizer._translate_in(function)._tag == "train"  # what Function.from_name looks up
    info = function.info()
    assert info.gpus == [("A100-40GB", 1)]
    assert info.cpu == 4.0
    assert info.memory_mib == 16384
    assert info.timeout == 5400
    assert info.max_retries == 3
    assert set(info.volumes) == {"/checkpoints"}
    assert info.volumes["/checkpoints"].name == "nsm-test-ckpt"
    assert info.volumes["/checkpoints"].read_only is False
    assert info.single_use_containers is True
    policy = _retry_policy(function)
    assert policy.retries == 3
    assert policy.backoff_coefficient == 2.5
    assert policy.initial_delay_ms == 10_000
    assert policy.max_delay_ms == 50_000


def test_gpu_count_two_and_cpu_only() -> None:
    _, function = modal_app.build_app(_spec(resources={"gpu": {"count": 2, "product": "H100"}, "cpu": "500m", "memory": "1Gi"}))
    info = function.info()
    assert info.gpus == [("H100", 2)] and info.cpu == 0.5 and info.memory_mib == 1024
    _, cpu_only = modal_app.build_app(_spec(resources={"gpu": {"count": 0}}))
    assert cpu_only.info().gpus == []


def test_app_name_override() -> None:
    app, _ = modal_app.build_app(_spec(), "other-app")
    assert app.name == "other-app"


def test_over_limit_retries_are_clamped_or_refused() -> None:
    spec = _spec(retry={"maxRetries": 12, "initialDelaySeconds": 120, "maxDelaySeconds": 600})
    _, function = modal_app.build_app(spec)
    policy = _retry_policy(function)
    assert (policy.retries, policy.initial_delay_ms, policy.max_delay_ms) == (10, 60_000, 60_000)
    with pytest.raises(ModalLimitError) as info:
        modal_app.build_app(spec, strict=True)
    assert "spec.retry.maxRetries: 12 exceeds Modal's limit of 10" in str(info.value)
    assert "spec.retry.initialDelaySeconds: 120 s exceeds Modal's limit of 60 s" in str(info.value)


def test_image_installs_the_pinned_dependencies() -> None:
    pinned = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert modal_app.trainer_requirements() == pinned
    assert all("==" in r for r in pinned)


# --- the Function body, with the SDK's container-side calls faked ---------------------------------


class FakeVolume:
    def __init__(self) -> None:
        self.commits = 0
        self.reloads = 0

    def commit(self) -> None:
        self.commits += 1

    def reload(self) -> None:
        self.reloads += 1


@pytest.fixture
def container(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    volume = FakeVolume()
    calls: dict[str, Any] = {"volume": volume, "mount": tmp_path}
    monkeypatch.setattr(modal.Volume, "from_name", staticmethod(lambda name, **kw: volume))
    monkeypatch.setattr(modal, "current_function_call_id", lambda: "fc-test")
    monkeypatch.setattr(modal_app, "CHECKPOINT_MOUNT", str(tmp_path))

    def fake_run_trainer(training, output_dir, *, commit, env):
        calls["run"] = {"output_dir": output_dir, "env": env}
        return {"ok": True, "result": {"status": "completed"}, "exitCode": 0}

    monkeypatch.setattr(modal_app, "run_trainer", fake_run_trainer)
    return calls


TRAINING = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
            "metadata": {"name": "t1"}, "spec": {"domain": "causal", "epochs": 2}}


def test_train_records_its_start_and_runs_the_trainer(container: dict[str, Any]) -> None:
    out = modal_app.train(TRAINING, "t1", attempt=2, token="tok")
    assert out == {"ok": True, "result": {"status": "completed"}, "exitCode": 0}
    assert container["run"]["output_dir"] == container["mount"] / "t1"
    assert container["run"]["env"]["NSM_ATTEMPT"] == "2"
    start = json.loads((container["mount"] / "t1" / "calls" / "a2.json").read_text())
    assert start["callId"] == "fc-test" and start["token"] == "tok"
    assert container["volume"].reloads == 1 and container["volume"].commits == 1


def test_train_quits_when_superseded(container: dict[str, Any]) -> None:
    (container["mount"] / "t1").mkdir()
    (container["mount"] / "t1" / "fence.json").write_text(json.dumps({"attempt": 3, "token": "newer"}))
    out = modal_app.train(TRAINING, "t1", attempt=2, token="older")
    assert out["ok"] is False and out["reason"] == "Superseded" and out["retryable"] is False
    assert "run" not in container


def test_train_rejects_an_invalid_spec_without_raising(container: dict[str, Any]) -> None:
    bad = {**TRAINING, "spec": {"domain": "causal", "poolRatio": 2}}
    out = modal_app.train(bad, "t1")
    assert out["ok"] is False and out["reason"] == "InvalidSpec" and "spec.poolRatio" in out["message"]
    assert modal_app.train(TRAINING, "../etc")["reason"] == "InvalidSpec"


def test_per_call_options_match_the_spec() -> None:
    """The bridge spawns with ``Function.with_options(**function_kwargs)``; modal 1.6.4 validates
    and converts those options locally (``_FunctionOptions.new``), so they are checked offline too."""
    from modal._function_variants import _FunctionOptions

    from nsm.modal.mapping import modal_options

    spec = _spec(timeoutSeconds=3600, resources={"gpu": {"count": 2, "product": "L40S"}, "cpu": "6", "memory": "24Gi"})
    volume = modal.Volume.from_name("nsm-checkpoints")
    options = modal_options(spec).function_kwargs(volume=volume, retries=False)
    converted = _FunctionOptions.new(**synchronizer._translate_in(options))
    resources = converted.resources
    assert (resources.gpu_config.gpu_type, resources.gpu_config.count) == ("L40S", 2)
    assert resources.milli_cpu == 6000 and resources.memory_mb == 24 * 1024
    assert converted.timeout_secs == 3600
    assert converted.retry_policy is not None and converted.retry_policy.retries == 0  # the operator retries
