"""Planning: is the goal achievable within a two-action plan?

A sample is a STRIPS-style logistics problem encoded as a typed graph. ``K`` objects move on
``L`` locations; each object has its own set of ``move`` actions (the roads it may use):

* location and object nodes;
* fact nodes ``at(o, l)`` for every object/location pair (edges ``arg_object`` fact -> o,
  ``arg_location`` fact -> l);
* action nodes ``move(o, l1, l2)`` with ``precondition`` at(o, l1) -> action, ``add_effect``
  action -> at(o, l2), ``delete_effect`` action -> at(o, l1) and ``actor`` action -> o.

Each object has one initial fact (role ``init``) and one fact carries the role ``goal``. The label
is 1 when the goal fact can be made true by a plan of at most :data:`HORIZON` actions (at most
``2 * HORIZON`` hops along precondition/add_effect edges from an init fact), else 0.

Negatives are made from positives by swapping the ``add_effect`` targets of two of the goal
object's actions (a degree-preserving double edge swap): node count, edge count, relation
counts, node-feature histogram and every node's in/out degree per relation are unchanged, only
reachability of the goal is broken.
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

RELATION_NAMES: tuple[str, ...] = (
    "precondition",
    "add_effect",
    "delete_effect",
    "actor",
    "arg_object",
    "arg_location",
)
PRECONDITION, ADD_EFFECT, DELETE_EFFECT, ACTOR, ARG_OBJECT, ARG_LOCATION = range(6)

# Column 0: node kind; column 1: role.
NODE_KINDS: tuple[str, ...] = ("location", "object", "fact", "action")
ROLES: tuple[str, ...] = ("none", "init", "goal")
FEATURE_VOCAB: list[int] = [len(NODE_KINDS), len(ROLES)]
LOCATION, OBJECT, FACT, ACTION = range(4)

HORIZON = 2  # plan length bound; 2 * HORIZON message-passing hops

# Deep tier: label = the goal is reachable at all (no horizon). Training graphs have 5-7
# locations and goals 1-3 moves away; the test graphs have 9-12 locations and goals 4-6 moves
# (8-12 hops) away, deeper than any path seen in training.
DEEP_TRAIN = {"locations": (5, 7), "moves": (1, 3)}
DEEP_TEST = {"locations": (9, 12), "moves": (4, 6)}


def _distances(num_locations: int, roads: np.ndarray, start: int) -> np.ndarray:
    """BFS move distances from ``start`` over directed ``roads`` ``[R, 2]``; -1 = unreachable."""
    adj: list[list[int]] = [[] for _ in range(num_locations)]
    for a, b in roads.tolist():
        adj[a].append(b)
    dist = np.full(num_locations, -1, dtype=np.int64)
    dist[start] = 0
    queue = deque([start])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if dist[v] < 0:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def _sample_roads(rng: np.random.Generator, num_locations: int, num_roads: int) -> np.ndarray:
    """``num_roads`` distinct directed location pairs without self-loops."""
    pairs = np.array([(a, b) for a in range(num_locations) for b in range(num_locations) if a != b])
    return pairs[rng.choice(len(pairs), size=num_roads, replace=False)]


def _breaking_swap(
    rng: np.random.Generator, num_locations: int, roads: np.ndarray, init: int, goal: int,
    horizon: int | None = HORIZON,
) -> np.ndarray | None:
    """Roads after a random add-target swap that puts ``goal`` beyond ``horizon`` moves, or None.

    ``horizon=None`` asks for the goal to become unreachable.
    """
    existing = {tuple(r) for r in roads.tolist()}
    candidates = []
    for i in range(len(roads)):
        for j in range(i + 1, len(roads)):
            (a, b), (c, d) = roads[i], roads[j]
            if b == d or a == d or c == b or (a, d) in existing or (c, b) in existing:
                continue
            new = roads.copy()
            new[i, 1], new[j, 1] = d, b
            dist = _distances(num_locations, new, init)
            if dist[goal] < 0 or (horizon is not None and dist[goal] > horizon):
                candidates.append(new)
    if not candidates:
        return None
    return candidates[int(rng.integers(len(candidates)))]


def _encode(
    num_locations: int, road_sets: list[np.ndarray], init: np.ndarray, goal_location: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Build ``(x, src, dst, rel)`` of one problem; object 0 is the goal object."""
    num_objects = len(road_sets)
    L, K = num_locations, num_objects
    fact0 = L + K  # at(o, l) = fact0 + o * L + l
    num_facts = K * L
    num_actions = sum(len(r) for r in road_sets)
    n = L + K + num_facts + num_actions
    x = np.zeros((n, 2), dtype=np.int64)
    x[:L, 0] = LOCATION
    x[L:fact0, 0] = OBJECT
    x[fact0 : fact0 + num_facts, 0] = FACT
    x[fact0 + num_facts :, 0] = ACTION
    x[fact0 + np.arange(K) * L + init, 1] = 1
    x[fact0 + goal_location, 1] = 2

    facts = np.arange(num_facts)
    src = [fact0 + facts, fact0 + facts]
    dst = [L + facts // L, facts % L]
    rel = [np.full(num_facts, ARG_OBJECT), np.full(num_facts, ARG_LOCATION)]
    act = fact0 + num_facts
    for o, roads in enumerate(road_sets):
        r = len(roads)
        a = act + np.arange(r)
        pre = fact0 + o * L + roads[:, 0]
        post = fact0 + o * L + roads[:, 1]
        src += [pre, a, a, a]
        dst += [a, post, pre, np.full(r, L + o)]
        rel += [np.full(r, k) for k in (PRECONDITION, ADD_EFFECT, DELETE_EFFECT, ACTOR)]
        act += r
    return x, np.concatenate(src), np.concatenate(dst), np.concatenate(rel)


def _standard_pair(rng: np.random.Generator):
    L = int(rng.integers(5, 7))
    K = 2 if rng.random() < 0.7 else 3
    road_sets = [_sample_roads(rng, L, int(rng.integers(L - 1, L + 2))) for _ in range(K)]
    init = rng.integers(0, L, size=K)
    dist = _distances(L, road_sets[0], int(init[0]))
    near = [np.flatnonzero(dist == h) for h in range(1, HORIZON + 1)]
    near = [c for c in near if c.size]
    if not near:
        return None
    # Prefer the deepest available goal half of the time so the full horizon is exercised.
    pool = near[-1] if rng.random() < 0.5 else near[int(rng.integers(len(near)))]
    goal = int(pool[int(rng.integers(pool.size))])
    broken = _breaking_swap(rng, L, road_sets[0], int(init[0]), goal)
    if broken is None:
        return None
    pos = _encode(L, road_sets, init, goal)
    neg = _encode(L, [broken] + road_sets[1:], init, goal)
    return permuted_graph(rng, *pos), permuted_graph(rng, *neg)


def _deep_pair(rng: np.random.Generator, regime: dict[str, tuple[int, int]]):
    """Goal reachable in ``regime["moves"]`` moves vs. unreachable (no horizon)."""
    lo, hi = regime["locations"]
    L = int(rng.integers(lo, hi + 1))
    K = 2 if rng.random() < 0.7 else 3
    road_sets = [_sample_roads(rng, L, int(rng.integers(L, L + 3))) for _ in range(K)]
    init = rng.integers(0, L, size=K)
    dist = _distances(L, road_sets[0], int(init[0]))
    m_lo, m_hi = regime["moves"]
    pool = np.flatnonzero((dist >= m_lo) & (dist <= m_hi))
    if pool.size == 0:
        return None
    goal = int(pool[int(rng.integers(pool.size))])
    broken = _breaking_swap(rng, L, road_sets[0], int(init[0]), goal, horizon=None)
    if broken is None:
        return None
    pos = _encode(L, road_sets, init, goal)
    neg = _encode(L, [broken] + road_sets[1:], init, goal)
    return permuted_graph(rng, *pos), permuted_graph(rng, *neg)


def generate_planning(num_problems: int, seed: int, tier: str = "standard") -> GeneratedDataset:
    """``num_problems`` planning graphs, half solvable.

    Args:
        num_problems: number of graphs (matched positive/negative pairs, shuffled).
        seed: seed of the numpy ``PCG64`` generator; the output depends on nothing else.
        tier: ``standard`` (solvable within :data:`HORIZON` actions) or ``deep`` (solvable at
            all; test graphs larger and plans longer than in training, see :data:`DEEP_TEST`).
    """
    if num_problems < 2:
        raise ValueError(f"generate_planning: num_problems must be >= 2, got {num_problems}")
    check_tier("generate_planning", tier)
    rng = make_rng(seed)
    params = {"num_problems": num_problems, "seed": seed, "generator_version": GENERATOR_VERSION}
    if tier == "standard":
        pairs = collect_pairs("generate_planning", num_problems, lambda: _standard_pair(rng))
        return GeneratedDataset.from_packed(pack_pairs(pairs, rng, num_problems), FEATURE_VOCAB, RELATION_NAMES, params)
    n_test = deep_test_pairs(num_problems)
    pairs = collect_pairs("generate_planning", num_problems - 2 * n_test, lambda: _deep_pair(rng, DEEP_TRAIN))
    test = collect_pairs("generate_planning", 2 * n_test, lambda: _deep_pair(rng, DEEP_TEST))
    packed = pack_pairs(pairs + test, rng, num_problems, test_only=[False] * len(pairs) + [True] * len(test))
    return GeneratedDataset.from_packed(packed, FEATURE_VOCAB, RELATION_NAMES, {**params, "tier": tier})
