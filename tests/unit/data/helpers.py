"""Checks shared by the per-domain dataset tests."""

from __future__ import annotations

import hashlib
from collections import Counter

import torch

from nsm.data.base import GeneratedDataset
from nsm.data.baselines import bag_features, run_baselines
from nsm.data.dataset import NSMDataset, split_indices
from nsm.data.graph import GraphStore


def store_digest(store: GraphStore) -> str:
    h = hashlib.sha256()
    for name, t in sorted(store.state_dict().items()):
        h.update(name.encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def assert_same_store(a: GraphStore, b: GraphStore) -> None:
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name]), name


def as_nsm(domain: str, gen: GeneratedDataset) -> NSMDataset:
    return NSMDataset(
        domain=domain,
        store=gen.store,
        feature_vocab=gen.feature_vocab,
        num_relations=gen.num_relations,
        relation_names=gen.relation_names,
        params=gen.params,
    )


def check_well_formed(gen: GeneratedDataset, min_nodes: int = 10, mean_nodes: tuple[int, int] = (15, 60)) -> None:
    s = gen.store
    g = len(s)
    assert s.x.dtype == s.edge_index.dtype == s.edge_type.dtype == s.y.dtype == torch.long
    assert s.x.shape == (int(s.node_ptr[-1]), len(gen.feature_vocab))
    assert s.edge_index.shape == (2, int(s.edge_ptr[-1])) and s.edge_type.numel() == s.edge_index.size(1)
    # Features inside their vocabularies, relations inside the relation vocabulary.
    assert (s.x >= 0).all() and (s.x < torch.tensor(gen.feature_vocab)).all()
    assert (s.edge_type >= 0).all() and (s.edge_type < gen.num_relations).all()
    assert len(gen.relation_names) == len(set(gen.relation_names)) <= 16
    # Edge endpoints are local indices inside their own graph.
    n_of_edge = torch.repeat_interleave(s.num_nodes(), s.num_edges())
    assert (s.edge_index >= 0).all() and (s.edge_index < n_of_edge).all()
    # Real multi-node graphs.
    assert int(s.num_nodes().min()) >= min_nodes
    assert mean_nodes[0] <= float(s.num_nodes().float().mean()) <= mean_nodes[1]
    assert int(s.num_edges().min()) >= min_nodes
    # Balanced binary labels.
    assert set(s.y.tolist()) == {0, 1}
    assert 0.45 <= float(s.y.float().mean()) <= 0.55
    assert g == len(s.y)


def check_matched_statistics(gen: GeneratedDataset) -> None:
    """Positives and negatives have the same multiset of (size, relation bag, feature histogram)."""
    s = gen.store
    feats = torch.cat(
        [s.num_nodes()[:, None].double(), s.num_edges()[:, None].double(), bag_features(s, gen.num_relations, gen.feature_vocab)],
        dim=1,
    ).long()
    pos = Counter(tuple(r) for r in feats[s.y == 1].tolist())
    neg = Counter(tuple(r) for r in feats[s.y == 0].tolist())
    assert pos == neg


def check_no_shortcut(domain: str, gen: GeneratedDataset, limit: float = 0.6) -> dict[str, float]:
    ds = as_nsm(domain, gen)
    train, val, test = split_indices(ds.store.y, 0.15, 0.3, seed=0)
    res = run_baselines(ds, train, test)
    assert res["size_only"] <= limit, res
    assert res["bag_of_relations"] <= limit, res
    assert res["majority"] <= limit, res
    assert res["marked_degree"] <= limit, res
    return res


def graph_of(store: GraphStore, g: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n0, n1 = int(store.node_ptr[g]), int(store.node_ptr[g + 1])
    e0, e1 = int(store.edge_ptr[g]), int(store.edge_ptr[g + 1])
    return store.x[n0:n1], store.edge_index[:, e0:e1], store.edge_type[e0:e1]


def hops(num_nodes: int, edge_index: torch.Tensor, edge_type: torch.Tensor, allowed: set[int], start: list[int]) -> list[int]:
    """BFS hop distance from ``start`` along edges whose type is in ``allowed``; -1 unreachable."""
    adj: list[list[int]] = [[] for _ in range(num_nodes)]
    for (a, b), r in zip(edge_index.t().tolist(), edge_type.tolist()):
        if r in allowed:
            adj[a].append(b)
    dist = [-1] * num_nodes
    frontier = list(start)
    for v in frontier:
        dist[v] = 0
    while frontier:
        nxt = []
        for u in frontier:
            for v in adj[u]:
                if dist[v] < 0:
                    dist[v] = dist[u] + 1
                    nxt.append(v)
        frontier = nxt
    return dist
