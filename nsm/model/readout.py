"""Graph-level readout: per-graph mean and max of node features."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx


class _SegmentMax(torch.autograd.Function):
    """Per-graph column max whose backward splits the upstream gradient evenly over tied maxima.

    ``torch.segment_reduce(x, "max")`` (the pinned torch) hands a *negative* upstream gradient in
    full to every tied maximum (a positive one it splits), so after a ReLU, where whole columns
    of a graph are 0, every step pushed features down ``n`` times harder than up and training
    collapsed. ``torch.amax``'s rule is used instead: each of the ``t`` tied maxima gets
    ``grad / t``, so a column's gradient always sums to the upstream value, whatever its sign.
    ``scatter_reduce("amax")``'s own backward is not used because with ``include_self=False`` it
    still counts the initial value as a tie when it equals the max (an all-zero column).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        index = batch.unsqueeze(1).expand_as(x)
        # Graphs without nodes keep the zeros this starts from.
        out = x.new_zeros(num_graphs, x.size(1)).scatter_reduce_(0, index, x, "amax", include_self=False)
        ctx.save_for_backward(x, batch, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:
        x, batch, out = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        # The tie mask as 1.0 / 0.0 straight from the comparison: a bool mask and its conversion
        # cost three times as much on CPU.
        tied = torch.eq(x, out.index_select(0, batch), out=torch.empty_like(x))
        ties = torch.zeros_like(out).index_add_(0, batch, tied)
        # Every graph with nodes has at least one maximum per column; empty graphs are never read.
        share = grad / ties.clamp_(min=1)
        return share.index_select(0, batch).mul_(tied), None, None


def segment_max(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """``[B, C]`` column-wise max of each graph's rows of ``x`` (0 for a graph without nodes).

    The gradient of a column is split evenly over the graph's tied maxima (as ``torch.amax``),
    for upstream gradients of either sign. ``batch`` need not be sorted.
    """
    if batch.numel() != x.size(0):
        raise ValueError(f"segment_max: batch has {batch.numel()} entries for {x.size(0)} rows")
    return _SegmentMax.apply(x, batch, num_graphs)


class MeanMaxReadout(nn.Module):
    r"""Concatenated per-graph mean and max pooling.

    .. math::
        \mathbf{r}_g = \Big[\frac{1}{|\mathcal{V}_g|} \sum_{i \in \mathcal{V}_g} \mathbf{x}_i
        \,\Big\Vert\, \max_{i \in \mathcal{V}_g} \mathbf{x}_i\Big]

    The max's gradient is split evenly over tied maxima (:func:`segment_max`). A graph without
    nodes reads out zeros. No parameters.

    Shapes:
        - **input:** node features :math:`(N, C)`, batch vector :math:`(N)`, ``num_graphs`` :math:`B`
        - **output:** :math:`(B, 2C)`
    """

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        if batch.numel() != x.size(0):
            raise ValueError(f"MeanMaxReadout: batch has {batch.numel()} entries for {x.size(0)} nodes")
        count = torch.zeros(num_graphs, dtype=torch.long, device=x.device).index_add_(
            0, batch, torch.ones_like(batch)
        )
        # Sums accumulate in at least float32 (also under autocast), then return to x's dtype.
        acc = torch.promote_types(x.dtype, torch.float32)
        total = torch.zeros(num_graphs, x.size(1), dtype=acc, device=x.device)
        total.index_add_(0, batch, x.to(acc))
        mean = (total / count.clamp(min=1).unsqueeze(1)).to(x.dtype)
        return torch.cat([mean, segment_max(x, batch, num_graphs)], dim=1)
