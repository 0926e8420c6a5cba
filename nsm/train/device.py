"""Device selection, TF32 and automatic mixed precision (AMP).

AMP policy: ``optimization.amp`` is a request that applies where autocast pays, so one YAML
trains at full speed on a GPU and on a laptop. On CUDA, bfloat16 autocast needs no loss scaling
and float16 runs with a :class:`torch.amp.GradScaler`. On CPU autocast is ignored, with one log
line saying so: the model is small sparse message passing (gathers, ``index_add``, segment
reductions) that has no fast bfloat16 kernels on CPU, and every autocast region adds casts. It
measured about 4x slower there (causal 560 vs 2,562 graphs/s, kg 528 vs 2,486, planning at
batch 16 263 vs 1,011; issue #13), and float16 autocast has no CPU support at all.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from nsm.spec import NSMTrainingSpec

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
    note: str | None = None  # what the spec asked for and this device ignores, and why

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


CPU_AMP_NOTE = (
    "optimization.amp ignored on cpu: {dtype} autocast measured ~4x slower than float32 for "
    "this model's sparse message passing on CPU (and float16 has no CPU kernels); training in float32"
)


def amp_policy(spec: NSMTrainingSpec, device: torch.device) -> AmpPolicy:
    """The autocast policy of ``spec.optimization`` on ``device`` (off on CPU, see the module doc)."""
    opt = spec.optimization
    if not opt.amp:
        return AmpPolicy(device.type, None)
    if device.type != "cuda":
        return AmpPolicy(device.type, None, note=CPU_AMP_NOTE.format(dtype=opt.amp_dtype.value))
    dtype = torch.bfloat16 if opt.amp_dtype.value == "bfloat16" else torch.float16
    return AmpPolicy(device.type, dtype)
