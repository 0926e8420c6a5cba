from __future__ import annotations

import pytest

from nsm_operator.settings import DEFAULT_GPU_NODE_LABELS, OperatorSettings, SettingsError


def test_defaults():
    s = OperatorSettings.from_env({})
    assert s.default_image == "ghcr.io/nsm-dev/nsm-trainer:0.1.0"
    assert s.namespaces == () and s.metrics_port == 8080 and s.trainer_metrics_port == 9400
    assert s.modal_secret == "modal-credentials" and s.modal_poll_seconds == 15.0
    assert s.gpu_labels("A100-40GB") == {"nvidia.com/gpu.product": ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"),
                                         "cloud.google.com/gke-accelerator": ("nvidia-tesla-a100",)}
    assert s.gpu_labels("H100")["nvidia.com/gpu.product"] == ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe")
    assert s.gpu_labels("nope") == {}
    assert [t.to_wire() for t in s.pod_defaults.gpu_tolerations] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (s.job_ttl_seconds_after_finished, s.job_history_limit) == (86400, 3)


def test_every_variable_parses():
    env = {
        "NSM_OPERATOR_DEFAULT_IMAGE": "r/i:2",
        "NSM_OPERATOR_NAMESPACES": " a, b ,,",
        "NSM_OPERATOR_PRICE_PER_GPU_HOUR": "3.5",
        "NSM_OPERATOR_GPU_NODE_LABELS": '{"H100": {"pool": "h"}, "X": {"a": ["b", "c"]}}',
        "NSM_OPERATOR_POD_DEFAULTS": '{"scheduling": {"priorityClassName": "low"}, "gpuTolerations": []}',
        "NSM_OPERATOR_JOB_TTL_SECONDS_AFTER_FINISHED": "0",
        "NSM_OPERATOR_JOB_HISTORY_LIMIT": "5",
        "NSM_OPERATOR_METRICS_PORT": "9000",
        "NSM_OPERATOR_TRAINER_METRICS_PORT": "9401",
        "NSM_OPERATOR_MODAL_SECRET": "m",
        "NSM_OPERATOR_MODAL_POLL_SECONDS": "2.5",
        "NSM_OPERATOR_WATCH_TIMEOUT_SECONDS": "60",
        "NSM_OPERATOR_REQUEST_TIMEOUT_SECONDS": "7",
        "UNRELATED": "x",
    }
    s = OperatorSettings.from_env(env)
    assert s.default_image == "r/i:2" and s.namespaces == ("a", "b") and s.price_per_gpu_hour == 3.5
    assert s.gpu_labels("H100") == {"pool": ("h",)} and s.gpu_labels("X") == {"a": ("b", "c")}
    assert s.gpu_labels("T4") == dict(DEFAULT_GPU_NODE_LABELS["T4"])  # merged over defaults
    assert s.pod_defaults.scheduling.priority_class_name == "low" and s.pod_defaults.gpu_tolerations == []
    assert (s.job_ttl_seconds_after_finished, s.job_history_limit) == (0, 5)
    assert (s.metrics_port, s.trainer_metrics_port, s.modal_secret) == (9000, 9401, "m")
    assert (s.modal_poll_seconds, s.watch_timeout_seconds, s.request_timeout_seconds) == (2.5, 60, 7.0)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("NSM_OPERATOR_METRICS_PORT", "http"),
        ("NSM_OPERATOR_METRICS_PORT", "70000"),
        ("NSM_OPERATOR_PRICE_PER_GPU_HOUR", "-1"),
        ("NSM_OPERATOR_GPU_NODE_LABELS", "[1]"),
        ("NSM_OPERATOR_GPU_NODE_LABELS", "{not json"),
        ("NSM_OPERATOR_GPU_NODE_LABELS", '{"H100": {"pool": [1]}}'),
        ("NSM_OPERATOR_POD_DEFAULTS", '{"scheduling": {"tolerations": [{"operator": "Sometimes"}]}}'),
        ("NSM_OPERATOR_POD_DEFAULTS", '{"env": [{"name": "NSM_ATTEMPT", "value": "9"}]}'),
        ("NSM_OPERATOR_JOB_HISTORY_LIMIT", "-1"),
    ],
)
def test_bad_values_name_the_variable(var, value):
    with pytest.raises(SettingsError, match=var):
        OperatorSettings.from_env({var: value})


def test_modal_knobs_are_typed_settings():
    s = OperatorSettings.from_env({"NSM_OPERATOR_MODAL_BRIDGE": "pkg.mod:make",
                                   "NSM_OPERATOR_MODAL_LAUNCH_GRACE_SECONDS": "3"})  # fmt: skip
    assert (s.modal_bridge, s.modal_launch_grace_seconds) == ("pkg.mod:make", 3.0)
    assert (OperatorSettings().modal_bridge, OperatorSettings().modal_launch_grace_seconds) == ("", 120.0)
    with pytest.raises(SettingsError, match="NSM_OPERATOR_MODAL_LAUNCH_GRACE_SECONDS"):
        OperatorSettings.from_env({"NSM_OPERATOR_MODAL_LAUNCH_GRACE_SECONDS": "soon"})


def test_every_field_is_documented():
    """docs/operator.md lists the variable of every settings field."""
    import dataclasses
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs/operator.md").read_text()
    for f in dataclasses.fields(OperatorSettings):
        assert f"`NSM_OPERATOR_{f.name.upper()}`" in doc, f.name
