"""What an NSMTraining spec asks of Modal: pure functions, no ``modal`` import at module level.

=====================================  ==========================================================
spec                                   Modal Function option
=====================================  ==========================================================
resources.gpu.{product,count}          ``gpu="A100-40GB"`` (count 1), ``"A100-40GB:2"``; count 0 → no GPU;
                                       at most 8 GPUs (A10G: 4) in one container, Modal's limit
resources.cpu (quantity, "4", "500m")  ``cpu=4.0`` (cores, float)
resources.memory ("16Gi", "16G")       ``memory=16384`` (MiB, rounded up)
timeoutSeconds                         ``timeout=`` (seconds, per attempt; at most 24 h on Modal)
retry.*                                ``modal.Retries(max_retries, backoff_coefficient,
                                       initial_delay, max_delay)`` within Modal's limits (below)
modal.volume                           ``volumes={"/checkpoints": Volume.from_name(...)}``
modal.app / modal.environment          App name / Modal environment of deploy, spawn and lookups
=====================================  ==========================================================

Modal's retry limits: at most :data:`MODAL_MAX_RETRIES` retries, backoff coefficient 1–10, and
every delay (initial and maximum) between 0 (initial) / 1 (maximum) and 60 seconds. The spec
allows more (delays up to a day, 20 retries) because the Kubernetes target and the operator
implement retries themselves. Over-limit values are **clamped, with a warning that names the
field** (``ModalOptions.warnings``); ``strict=True`` turns the same messages into a
:class:`ModalLimitError` instead. Clamping is the default because the spec's own defaults
(``maxDelaySeconds: 3600``) already exceed Modal's 60 s ceiling, and refusing the default spec would
make the Modal target unusable without hand-tuning. A warning is only given when the clamp changes
a delay Modal would actually wait (see :func:`map_retries`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from nsm.quantity import parse_quantity
from nsm.spec import MODAL_NODES_MESSAGE, NSMTrainingSpec, RetrySpec, modal_gpu_problem

__all__ = ["ModalLimitError", "ModalOptions", "RetryPolicy", "cpu_cores", "gpu_option", "map_retries", "map_timeout",
           "memory_mib", "modal_options", "parse_quantity"]  # fmt: skip

if TYPE_CHECKING:  # pragma: no cover
    import modal

MODAL_MAX_RETRIES = 10
MODAL_MAX_DELAY_SECONDS = 60.0
MODAL_MIN_MAX_DELAY_SECONDS = 1.0
MODAL_BACKOFF_RANGE = (1.0, 10.0)
MODAL_MAX_TIMEOUT_SECONDS = 24 * 3600

CHECKPOINT_MOUNT = "/checkpoints"
FUNCTION_NAME = "train"



class ModalLimitError(ValueError):
    """A spec value Modal cannot honour; ``str()`` names every offending field (``spec.retry.…``)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def cpu_cores(quantity: str) -> float:
    """``resources.cpu`` as fractional cores for Modal's ``cpu=`` (``"4"`` → 4.0, ``"500m"`` → 0.5)."""
    cores = parse_quantity(quantity, "spec.resources.cpu")
    if cores <= 0:
        raise ValueError(f"spec.resources.cpu: must be positive, got {quantity!r}")
    return float(cores)


def memory_mib(quantity: str) -> int:
    """``resources.memory`` in MiB for Modal's ``memory=`` (``"16Gi"`` → 16384; rounded up)."""
    size = parse_quantity(quantity, "spec.resources.memory")
    if size <= 0:
        raise ValueError(f"spec.resources.memory: must be positive, got {quantity!r}")
    return int(math.ceil(size / Decimal(2**20)))


def gpu_option(spec: NSMTrainingSpec) -> str | None:
    """Modal's ``gpu=`` string: ``"A100-40GB"``, ``"A100-40GB:2"``; None when ``count`` is 0.

    Raises :class:`ModalLimitError` over Modal's per-container limit (a spec with ``target:
    modal`` is rejected earlier, by the spec itself; this covers ``nsm modal run`` of another).
    """
    gpu = spec.resources.gpu
    problem = modal_gpu_problem(gpu)
    if problem:
        raise ModalLimitError([f"spec.{problem}"])
    if gpu.count == 0:
        return None
    return gpu.product.value if gpu.count == 1 else f"{gpu.product.value}:{gpu.count}"


@dataclass(frozen=True)
class RetryPolicy:
    """The arguments of ``modal.Retries`` after fitting ``spec.retry`` into Modal's limits."""

    max_retries: int
    backoff_coefficient: float
    initial_delay: float
    max_delay: float

    def to_modal(self) -> "modal.Retries":
        import modal

        return modal.Retries(
            max_retries=self.max_retries,
            backoff_coefficient=self.backoff_coefficient,
            initial_delay=self.initial_delay,
            max_delay=self.max_delay,
        )


