"""The WHY step: score-based top-k pooling of a typed graph one level up."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from nsm.model.rgcn import EdgePlan, RGCNLayer, build_edge_plan

# ceil(ratio * n) in float64 with a tolerance, so that e.g. 0.13 * 100 keeps 13 nodes, not 14.
_CEIL_EPS = 1e-9


def nodes_to_keep(num_nodes: Tensor, ratio: float) -> Tensor:
    """Per-graph ``k = min(n, max(1, ceil(ratio * n)))`` (0 for an empty graph), as a tensor."""
    k = torch.ceil(num_nodes.to(torch.float64) * ratio - _CEIL_EPS).to(torch.long)
    return torch.minimum(k.clamp(min=1), num_nodes)


def topk_per_graph(score: Tensor, batch: Tensor, num_graphs: int, ratio: float) -> Tensor:
    """Indices of the ``ceil(ratio * n_g)`` (at least one) highest-scoring nodes of every graph.

    Vectorised over the batch (``batch`` must be sorted, as collated batches are): nodes are
    ordered by (graph, score descending) with one stable sort, ranked within their graph by
    subtracting the graph's offset, and kept when the rank is below the graph's ``k``. The
    result is grouped by graph (graphs in order), highest score first within a graph; ties keep
    the lower node index first.
    """
    n = score.numel()
    counts = torch.zeros(num_graphs, dtype=torch.long, device=score.device).index_add_(
        0, batch, torch.ones_like(batch)
    )
    if n == 0:
        return batch.new_zeros(0)
    k = nodes_to_keep(counts, ratio)
    # One sort on the key (graph, -score): graph ids are spaced further apart than any two scores.
    s = score.detach().to(torch.float64)
    span = (s.max() - s.min()) + 1.0
    order = torch.argsort(batch.to(torch.float64) * span - s, stable=True)
    graph_of = batch.index_select(0, order)
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n, device=score.device) - start.index_select(0, graph_of)
    return order[rank < k.index_select(0, graph_of)]  # a boolean mask: the kept count is data


def filter_edges(edge_index: Tensor, edge_type: Tensor, perm: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Edges whose both ends are in ``perm``, re-indexed to positions in ``perm``, types kept."""
    mapping = torch.full((num_nodes,), -1, dtype=torch.long, device=perm.device)
    mapping.index_copy_(0, perm, torch.arange(perm.numel(), device=perm.device))
    src, dst = mapping.index_select(0, edge_index.reshape(-1)).view(2, -1)
    kept = torch.stack([src, dst, edge_type])[:, (src >= 0) & (dst >= 0)]  # one mask, one sync
    return kept[:2], kept[2]


class PoolOutput(NamedTuple):
    """A pooled (coarser) graph and what :class:`~nsm.model.unpool.WhatUnpool` needs to undo it.

    Attributes:
        x: ``[K, C]`` gated features of the kept nodes, ``x[perm] * tanh(score[perm])``.
        edge_index: ``[2, E']`` edges among kept nodes, indices into ``x``.
        edge_type: ``[E']`` their relation types (unchanged).
        batch: ``[K]`` graph of each kept node (sorted).
        perm: ``[K]`` index of each kept node in the finer graph.
        score: ``[K]`` raw score of each kept node.
        plan: the :class:`EdgePlan` of the pooled graph, for the next level's layers.
    """

    x: Tensor
    edge_index: Tensor
    edge_type: Tensor
    batch: Tensor
    perm: Tensor
    score: Tensor
    plan: EdgePlan


class WhyPool(nn.Module):
    r"""The WHY step: self-attention graph pooling (`"Self-Attention Graph Pooling"
    <https://arxiv.org/abs/1904.08082>`_) over a typed graph.

    A scalar score per node comes from a one-channel R-GCN over the node's typed neighbourhood;
    every graph keeps its :math:`k_g = \max(1, \lceil \rho \, n_g \rceil)` best nodes, and the
    kept nodes are gated by their score so that the scorer receives gradients:

    .. math::
        \mathbf{s} = \textrm{RGCN}(\mathbf{X}, \mathcal{E}), \qquad
        \mathbf{i} = \textrm{top}_{k_g}(\mathbf{s}) \text{ per graph}, \qquad
        \mathbf{X}^{\prime} = \mathbf{X}_{\mathbf{i}} \odot \tanh(\mathbf{s}_{\mathbf{i}}),

    and the edges among kept nodes survive, re-indexed, with their relation types.

    Args:
        in_channels (int): Size of each node feature.
        num_relations (int): Number of relations.
        ratio (float, optional): Fraction of each graph's nodes to keep, in :math:`(0, 1]`.
            (default: :obj:`0.5`)

    Shapes:
        - **input:** node features :math:`(N, C)`, edge indices :math:`(2, E)`, edge types
          :math:`(E)`, batch vector :math:`(N)` (sorted)
        - **output:** a :class:`PoolOutput` with :math:`K = \sum_g k_g` nodes
    """

    def __init__(self, in_channels: int, num_relations: int, ratio: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"WhyPool: ratio must be in (0, 1], got {ratio}")
        self.in_channels = in_channels
        self.num_relations = num_relations
        self.ratio = ratio
        self.score = RGCNLayer(in_channels, 1, num_relations)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.score.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_type: Tensor,
        batch: Tensor,
        num_graphs: int,
        plan: EdgePlan | None = None,
    ) -> PoolOutput:
        if batch.numel() != x.size(0):
            raise ValueError(f"WhyPool: batch has {batch.numel()} entries for {x.size(0)} nodes")
        score = self.score(x, edge_index, edge_type, plan=plan).view(-1)
        perm = topk_per_graph(score, batch, num_graphs, self.ratio)
        # index_select, not x[perm]: advanced indexing's backward takes the slow accumulate path.
        kept_score = score.index_select(0, perm)
        x_out = x.index_select(0, perm) * torch.tanh(kept_score).unsqueeze(1).to(x.dtype)
        ei, et = filter_edges(edge_index, edge_type, perm, x.size(0))
        return PoolOutput(
            x=x_out,
            edge_index=ei,
            edge_type=et,
            batch=batch.index_select(0, perm),
            perm=perm,
            score=kept_score,
            plan=build_edge_plan(ei, et, perm.numel(), self.num_relations),
        )

    def extra_repr(self) -> str:
        return f"{self.in_channels}, num_relations={self.num_relations}, ratio={self.ratio}"
