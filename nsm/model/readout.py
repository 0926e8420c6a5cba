"""Graph-level readout: per-graph mean and max of node features."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MeanMaxReadout(nn.Module):
    r"""Concatenated per-graph mean and max pooling.

    .. math::
        \mathbf{r}_g = \Big[\frac{1}{|\mathcal{V}_g|} \sum_{i \in \mathcal{V}_g} \mathbf{x}_i
        \,\Big\Vert\, \max_{i \in \mathcal{V}_g} \mathbf{x}_i\Big]

    ``batch`` must be sorted (graphs contiguous), as collated and pooled batches are. A graph
    without nodes reads out zeros. No parameters.

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
        # Sums accumulate in float32 (also under autocast), then return to the input's dtype.
        total = torch.zeros(num_graphs, x.size(1), dtype=torch.float32, device=x.device)
        total.index_add_(0, batch, x.float())
        mean = (total / count.clamp(min=1).unsqueeze(1)).to(x.dtype)
        # Graphs are contiguous in a sorted batch vector: a segment max is cheaper (forward and
        # backward) than scatter_reduce("amax").
        mx = torch.segment_reduce(x, "max", lengths=count, axis=0, unsafe=True)
        mx = torch.where((count > 0).unsqueeze(1), mx, torch.zeros_like(mx))
        return torch.cat([mean, mx], dim=1)
