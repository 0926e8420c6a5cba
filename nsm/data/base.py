"""What every generator returns, and the helpers they share.

Each domain builds *matched pairs*: a positive graph and a negative made from it by a minimal
structural edit (re-targeting edges, or moving a role marker). Both members have the same node
count, edge count, multiset of relation types and histogram of node features, so none of those
can predict the label; only how the graph is wired does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import torch

from nsm.data.graph import GraphStore

# (x [n, F], edge_index [2, e], edge_type [e]) of one graph, as GraphStore.from_graphs takes it.
Graph = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

# Bump whenever any generator's output changes for the same parameters: it is part of the cache key.
GENERATOR_VERSION = 2

TIERS: tuple[str, ...] = ("standard", "deep")


@dataclass
class GeneratedDataset:
    """A generator's output: the packed graphs plus the vocabularies a model needs.

    Attributes:
        store: all graphs and labels.
        feature_vocab: vocabulary size of each categorical column of ``store.x``.
        relation_names: the domain's fixed relation vocabulary (``edge_type`` indexes it).
        params: every generation parameter (domain sizes, ``seed``, ``generator_version``).
        groups: ``[G]`` long; graphs that share a group must fall on the same side of every
            split (a matched pair; in kg every pair about the same (rule, head)).
        test_only: ``[G]`` bool or None; graphs reserved for the test split (the deep tier's
            larger graphs with longer paths, which training never sees).
        info: ``[G, k]`` long per-graph metadata or None (kg: the candidate triple's
            ``(rule, head, tail)`` world ids, for leakage audits).
    """

    store: GraphStore
    feature_vocab: list[int]
    relation_names: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    groups: torch.Tensor | None = None
    test_only: torch.Tensor | None = None
    info: torch.Tensor | None = None

    @classmethod
    def from_packed(cls, packed: "Packed", feature_vocab: list[int], relation_names: tuple[str, ...],
                    params: dict[str, Any]) -> "GeneratedDataset":
        return cls(packed.store, list(feature_vocab), relation_names, params, packed.groups,
                   packed.test_only, packed.info)

    @property
    def num_relations(self) -> int:
        return len(self.relation_names)


# Share of the deep tier's pairs drawn from the larger test regime (the whole test split).
DEEP_TEST_FRACTION = 0.15


def check_tier(name: str, tier: str) -> None:
    if tier not in TIERS:
        raise ValueError(f"{name}: tier must be one of {TIERS}, got {tier!r}")


def deep_test_pairs(num_samples: int) -> int:
    """Pairs of the deep tier's test regime: :data:`DEEP_TEST_FRACTION` of the samples, >= 1."""
    return max(1, int(round(DEEP_TEST_FRACTION * num_samples / 2)))


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


@dataclass
class Packed:
    """:func:`pack_pairs`' output; ``info`` is ``[G, k]`` long per-graph metadata, or None."""

    store: GraphStore
    groups: torch.Tensor
    test_only: torch.Tensor | None = None
    info: torch.Tensor | None = None


def pack_pairs(
    pairs: list[tuple[Graph, Graph]],
    rng: np.random.Generator,
    num_samples: int,
    keys: Sequence[Hashable] | None = None,
    test_only: Sequence[bool] | None = None,
    info: Sequence[tuple[Sequence[int], Sequence[int]]] | None = None,
) -> Packed:
    """Flatten ``(positive, negative)`` pairs, keep ``num_samples`` graphs, shuffle, and pack.

    Both graphs of a pair get the same group id; pairs with equal ``keys[i]`` share one too (kg
    keys pairs by (rule, head), so no candidate triple of the test split is ever seen in
    training). ``test_only[i]`` marks pairs reserved for the test split; ``info[i]`` holds the
    (positive, negative) metadata rows of pair ``i``. When ``num_samples`` is odd the last pair
    contributes only its positive graph.
    """
    ids: dict[Hashable, int] = {}
    pair_group = [ids.setdefault(keys[i] if keys is not None else ("pair", i), len(ids)) for i in range(len(pairs))]
    graphs: list[Graph] = []
    labels: list[int] = []
    groups: list[int] = []
    reserved: list[bool] = []
    rows: list[Sequence[int]] = []
    for i, (pos, neg) in enumerate(pairs):
        graphs += [pos, neg]
        labels += [1, 0]
        groups += [pair_group[i]] * 2
        reserved += [bool(test_only[i]) if test_only is not None else False] * 2
        rows += list(info[i]) if info is not None else []
    order = rng.permutation(min(len(graphs), num_samples)).tolist()
    return Packed(
        store=GraphStore.from_graphs([graphs[i] for i in order], [labels[i] for i in order]),
        groups=torch.tensor([groups[i] for i in order], dtype=torch.long),
        test_only=torch.tensor([reserved[i] for i in order], dtype=torch.bool) if test_only is not None else None,
        info=torch.tensor([list(rows[i]) for i in order], dtype=torch.long) if info is not None else None,
    )


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
