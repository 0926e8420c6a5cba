"""Device selection, TF32 and automatic mixed precision (AMP).

AMP policy: bfloat16 autocast works on CPU and CUDA and needs no loss scaling; float16 autocast
is CUDA-only and runs with a :class:`torch.amp.GradScaler`. Asking for float16 on CPU is a spec
error (exit code 2), not a silent fallback, so a run never trains in a precision nobody chose.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from nsm.spec import NSMTrainingSpec, SpecError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N), got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} requested but CUDA is not available")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    """Short device name for metric labels: ``cpu`` or ``cuda:N``."""
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


def device_name(device: torch.device) -> str:
    """Human-readable device, e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def configure_tf32(enabled: bool) -> None:
    """TF32 tensor-core matmuls/convolutions on Ampere+ (no effect on CPU)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


@dataclass(frozen=True)
class AmpPolicy:
    """What autocast does on this run; ``dtype`` is None when AMP is off."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def needs_scaler(self) -> bool:
        return self.dtype is torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def make_scaler(self) -> torch.amp.GradScaler:
        # A disabled scaler is a pass-through, so the loop has a single code path.
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def amp_policy(spec: NSMTrainingSpec, device: torch.device) -> AmpPolicy:
    """The autocast policy of ``spec.optimization`` on ``device``; raises :class:`SpecError` for fp16 on CPU."""
    opt = spec.optimization
    if not opt.amp:
        return AmpPolicy(device.type, None)
    dtype = torch.bfloat16 if opt.amp_dtype.value == "bfloat16" else torch.float16
    if dtype is torch.float16 and device.type != "cuda":
        raise SpecError(
            [
                (
                    "spec.optimization.ampDtype",
                    f"float16 autocast needs a CUDA device (this run uses {device.type}); "
                    "use bfloat16 or disable spec.optimization.amp",
                )
            ]
        )
    return AmpPolicy(device.type, dtype)
