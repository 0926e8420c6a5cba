"""Relational graph convolution without per-edge weight matrices."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn


class EdgePlan(NamedTuple):
    """Index tensors that every R-GCN layer on the same typed graph shares.

    Built once per graph (per level of the hierarchy) by :func:`build_edge_plan` and reused by the
    encoder layers, the pooling score and the unpooling decoder of that level, so the
    per-(target, relation) in-degree normalisation and the grouping of edges by relation are paid
    for once per batch, not once per layer.

    Attributes:
        edge_index: ``[2, E]`` the graph's edges (source, target).
        edge_type: ``[E]`` relation ids.
        num_nodes: ``N``.
        num_relations: ``R``.
        gather_index: ``[E]`` ``src * R + type``: the edge's row in an ``[N * R, C]`` table.
        norm: ``[E, 1]`` ``1 / |N_r(i)|`` of the edge's (target, relation), float32 (a column,
            ready to scale message rows).
        chunk_size: ``C``, rows of each chunk of the padded layout.
        chunk_relation: ``[K]`` relation of each of the ``K`` chunks, or ``None`` when chunk ``r``
            is relation ``r`` (one chunk per relation, ``K = R``).
        slot_src / slot_dst: ``[K * C]`` source / target node of each slot of the chunked,
            relation-major padded layout; padding slots hold 0.
        slot_norm: ``[K * C, 1]`` the edge's normalisation, 0 in padding slots (so they add
            nothing).
    """

    edge_index: Tensor
    edge_type: Tensor
    num_nodes: int
    num_relations: int
    gather_index: Tensor
    norm: Tensor
    chunk_size: int
    chunk_relation: Tensor | None
    slot_src: Tensor
    slot_dst: Tensor
    slot_norm: Tensor

    @property
    def num_chunks(self) -> int:
        return self.slot_src.numel() // self.chunk_size if self.chunk_size else 0


# Padding rows one extra chunk is worth (its [C_in, C_out] weight copy and bmm slice).
_CHUNK_COST_ROWS = 16


def choose_chunk_size(counts: list[int]) -> int:
    """Chunk size ``C`` minimising padded rows ``C * sum(ceil(n_r / C))`` plus a per-chunk cost.

    With one chunk per relation (``C = max n_r``) a dominant relation pads every other one to its
    size (3x the edges in the causal domain); splitting relations into chunks of ``C`` rows bounds
    the padding by ``C`` per relation.
    """
    largest = max(counts, default=0)
    if largest == 0:
        return 0
    best_cost, best_size = None, largest
    for k in range(1, 17):
        size = -(-largest // k)
        chunks = sum(-(-n // size) for n in counts)
        cost = chunks * (size + _CHUNK_COST_ROWS)
        if best_cost is None or cost < best_cost:
            best_cost, best_size = cost, size
    return best_size


def build_edge_plan(edge_index: Tensor, edge_type: Tensor, num_nodes: int, num_relations: int) -> EdgePlan:
    """Precompute the normalisation and the relation-grouped layout of a typed graph.

    Costs one host synchronisation on accelerators (the largest per-relation edge count sizes the
    padded layout); everything else is tensor ops on the graph's device.
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"build_edge_plan: edge_index must be [2, E], got {tuple(edge_index.shape)}")
    if edge_type.numel() != edge_index.size(1):
        raise ValueError(
            f"build_edge_plan: {edge_index.size(1)} edges but {edge_type.numel()} edge types"
        )
    device = edge_index.device
    src, dst = edge_index.unbind(0)
    num_edges = edge_type.numel()
    r = num_relations
    ones = torch.ones(num_edges, dtype=torch.float32, device=device)
    # Mean aggregation per (target, relation), as in Schlichtkrull et al.
    key = dst * r + edge_type
    deg = torch.zeros(num_nodes * r, dtype=torch.float32, device=device).index_add_(0, key, ones)
    norm = deg.index_select(0, key).reciprocal_().unsqueeze(1)

    # Stable counting sort by relation, without a sort: an edge's position within its relation
    # is the running count of its relation's one-hot row ([R, E], cumsum along the fast axis).
    onehot = torch.arange(r, device=device).unsqueeze(1) == edge_type  # F.one_hot would sync on CUDA
    running = onehot.cumsum(1)
    counts = running[:, -1].tolist() if num_edges > 0 else [0] * r  # the one host sync
    pos = running.gather(0, edge_type.unsqueeze(0)).squeeze(0) - 1
    size = choose_chunk_size(counts)
    per_relation = [-(-n // size) if size else 0 for n in counts]
    if per_relation == [1] * r or size == 0:
        chunk_relation = None if size else edge_type.new_zeros(0)
        slot = edge_type * size + pos
    else:
        chunk_relation = torch.repeat_interleave(
            torch.arange(r), torch.tensor(per_relation)
        ).to(device, non_blocking=True)
        first_chunk = torch.tensor([0] + per_relation[:-1]).cumsum(0).to(device, non_blocking=True)
        slot = (first_chunk.index_select(0, edge_type) + pos // size) * size + pos % size
    num_slots = sum(per_relation) * size
    slot_src = torch.zeros(num_slots, dtype=torch.long, device=device).index_copy_(0, slot, src)
    slot_dst = torch.zeros(num_slots, dtype=torch.long, device=device).index_copy_(0, slot, dst)
    slot_norm = torch.zeros(num_slots, 1, dtype=torch.float32, device=device).index_copy_(0, slot, norm)
    return EdgePlan(
        edge_index=edge_index,
        edge_type=edge_type,
        num_nodes=num_nodes,
        num_relations=r,
        gather_index=src * r + edge_type,
        norm=norm,
        chunk_size=size,
        chunk_relation=chunk_relation,
        slot_src=slot_src,
        slot_dst=slot_dst,
        slot_norm=slot_norm,
    )


def _glorot(t: Tensor) -> None:
    bound = math.sqrt(6.0 / (t.size(-2) + t.size(-1)))
    nn.init.uniform_(t, -bound, bound)


class RGCNLayer(nn.Module):
    r"""The relational graph convolution of `"Modeling Relational Data with Graph Convolutional
    Networks" <https://arxiv.org/abs/1703.06103>`_, computed without per-edge weight matrices.

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{\Theta}_{\textrm{root}}^{\top} \mathbf{x}_i
        + \sum_{r \in \mathcal{R}} \sum_{j \in \mathcal{N}_r(i)}
        \frac{1}{|\mathcal{N}_r(i)|} \mathbf{\Theta}_r^{\top} \mathbf{x}_j + \mathbf{b},
        \qquad
        \mathbf{\Theta}_r = \sum_{b=1}^{B} a_{rb} \mathbf{V}_b \ \text{(basis decomposition)}.

    The ``[R, C_in, C_out]`` relation weights are formed once per call (tiny). Messages are then
    computed one of two ways, both exact:

    * *grouped* (``C_out`` wide): edges are laid out relation-major in ``[K, C, C_in]`` (each
      relation split into chunks of ``C`` rows, padded; see :func:`choose_chunk_size`),
      pre-scaled by their normalisation, and transformed with one ``bmm`` against the chunks'
      relation weights ``[K, C_in, C_out]``: ``≈ E · C_in · C_out`` multiply-adds, the minimum
      for distinct relation weights, instead of materialising ``[E, C_in, C_out]`` (as
      :class:`torch_geometric.nn.FastRGCNConv` does) or looping over relations (as
      :class:`torch_geometric.nn.RGCNConv` does without ``pyg-lib``);
    * *dense* (``R · C_out ≤ C_in``, e.g. a scalar pooling score): every node is transformed for
      every relation (``x @ [C_in, R · C_out]``) and the edge's row is gathered.

    Parameters use :class:`torch_geometric.nn.RGCNConv`'s names and layouts (``weight``,
    ``comp``, ``root``, ``bias``), so its ``state_dict`` loads into this layer unchanged.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        num_relations (int): Number of relations :math:`R`.
        num_bases (int, optional): If set, use the basis decomposition with this many bases
            :math:`B`; otherwise one full weight per relation. (default: :obj:`None`)
        root_weight (bool, optional): Add the transformed root node features.
            (default: :obj:`True`)
        bias (bool, optional): Learn an additive bias. (default: :obj:`True`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`, edge indices
          :math:`(2, |\mathcal{E}|)`, edge types :math:`(|\mathcal{E}|)`, or an
          :class:`EdgePlan` of them
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_relations: int,
        num_bases: int | None = None,
        root_weight: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(f"RGCNLayer: channels must be positive, got {in_channels} -> {out_channels}")
        if num_relations <= 0:
            raise ValueError(f"RGCNLayer: num_relations must be positive, got {num_relations}")
        if num_bases is not None and num_bases <= 0:
            raise ValueError(f"RGCNLayer: num_bases must be positive or None, got {num_bases}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_relations = num_relations
        self.num_bases = num_bases
        if num_bases is not None:
            self.weight = nn.Parameter(torch.empty(num_bases, in_channels, out_channels))
            self.comp = nn.Parameter(torch.empty(num_relations, num_bases))
        else:
            self.weight = nn.Parameter(torch.empty(num_relations, in_channels, out_channels))
            self.register_parameter("comp", None)
        self.root = nn.Parameter(torch.empty(in_channels, out_channels)) if root_weight else None
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        # A transform per relation no wider than the input: transforming every node is cheaper.
        self.dense = num_relations * out_channels <= in_channels
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights (as PyG), zero bias."""
        _glorot(self.weight)
        if self.comp is not None:
            _glorot(self.comp)
        if self.root is not None:
            _glorot(self.root)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def relation_weight(self) -> Tensor:
        """The ``[R, C_in, C_out]`` relation weights (combined from the bases if any)."""
        if self.comp is None:
            return self.weight
        return (self.comp @ self.weight.flatten(1)).view(self.num_relations, self.in_channels, self.out_channels)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | None = None,
        edge_type: Tensor | None = None,
        plan: EdgePlan | None = None,
        weight: Tensor | None = None,
    ) -> Tensor:
        """Apply the layer; pass ``plan`` to reuse a precomputed :class:`EdgePlan`, and ``weight``
        to reuse this layer's :meth:`relation_weight` computed by :func:`relation_weights`."""
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(
                f"RGCNLayer: expected x of shape [N, {self.in_channels}], got {tuple(x.shape)}"
            )
        if plan is None:
            if edge_index is None or edge_type is None:
                raise ValueError("RGCNLayer: pass edge_index and edge_type, or a plan")
            plan = build_edge_plan(edge_index, edge_type, x.size(0), self.num_relations)
        elif plan.num_relations != self.num_relations or plan.num_nodes != x.size(0):
            raise ValueError(
                f"RGCNLayer: plan is for {plan.num_nodes} nodes / {plan.num_relations} relations, "
                f"layer got {x.size(0)} nodes / {self.num_relations} relations"
            )
        w = self.relation_weight() if weight is None else weight
        n, c_out = x.size(0), self.out_channels
        # ``out`` is a fresh tensor (not needed by its own backward): the messages go in in place.
        if self.root is not None:
            out = x @ self.root if self.bias is None else torch.addmm(self.bias, x, self.root)
        else:
            out = x.new_zeros(n, c_out) if self.bias is None else x.new_zeros(n, c_out) + self.bias
        if self.dense:
            table = (x @ w.permute(1, 0, 2).reshape(self.in_channels, -1)).view(-1, c_out)
            msg = table.index_select(0, plan.gather_index) * plan.norm.to(table.dtype)
            return out.index_add_(0, plan.edge_index[1], msg.to(out.dtype))
        if plan.chunk_relation is not None:
            w = w.index_select(0, plan.chunk_relation)
        xs = x.index_select(0, plan.slot_src) * plan.slot_norm.to(x.dtype)
        msg = torch.bmm(xs.view(plan.num_chunks, plan.chunk_size, self.in_channels), w)
        return out.index_add_(0, plan.slot_dst, msg.view(-1, c_out).to(out.dtype))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, num_relations={self.num_relations}, "
            f"num_bases={self.num_bases}"
        )


def relation_weights(layers: list[RGCNLayer]) -> list[Tensor]:
    """Every layer's :meth:`RGCNLayer.relation_weight`, combined from the bases in one ``bmm``.

    Layers of the same shape with a basis decomposition (all of :class:`~nsm.model.NSMModel`'s
    hidden-to-hidden layers) are stacked, so a training step pays one small batched matmul and
    its backward instead of a matmul, two views and their backward per layer; any other layer
    computes its own. Same values as calling each layer's :meth:`~RGCNLayer.relation_weight`.
    """
    based = [layer for layer in layers if layer.comp is not None]
    shapes = {(layer.num_relations, layer.num_bases, layer.in_channels, layer.out_channels) for layer in based}
    if len(based) < 2 or len(shapes) != 1:
        return [layer.relation_weight() for layer in layers]
    r, _, c_in, c_out = shapes.pop()
    comp = torch.stack([layer.comp for layer in based])
    basis = torch.stack([layer.weight for layer in based]).flatten(2)
    combined = iter(torch.bmm(comp, basis).view(len(based), r, c_in, c_out).unbind(0))
    return [next(combined) if layer.comp is not None else layer.relation_weight() for layer in layers]
