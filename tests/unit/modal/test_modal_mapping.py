"""Spec → Modal options (nsm.modal.mapping): pure functions, no Modal server involved.

No __init__.py in this directory on purpose: a test package named ``modal`` would shadow the SDK.
"""

from __future__ import annotations

import pytest

from nsm.modal.mapping import (
    MODAL_MAX_RETRIES,
    ModalLimitError,
    cpu_cores,
    gpu_option,
    map_retries,
    memory_mib,
    modal_options,
    parse_quantity,
)
from nsm.spec import RetrySpec, parse_spec


@pytest.mark.parametrize(
    ("text", "cores"),
    [("4", 4.0), ("500m", 0.5), ("1.5", 1.5), ("250m", 0.25), ("2e0", 2.0), ("16", 16.0)],
)
def test_cpu_cores(text: str, cores: float) -> None:
    assert cpu_cores(text) == cores


@pytest.mark.parametrize(
    ("text", "mib"),
    [("16Gi", 16384), ("512Mi", 512), ("1Ti", 1024 * 1024), ("1G", 954), ("2048Ki", 2), ("1e9", 954),
     ("1500M", 1431), ("1.5Gi", 1536)],
)
def test_memory_mib_rounds_up(text: str, mib: int) -> None:
    assert memory_mib(text) == mib


def test_quantity_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"spec.resources.memory: 'lots' is not a Kubernetes quantity"):
        memory_mib("lots")
    with pytest.raises(ValueError, match="spec.resources.cpu: must be positive"):
        cpu_cores("0")
    assert parse_quantity("100k") == 100_000


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [({"count": 1}, "A100-40GB"), ({"count": 2}, "A100-40GB:2"), ({"count": 0}, None),
     ({"count": 1, "product": "H100"}, "H100"), ({"count": 8, "product": "B200"}, "B200:8"),
     ({"count": 1, "product": "A100-80GB"}, "A100-80GB")],
)
def test_gpu_option(gpu: dict, expected: str | None) -> None:
    assert gpu_option(parse_spec({"domain": "causal", "resources": {"gpu": gpu}})) == expected


def test_retries_within_limits_pass_unchanged() -> None:
    policy, warnings = map_retries(RetrySpec(max_retries=3, backoff_coefficient=3.0,
                                             initial_delay_seconds=5, max_delay_seconds=40))
    assert (policy.max_retries, policy.backoff_coefficient, policy.initial_delay, policy.max_delay) == (3, 3.0, 5, 40)
    assert warnings == []
    retries = policy.to_modal()
    assert retries.max_retries == 3
    assert retries.backoff_coefficient == 3.0
    assert retries.initial_delay.total_seconds() == 5
    assert retries.max_delay.total_seconds() == 40


def test_initial_delay_over_limit_is_clamped_with_a_message_naming_the_field() -> None:
    policy, warnings = map_retries(RetrySpec(initial_delay_seconds=120, max_delay_seconds=600))
    assert policy.initial_delay == 60 and policy.max_delay == 60
    assert any(w.startswith("spec.retry.initialDelaySeconds: 120 s exceeds Modal's limit of 60 s") for w in warnings)
    with pytest.raises(ModalLimitError, match=r"spec\.retry\.initialDelaySeconds: 120 s exceeds"):
        map_retries(RetrySpec(initial_delay_seconds=120, max_delay_seconds=600), strict=True)


def test_max_retries_over_limit() -> None:
    policy, warnings = map_retries(RetrySpec(max_retries=15, initial_delay_seconds=1, max_delay_seconds=1))
    assert policy.max_retries == MODAL_MAX_RETRIES
    assert warnings == [f"spec.retry.maxRetries: 15 exceeds Modal's limit of {MODAL_MAX_RETRIES} retries; using 10"]
    with pytest.raises(ModalLimitError) as info:
        map_retries(RetrySpec(max_retries=15, initial_delay_seconds=1, max_delay_seconds=1), strict=True)
    assert info.value.problems == warnings


