"""The optimizer side of a training step: fused AdamW, gradients in one flat buffer per device.

A training step of the NSM model has 45 parameter tensors. PyTorch's default AdamW on CPU is a
per-tensor Python loop (about 9 aten ops per tensor, 407 per step, as many as the whole
backward pass); :func:`make_adamw` asks for the fused kernel instead (one op for all tensors,
CPU and CUDA), or the multi-tensor ``foreach`` one where fusion is not supported.

:class:`FlatGradients` makes every ``param.grad`` a view into one contiguous buffer, so zeroing
is one ``zero_`` and global-norm clipping is one norm and one in-place multiply, with no
per-parameter op and no host synchronisation. Autograd accumulates into an existing ``.grad``
in place, so the views stay attached across steps.
"""

from __future__ import annotations

from collections.abc import Iterable
import torch
from torch import Tensor
from torch.optim import Optimizer

# The device types torch's fused AdamW has kernels for.
_FUSED_DEVICES = ("cpu", "cuda")


def _fusable(params: list[Tensor]) -> bool:
    return bool(params) and all(p.device.type in _FUSED_DEVICES and p.is_floating_point() for p in params)


def make_adamw(params: Iterable[Tensor], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for the parameters, else ``foreach``.

    The implementation flags are restored after :meth:`~torch.optim.Optimizer.load_state_dict`,
    which otherwise takes them from the checkpoint: a checkpoint written by the per-tensor
    AdamW would silently bring the slow loop back on resume.
    """
    params = list(params)
    fused = _fusable(params)
    optimizer = torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay, fused=True if fused else None, foreach=None if fused else True
    )
    flags = {"fused": optimizer.param_groups[0]["fused"], "foreach": optimizer.param_groups[0]["foreach"]}

    def restore_implementation(opt: Optimizer) -> None:
        for group in opt.param_groups:
            group.update(flags)
            if not flags["fused"]:
                continue
            for p in group["params"]:
                state = opt.state.get(p, {})
                # Fused AdamW keeps its step counter on the parameter's device, as float32.
                if "step" in state:
                    state["step"] = state["step"].to(device=p.device, dtype=torch.float32)

    optimizer.register_load_state_dict_post_hook(restore_implementation)
    return optimizer


class FlatGradients:
    """The gradients of ``params`` as views of one contiguous buffer per (device, dtype).

    Every parameter gets a zero gradient up front (a parameter that takes no part in a step
    keeps a zero gradient, where ``zero_grad(set_to_none=True)`` would leave ``None`` and the
    optimizer would skip it; every parameter of :class:`~nsm.model.NSMModel` gets a gradient
    in every step). Sparse gradients are not supported.

    Args:
        params: the parameters (those of the optimizer), all dense.
    """

    def __init__(self, params: Iterable[Tensor]) -> None:
        groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for p in params:
            if p.requires_grad:
                groups.setdefault((p.device, p.dtype), []).append(p)
        self.params = [p for group in groups.values() for p in group]
        self.buffers: list[Tensor] = []
        self._views: list[Tensor] = []
        for (device, dtype), group in groups.items():
            flat = torch.zeros(sum(p.numel() for p in group), device=device, dtype=dtype)
            self.buffers.append(flat)
            self._views.extend(v.view_as(p) for v, p in zip(flat.split([p.numel() for p in group]), group))
        self.attach()

    def attach(self) -> None:
        """(Re)point every ``param.grad`` at its view (e.g. after ``zero_grad(set_to_none=True)``)."""
        for p, view in zip(self.params, self._views):
            if p.grad is not view:
                if p.grad is not None:
                    view.copy_(p.grad)
                p.grad = view

    def zero_(self) -> None:
        """Zero every gradient: one ``zero_`` per buffer."""
        for flat in self.buffers:
            flat.zero_()

    def clip_norm_(self, max_norm: float, eps: float = 1e-6) -> Tensor:
        """Scale the gradients so that their global L2 norm is at most ``max_norm``; return the norm.

        The same rule as :func:`torch.nn.utils.clip_grad_norm_` (``max_norm / (norm + 1e-6)``,
        at most 1), on a device tensor: no host synchronisation.
        """
        norms = [torch.linalg.vector_norm(flat) for flat in self.buffers]
        total = norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms))
        coef = (max_norm / (total + eps)).clamp_(max=1.0)
        for flat in self.buffers:
            flat.mul_(coef.to(flat.device))
        return total