def map_retries(retry: RetrySpec, *, strict: bool = False) -> tuple[RetryPolicy, list[str]]:
    """``spec.retry`` → (:class:`RetryPolicy`, warnings); raises :class:`ModalLimitError` if ``strict``.

    A field is reported when clamping it changes what Modal does: more retries than Modal allows,
    or a retry delay (as :meth:`RetrySpec.delay` computes it) longer than Modal's 60 s.
    ``maxDelaySeconds: 3600`` with delays that never pass 60 s is clamped silently.
    """
    problems: list[str] = []
    max_retries = retry.max_retries
    if max_retries > MODAL_MAX_RETRIES:
        problems.append(
            f"spec.retry.maxRetries: {max_retries} exceeds Modal's limit of {MODAL_MAX_RETRIES} "
            f"retries; using {MODAL_MAX_RETRIES}"
        )
        max_retries = MODAL_MAX_RETRIES
    low, high = MODAL_BACKOFF_RANGE
    coefficient = retry.backoff_coefficient
    if not low <= coefficient <= high:  # the spec has the same bounds; kept for older specs
        problems.append(
            f"spec.retry.backoffCoefficient: {coefficient} is outside Modal's range {low}-{high}; "
            f"using {min(max(coefficient, low), high)}"
        )
        coefficient = min(max(coefficient, low), high)
    initial = retry.initial_delay_seconds
    if initial > MODAL_MAX_DELAY_SECONDS:
        problems.append(
            f"spec.retry.initialDelaySeconds: {initial:g} s exceeds Modal's limit of "
            f"{MODAL_MAX_DELAY_SECONDS:g} s; using {MODAL_MAX_DELAY_SECONDS:g} s"
        )
        initial = MODAL_MAX_DELAY_SECONDS
    max_delay = min(max(retry.max_delay_seconds, MODAL_MIN_MAX_DELAY_SECONDS), MODAL_MAX_DELAY_SECONDS)
    policy = RetryPolicy(max_retries, coefficient, initial, max_delay)
    if retry.initial_delay_seconds <= MODAL_MAX_DELAY_SECONDS:
        longest = max((retry.delay(n) for n in range(1, max_retries + 1)), default=0.0)
        if longest > MODAL_MAX_DELAY_SECONDS:
            capped = [n for n in range(1, max_retries + 1) if retry.delay(n) > MODAL_MAX_DELAY_SECONDS]
            problems.append(
                f"spec.retry.maxDelaySeconds: {retry.max_delay_seconds:g} s allows retry delays up to "
                f"{longest:g} s but Modal waits at most {MODAL_MAX_DELAY_SECONDS:g} s; retries "
                f"{', '.join(map(str, capped))} wait {MODAL_MAX_DELAY_SECONDS:g} s"
            )
    if problems and strict:
        raise ModalLimitError(problems)
    return policy, problems


@dataclass(frozen=True)
class ModalOptions:
    """Everything the Modal Function is defined with, derived from one spec."""

    app_name: str
    volume_name: str
    environment: str | None
    gpu: str | None
    cpu: float
    memory_mib: int
    timeout: int
    retries: RetryPolicy
    warnings: tuple[str, ...] = field(default=())

    def function_kwargs(self, *, volume: Any, retries: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``app.function(...)`` / ``Function.with_options(...)``.

        ``volume`` is the ``modal.Volume`` to mount at :data:`CHECKPOINT_MOUNT`. ``retries=False``
        sets Modal's retries to 0 (the operator owns retries; see ``docs/modal.md``).
        """
        kwargs: dict[str, Any] = {
            "cpu": self.cpu,
            "memory": self.memory_mib,
            "timeout": self.timeout,
            "retries": self.retries.to_modal() if retries else 0,
            "volumes": {CHECKPOINT_MOUNT: volume},
        }
        if self.gpu is not None:
            kwargs["gpu"] = self.gpu
        return kwargs


def map_timeout(spec: NSMTrainingSpec) -> tuple[int, list[str]]:
    """``timeoutSeconds`` within Modal's 24 h per call (a longer training resumes in the next attempt)."""
    if spec.timeout_seconds <= MODAL_MAX_TIMEOUT_SECONDS:
        return spec.timeout_seconds, []
    return MODAL_MAX_TIMEOUT_SECONDS, [
        f"spec.timeoutSeconds: {spec.timeout_seconds} s exceeds Modal's limit of {MODAL_MAX_TIMEOUT_SECONDS} s "
        f"(24 h) per call; using {MODAL_MAX_TIMEOUT_SECONDS} s (the next attempt resumes from last.pt)"
    ]


def modal_options(spec: NSMTrainingSpec, *, strict: bool = False) -> ModalOptions:
    """Map ``spec`` onto Modal's Function options; raises ValueError / :class:`ModalLimitError`."""
    if spec.resources.nodes > 1:
        raise ModalLimitError([f"spec.{MODAL_NODES_MESSAGE}"])  # never clamped: a different world size
    timeout, timeout_warnings = map_timeout(spec)
    try:
        retries, warnings = map_retries(spec.retry, strict=strict)
    except ModalLimitError as exc:
        raise ModalLimitError(timeout_warnings + exc.problems) from None
    if strict and timeout_warnings:
        raise ModalLimitError(timeout_warnings)
    warnings = timeout_warnings + warnings
    return ModalOptions(
        app_name=spec.modal.app,
        volume_name=spec.modal.volume,
        environment=spec.modal.environment,
        gpu=gpu_option(spec),
        cpu=cpu_cores(spec.resources.cpu),
        memory_mib=memory_mib(spec.resources.memory),
        timeout=timeout,
        retries=retries,
        warnings=tuple(warnings),
    )


def training_dir(name: str) -> str:
    """The training's directory on the Volume, relative to its root (``<name>``)."""
    return name.strip("/")
