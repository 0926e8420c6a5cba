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

from nsm.data.base import GENERATOR_VERSION, GeneratedDataset, collect_pairs, make_rng, pack_pairs, permuted_graph

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
    rng: np.random.Generator, num_locations: int, roads: np.ndarray, init: int, goal: int
) -> np.ndarray | None:
    """Roads after a random add-target swap that puts ``goal`` beyond the horizon, or None."""
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
            if dist[goal] < 0 or dist[goal] > HORIZON:
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


def generate_planning(num_problems: int, seed: int) -> GeneratedDataset:
    """``num_problems`` planning graphs, half solvable within :data:`HORIZON` actions.

    Args:
        num_problems: number of graphs (matched positive/negative pairs, shuffled).
        seed: seed of the numpy ``PCG64`` generator; the output depends on nothing else.
    """
    if num_problems < 2:
        raise ValueError(f"generate_planning: num_problems must be >= 2, got {num_problems}")
    rng = make_rng(seed)

    def make_pair():
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

    pairs = collect_pairs("generate_planning", num_problems, make_pair)
    store = pack_pairs(pairs, rng, num_problems)
    params = {"num_problems": num_problems, "seed": seed, "generator_version": GENERATOR_VERSION}
    return GeneratedDataset(store, list(FEATURE_VOCAB), RELATION_NAMES, params)
