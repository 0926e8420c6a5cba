"""What every generator returns, and the helpers they share.

Each domain builds *matched pairs*: a positive graph and a negative made from it by a minimal
structural edit (re-targeting edges, or moving a role marker). Both members have the same node
count, edge count, multiset of relation types and histogram of node features, so none of those
can predict the label; only how the graph is wired does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from nsm.data.graph import GraphStore

# (x [n, F], edge_index [2, e], edge_type [e]) of one graph, as GraphStore.from_graphs takes it.
Graph = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

# Bump whenever any generator's output changes for the same parameters: it is part of the cache key.
GENERATOR_VERSION = 1


@dataclass
class GeneratedDataset:
    """A generator's output: the packed graphs plus the vocabularies a model needs.

    Attributes:
        store: all graphs and labels.
        feature_vocab: vocabulary size of each categorical column of ``store.x``.
        relation_names: the domain's fixed relation vocabulary (``edge_type`` indexes it).
        params: every generation parameter (domain sizes, ``seed``, ``generator_version``).
    """

    store: GraphStore
    feature_vocab: list[int]
    relation_names: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def num_relations(self) -> int:
        return len(self.relation_names)


def make_rng(seed: int) -> np.random.Generator:
    """The only randomness source of the generators (independent of PYTHONHASHSEED)."""
    return np.random.Generator(np.random.PCG64(int(seed)))


def graph_tensors(
    x: np.ndarray,
    src: Sequence[int] | np.ndarray,
    dst: Sequence[int] | np.ndarray,
    rel: Sequence[int] | np.ndarray,
) -> Graph:
    """``(x [n, F], edge_index [2, e], edge_type [e])`` long tensors from numpy/lists."""
    ei = np.stack([np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)])
    return (
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)),
        torch.from_numpy(ei),
        torch.from_numpy(np.asarray(rel, dtype=np.int64)),
    )


def collect_pairs(
    name: str, count: int, make_pair: Callable[[], tuple[Any, Any] | None]
) -> list[tuple[Any, Any]]:
    """Call ``make_pair()`` until ``ceil(count / 2)`` matched (positive, negative) pairs exist.

    ``make_pair`` returns ``None`` for a draw that cannot be made into a pair. The attempt budget
    (``50 * count + 1000``) turns a size/seed that cannot produce pairs into an error naming the
    generator instead of a hang.
    """
    pairs: list[tuple[Any, Any]] = []
    attempts = 0
    while 2 * len(pairs) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise RuntimeError(f"{name}: gave up after {attempts} attempts at {len(pairs)} pairs")
        pair = make_pair()
        if pair is not None:
            pairs.append(pair)
    return pairs


def pack_pairs(
    pairs: list[tuple[Graph, Graph]],
    rng: np.random.Generator,
    num_samples: int,
) -> GraphStore:
    """Flatten ``(positive, negative)`` pairs, keep ``num_samples`` graphs, shuffle, and pack.

    When ``num_samples`` is odd the last pair contributes only its positive graph.
    """
    graphs: list[Graph] = []
    labels: list[int] = []
    for pos, neg in pairs:
        graphs += [pos, neg]
        labels += [1, 0]
    graphs, labels = graphs[:num_samples], labels[:num_samples]
    order = rng.permutation(len(graphs))
    return GraphStore.from_graphs([graphs[i] for i in order], [labels[i] for i in order])


def permuted_graph(
    rng: np.random.Generator, x: np.ndarray, src: np.ndarray, dst: np.ndarray, rel: np.ndarray
) -> Graph:
    """Relabel nodes and reorder edges at random, then convert with :func:`graph_tensors`.

    Generators build special nodes at fixed positions; shuffling keeps node and edge order from
    carrying any information (a pooling layer that breaks ties by index would otherwise see it).
    """
    n = x.shape[0]
    new_of_old = rng.permutation(n)
    x_new = np.empty_like(x)
    x_new[new_of_old] = x
    e = rng.permutation(src.size)
    return graph_tensors(x_new, new_of_old[src[e]], new_of_old[dst[e]], rel[e])
