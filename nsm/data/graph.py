"""Graph storage and vectorised batching.

A dataset of many small typed graphs is kept as a handful of flat tensors (a CSR-like layout)
instead of a list of per-graph objects, so that building a mini-batch is a few gathers and one
``repeat_interleave``: no Python loop over graphs in the hot path, and the whole dataset
serialises with ``torch.save`` and loads back with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch
from torch import Tensor


@dataclass
class GraphBatch:
    """A mini-batch of graphs, disjoint-union style (as PyG's ``Batch``).

    Attributes:
        x: categorical node features, ``[N, F]`` long; column ``f`` indexes a vocabulary of
            ``feature_vocab[f]`` entries (the model embeds and sums the columns).
        edge_index: ``[2, E]`` long, global node indices within the batch (source, target).
        edge_type: ``[E]`` long, relation ids in ``[0, num_relations)``.
        batch: ``[N]`` long, the graph each node belongs to.
        y: ``[B]`` long graph labels.
        num_graphs: ``B``.
    """

    x: Tensor
    edge_index: Tensor
    edge_type: Tensor
    batch: Tensor
    y: Tensor
    num_graphs: int

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "GraphBatch":
        return GraphBatch(
            **{
                f.name: (v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v)
                for f in fields(self)
                for v in [getattr(self, f.name)]
            }
        )

    def pin_memory(self) -> "GraphBatch":
        # Called by DataLoader(pin_memory=True) on custom batch types.
        return GraphBatch(
            **{
                f.name: (v.pin_memory() if isinstance(v, Tensor) else v)
                for f in fields(self)
                for v in [getattr(self, f.name)]
            }
        )

    @property
    def num_nodes(self) -> int:
        return int(self.x.size(0))


@dataclass
class GraphStore:
    """Many graphs in flat tensors.

    Attributes:
        x: ``[N_total, F]`` long node features of all graphs, concatenated.
        edge_index: ``[2, E_total]`` long, node indices *local* to each graph.
        edge_type: ``[E_total]`` long.
        node_ptr: ``[G + 1]`` long offsets into ``x`` (graph ``g`` owns ``node_ptr[g]:node_ptr[g+1]``).
        edge_ptr: ``[G + 1]`` long offsets into ``edge_index`` / ``edge_type``.
        y: ``[G]`` long labels.
    """

    x: Tensor
    edge_index: Tensor
    edge_type: Tensor
    node_ptr: Tensor
    edge_ptr: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.numel())

    @classmethod
    def from_graphs(
        cls,
        graphs: Sequence[tuple[Tensor, Tensor, Tensor]],
        labels: Sequence[int] | Tensor,
    ) -> "GraphStore":
        """Pack ``(x [n, F], edge_index [2, e] local, edge_type [e])`` triples (generation time only)."""
        if len(graphs) != len(labels):
            raise ValueError(f"GraphStore: {len(graphs)} graphs but {len(labels)} labels")
        xs, eis, ets = zip(*graphs) if graphs else ((), (), ())
        n = torch.tensor([g.size(0) for g in xs], dtype=torch.long)
        e = torch.tensor([t.numel() for t in ets], dtype=torch.long)
        zero = torch.zeros(1, dtype=torch.long)
        return cls(
            x=torch.cat(xs).long(),
            edge_index=torch.cat(eis, dim=1).long(),
            edge_type=torch.cat(ets).long(),
            node_ptr=torch.cat([zero, n.cumsum(0)]),
            edge_ptr=torch.cat([zero, e.cumsum(0)]),
            y=torch.as_tensor(labels, dtype=torch.long),
        )

    def state_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> "GraphStore":
        return cls(**{f.name: state[f.name] for f in fields(cls)})

    def num_nodes(self) -> Tensor:
        return self.node_ptr[1:] - self.node_ptr[:-1]

    def num_edges(self) -> Tensor:
        return self.edge_ptr[1:] - self.edge_ptr[:-1]

    def collate(self, index: Tensor | Sequence[int]) -> GraphBatch:
        """Gather graphs ``index`` into one :class:`GraphBatch` with vectorised tensor ops."""
        idx = torch.as_tensor(index, dtype=torch.long)
        b = idx.numel()
        n_counts = self.num_nodes()[idx]
        e_counts = self.num_edges()[idx]
        node_src = _ranges(self.node_ptr[idx], n_counts)
        edge_src = _ranges(self.edge_ptr[idx], e_counts)
        # New offset of each selected graph's first node inside the batch.
        new_node_start = torch.cumsum(n_counts, 0) - n_counts
        shift = torch.repeat_interleave(new_node_start, e_counts)
        return GraphBatch(
            x=self.x[node_src],
            edge_index=self.edge_index[:, edge_src] + shift,
            edge_type=self.edge_type[edge_src],
            batch=torch.repeat_interleave(torch.arange(b), n_counts),
            y=self.y[idx],
            num_graphs=b,
        )


def _ranges(starts: Tensor, counts: Tensor) -> Tensor:
    """Concatenate ``arange(s, s + c)`` for every (s, c) pair without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return torch.empty(0, dtype=torch.long)
    offsets = torch.cumsum(counts, 0) - counts
    return torch.arange(total) - torch.repeat_interleave(offsets - starts, counts)
