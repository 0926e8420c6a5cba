"""Causal: does intervening on the treatment change the outcome, or are they only confounded?

A sample is a whole causal scenario: a DAG of observed variables (``causes`` edges), latent
confounders (``latent_cause`` edges; the first always drives both treatment and outcome), an
intervention node ``do(T)`` (``intervenes`` -> treatment) and, for some observed variables, a
measurement node (``measured_by``). Node roles mark the treatment and the outcome.

Label 1: a directed ``causes`` path treatment -> ... -> outcome of at most :data:`MAX_PATH`
edges exists (the effect is causal, possibly through mediators). Label 0: no directed path of
any length; treatment and outcome are associated only through confounders.

Pairs are built from a negative scenario by swapping the targets of two ``causes`` edges
(``a -> b, c -> d`` becomes ``a -> d, c -> b``, keeping the graph acyclic) so that a short
treatment -> outcome path appears. Node count, edge count, relation counts, node features and
every node's in/out degree per relation are identical within a pair.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from nsm.data.base import (
    GENERATOR_VERSION,
    GeneratedDataset,
    check_tier,
    collect_pairs,
    deep_test_pairs,
    make_rng,
    pack_pairs,
    permuted_graph,
)

RELATION_NAMES: tuple[str, ...] = ("causes", "latent_cause", "intervenes", "measured_by")
CAUSES, LATENT_CAUSE, INTERVENES, MEASURED_BY = range(4)

NODE_KINDS: tuple[str, ...] = ("observed", "latent", "intervention", "measurement")
ROLES: tuple[str, ...] = ("none", "treatment", "outcome")
FEATURE_VOCAB: list[int] = [len(NODE_KINDS), len(ROLES)]
OBSERVED, LATENT, INTERVENTION, MEASUREMENT = range(4)

MAX_PATH = 3

# The standard tier: 12-20 observed variables, a causal path of 1..MAX_PATH edges.
STANDARD = {"observed": (12, 20), "path": (1, MAX_PATH)}
# Deep tier: label = any directed path. Training scenarios have 12-20 observed variables and
# paths of 2-4 edges; the test scenarios have 30-40 variables and paths of 6-9 edges.
DEEP_TRAIN = {"observed": (12, 20), "path": (2, 4)}
DEEP_TEST = {"observed": (30, 40), "path": (6, 9)}


def _bfs(n: int, src: np.ndarray, dst: np.ndarray, start: int) -> np.ndarray:
    """Shortest directed distances from ``start``; -1 = unreachable."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(src.tolist(), dst.tolist()):
        adj[a].append(b)
    dist = np.full(n, -1, dtype=np.int64)
    dist[start] = 0
    queue = deque([start])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if dist[v] < 0:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def _is_acyclic(n: int, src: np.ndarray, dst: np.ndarray) -> bool:
    indeg = np.bincount(dst, minlength=n)
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(src.tolist(), dst.tolist()):
        adj[a].append(b)
    queue = deque(np.flatnonzero(indeg == 0).tolist())
    seen = 0
    while queue:
        u = queue.popleft()
        seen += 1
        for v in adj[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                queue.append(v)
    return seen == n


def _sample_dag(rng: np.random.Generator, n: int, num_edges: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct edges ``i -> j`` (i < j in a hidden order), biased towards nearby pairs."""
    i, j = np.triu_indices(n, k=1)
    w = 1.0 / (j - i).astype(np.float64)
    pick = rng.choice(i.size, size=min(num_edges, i.size), replace=False, p=w / w.sum())
    return i[pick].astype(np.int64), j[pick].astype(np.int64)


def _making_swap(
    rng: np.random.Generator, n: int, src: np.ndarray, dst: np.ndarray, t: int, o: int,
    path: tuple[int, int] = (1, MAX_PATH),
) -> tuple[int, int] | None:
    """A pair of edge positions whose target swap makes the shortest T -> O path ``path[0]..path[1]`` edges."""
    lo, hi = path
    d_t = _bfs(n, src, dst, t)
    d_o = _bfs(n, dst, src, o)  # distances *to* o
    existing = set(zip(src.tolist(), dst.tolist()))
    first = np.flatnonzero((d_t[src] >= 0) & (d_t[src] <= hi - 1))
    second = np.flatnonzero((d_o[dst] >= 0) & (d_o[dst] <= hi - 1))
    candidates: list[tuple[int, int]] = []
    weights: list[float] = []
    for e1 in first.tolist():
        a, b = int(src[e1]), int(dst[e1])
        for e2 in second.tolist():
            c, d = int(src[e2]), int(dst[e2])
            length = d_t[a] + 1 + d_o[d]
            if e1 == e2 or not lo <= length <= hi or a == d or c == b or b == d:
                continue
            if (a, d) in existing or (c, b) in existing:
                continue
            s2 = dst.copy()
            s2[e1], s2[e2] = d, b
            if not _is_acyclic(n, src, s2):
                continue
            if lo > 1 and _bfs(n, src, s2, t)[o] < lo:  # the other new edge made a shortcut
                continue
            candidates.append((e1, e2))
            weights.append(float(length))  # favour mediated effects over direct edges
    if not candidates:
        return None
    w = np.asarray(weights)
    return candidates[int(rng.choice(len(candidates), p=w / w.sum()))]


def _scenario(rng: np.random.Generator, regime: dict = STANDARD) -> tuple[tuple, tuple] | None:
    """One (positive, negative) pair of ``(x, src, dst, rel)`` arrays, or None to resample."""
    n_obs = int(rng.integers(regime["observed"][0], regime["observed"][1] + 1))
    n_lat = int(rng.integers(1, 4))
    n_meas = int(rng.integers(2, 6))
    num_causes = int(round(n_obs * rng.uniform(1.2, 1.6)))
    c_src, c_dst = _sample_dag(rng, n_obs, num_causes)
    t = int(rng.integers(1, n_obs // 2))
    d_t = _bfs(n_obs, c_src, c_dst, t)
    outcomes = np.flatnonzero((d_t < 0) & (np.arange(n_obs) > t))
    if outcomes.size == 0:
        return None
    o = int(outcomes[int(rng.integers(outcomes.size))])
    swap = _making_swap(rng, n_obs, c_src, c_dst, t, o, regime["path"])
    if swap is None:
        return None
    e1, e2 = swap
    pos_dst = c_dst.copy()
    pos_dst[e1], pos_dst[e2] = c_dst[e2], c_dst[e1]

    lat0 = n_obs
    intervention = n_obs + n_lat
    meas0 = intervention + 1
    n = meas0 + n_meas
    x = np.zeros((n, 2), dtype=np.int64)
    x[lat0:intervention, 0] = LATENT
    x[intervention, 0] = INTERVENTION
    x[meas0:, 0] = MEASUREMENT
    x[t, 1], x[o, 1] = 1, 2

    # Latent 0 confounds treatment and outcome; the others confound random observed pairs.
    l_src, l_dst = [lat0, lat0], [t, o]
    for k in range(1, n_lat):
        a, b = rng.choice(n_obs, size=2, replace=False)
        l_src += [lat0 + k, lat0 + k]
        l_dst += [int(a), int(b)]
    measured = rng.choice(n_obs, size=n_meas, replace=False)
    extra_src = np.r_[np.array(l_src), intervention, measured]
    extra_dst = np.r_[np.array(l_dst), t, meas0 + np.arange(n_meas)]
    extra_rel = np.r_[np.full(len(l_src), LATENT_CAUSE), INTERVENES, np.full(n_meas, MEASURED_BY)]

    def build(dst: np.ndarray) -> tuple:
        return (
            x,
            np.r_[c_src, extra_src],
            np.r_[dst, extra_dst],
            np.r_[np.full(c_src.size, CAUSES), extra_rel],
        )

    return build(pos_dst), build(c_dst)


def generate_causal(num_scenarios: int, seed: int, tier: str = "standard") -> GeneratedDataset:
    """``num_scenarios`` causal scenario graphs, half with a causal treatment -> outcome effect.

    Args:
        num_scenarios: number of graphs (matched positive/negative pairs, shuffled).
        seed: seed of the numpy ``PCG64`` generator; the output depends on nothing else.
        tier: ``standard`` (paths of at most :data:`MAX_PATH` edges) or ``deep`` (any length;
            test scenarios larger and paths longer than in training, see :data:`DEEP_TEST`).
    """
    if num_scenarios < 2:
        raise ValueError(f"generate_causal: num_scenarios must be >= 2, got {num_scenarios}")
    check_tier("generate_causal", tier)
    rng = make_rng(seed)

    def make_pair(regime: dict):
        pair = _scenario(rng, regime)
        if pair is None:
            return None
        return permuted_graph(rng, *pair[0]), permuted_graph(rng, *pair[1])

    params = {"num_scenarios": num_scenarios, "seed": seed, "generator_version": GENERATOR_VERSION}
    if tier == "standard":
        pairs = collect_pairs("generate_causal", num_scenarios, lambda: make_pair(STANDARD))
        return GeneratedDataset.from_packed(pack_pairs(pairs, rng, num_scenarios), FEATURE_VOCAB, RELATION_NAMES, params)
    n_test = deep_test_pairs(num_scenarios)
    pairs = collect_pairs("generate_causal", num_scenarios - 2 * n_test, lambda: make_pair(DEEP_TRAIN))
    test = collect_pairs("generate_causal", 2 * n_test, lambda: make_pair(DEEP_TEST))
    packed = pack_pairs(pairs + test, rng, num_scenarios,
                                          test_only=[False] * len(pairs) + [True] * len(test))
    return GeneratedDataset.from_packed(packed, FEATURE_VOCAB, RELATION_NAMES, {**params, "tier": tier})