def test_max_delay_only_warns_when_a_delay_really_changes() -> None:
    # 10 s * 2**(n-1) for 2 retries never passes 60 s: the 3600 s cap is clamped silently.
    policy, warnings = map_retries(RetrySpec(max_retries=2, initial_delay_seconds=10, max_delay_seconds=3600))
    assert policy.max_delay == 60 and warnings == []
    # The spec's defaults (60 s, x2, 2 retries) would wait 120 s before retry 2.
    policy, warnings = map_retries(RetrySpec())
    assert policy.max_delay == 60
    assert len(warnings) == 1 and warnings[0].startswith("spec.retry.maxDelaySeconds: 3600 s allows retry delays up to 120 s")
    # Modal needs max_delay >= 1 s.
    policy, warnings = map_retries(RetrySpec(initial_delay_seconds=0, max_delay_seconds=0))
    assert policy.max_delay == 1 and policy.to_modal().max_delay.total_seconds() == 1


def test_modal_options_of_a_full_spec() -> None:
    spec = parse_spec({
        "domain": "kg",
        "timeoutSeconds": 5400,
        "resources": {"gpu": {"count": 2, "product": "H100"}, "cpu": "8", "memory": "64Gi"},
        "retry": {"maxRetries": 4, "backoffCoefficient": 1.5, "initialDelaySeconds": 10, "maxDelaySeconds": 30},
        "modal": {"app": "nsm-prod", "volume": "nsm-ckpt", "environment": "staging"},
    })
    opts = modal_options(spec)
    assert (opts.app_name, opts.volume_name, opts.environment) == ("nsm-prod", "nsm-ckpt", "staging")
    assert (opts.gpu, opts.cpu, opts.memory_mib, opts.timeout) == ("H100:2", 8.0, 65536, 5400)
    assert opts.warnings == ()
    kwargs = opts.function_kwargs(volume="VOL")
    assert kwargs["volumes"] == {"/checkpoints": "VOL"} and kwargs["gpu"] == "H100:2"
    assert kwargs["retries"].max_retries == 4
    assert opts.function_kwargs(volume="VOL", retries=False)["retries"] == 0
    assert "gpu" not in modal_options(parse_spec({"domain": "kg", "resources": {"gpu": {"count": 0}}})).function_kwargs(volume=None)


def test_timeout_over_modal_limit() -> None:
    spec = parse_spec({"domain": "causal", "timeoutSeconds": 3 * 86400, "retry": {"initialDelaySeconds": 1, "maxDelaySeconds": 1}})
    opts = modal_options(spec)
    assert opts.timeout == 86400
    assert opts.warnings == ("spec.timeoutSeconds: 259200 s exceeds Modal's limit of 86400 s (24 h) per call; "
                             "using 86400 s (the next attempt resumes from last.pt)",)
    with pytest.raises(ModalLimitError, match="spec.timeoutSeconds"):
        modal_options(spec, strict=True)


def test_gpu_option_refuses_more_gpus_than_modal_attaches() -> None:
    """``nsm modal run`` of a spec written for Kubernetes (16 GPUs, several nodes) says why not."""
    spec = parse_spec({"domain": "causal", "resources": {"gpu": {"count": 16}}})
    with pytest.raises(ModalLimitError, match=r"spec\.resources\.gpu\.count: Modal attaches at most 8 A100-40GB"):
        gpu_option(spec)
    with pytest.raises(ModalLimitError, match=r"spec\.resources\.gpu\.count: Modal attaches at most 4 A10G"):
        gpu_option(parse_spec({"domain": "causal", "resources": {"gpu": {"count": 5, "product": "A10G"}}}))
    with pytest.raises(ModalLimitError, match=r"spec\.resources\.nodes must be 1 with target modal"):
        modal_options(parse_spec({"domain": "causal", "resources": {"nodes": 2}}))
    assert gpu_option(parse_spec({"domain": "causal", "resources": {"gpu": {"count": 4, "product": "A10G"}}})) == "A10G:4"
