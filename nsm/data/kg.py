"""Knowledge graph: is the candidate triple implied by a rule, or is it a corrupted one?

One synthetic world KG is generated per dataset: ``num_entities`` typed entities (person, city,
country, company) and ``num_triples`` base facts over :data:`RELATION_NAMES` (functional facts
such as ``lives_in``/``works_for``, a family forest of ``parent_of``, and noise relations
``friend_of``/``visited``/``supplies`` filling the rest). Four rules define derived relations:

* ``grandparent_of(h, t)``    <- ``parent_of(h, y), parent_of(y, t)``
* ``lives_in_country(h, t)``  <- ``lives_in(h, y), located_in(y, t)``
* ``colleague_of(h, t)``      <- ``works_for(h, y), works_for(t, y)``
* ``works_in_city(h, t)``     <- ``works_for(h, y), headquartered_in(y, t)``

A sample is a subgraph around a candidate ``(h, query, tail)``: the head, the true tail ``t``
with its rule body ``h -> y -> t``, a corrupted tail ``t'`` of the same type with a decoy body
(``p' -> y' -> t'``, the same relation shape, but not reachable from ``h``), and a few sampled
neighbours of each, with every world edge among them. Node roles mark the head and the tail;
a third column carries the query relation on both. The positive marks ``t``, the negative
marks ``t'`` in the *same* subgraph, so everything but the marker position is identical.
Label 1 iff the marked tail is rule-implied (checked against the whole world KG).
"""

from __future__ import annotations

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
    "parent_of",
    "lives_in",
    "located_in",
    "works_for",
    "headquartered_in",
    "born_in",
    "friend_of",
    "visited",
    "supplies",
)
(PARENT_OF, LIVES_IN, LOCATED_IN, WORKS_FOR, HEADQUARTERED_IN, BORN_IN, FRIEND_OF, VISITED, SUPPLIES) = range(9)

ENTITY_TYPES: tuple[str, ...] = ("person", "city", "country", "company")
PERSON, CITY, COUNTRY, COMPANY = range(4)
ROLES: tuple[str, ...] = ("none", "head", "tail")
QUERY_RELATIONS: tuple[str, ...] = ("none", "grandparent_of", "lives_in_country", "colleague_of", "works_in_city")
FEATURE_VOCAB: list[int] = [len(ENTITY_TYPES), len(ROLES), len(QUERY_RELATIONS)]


class _World:
    """The world KG plus per-entity lookups for the rules."""

    def __init__(self, rng: np.random.Generator, num_entities: int, num_triples: int) -> None:
        n_country = max(2, num_entities // 25)
        n_city = max(4, num_entities // 8)
        n_company = max(4, num_entities // 8)
        n_person = num_entities - n_country - n_city - n_company
        if n_person < 10:
            raise ValueError(f"generate_kg: num_entities={num_entities} is too small (need >= 20)")
        self.country = np.arange(n_country)
        self.city = n_country + np.arange(n_city)
        self.company = n_country + n_city + np.arange(n_company)
        self.person = n_country + n_city + n_company + np.arange(n_person)
        self.etype = np.empty(num_entities, dtype=np.int64)
        self.etype[self.country], self.etype[self.city] = COUNTRY, CITY
        self.etype[self.company], self.etype[self.person] = COMPANY, PERSON

        self.loc = np.full(num_entities, -1)  # city -> country
        self.loc[self.city] = rng.choice(self.country, n_city)
        self.loc[self.city[:n_country]] = self.country  # every country has a city
        self.hq = np.full(num_entities, -1)  # company -> city
        self.hq[self.company] = rng.choice(self.city, n_company)
        self.lives = np.full(num_entities, -1)
        self.lives[self.person] = rng.choice(self.city, n_person)
        self.works = np.full(num_entities, -1)
        self.works[self.person] = rng.choice(self.company, n_person)
        born = rng.choice(self.city, n_person)
        # Family forest: a person's parent is an earlier person (about 80 % have one).
        self.parent = np.full(num_entities, -1)
        has_parent = rng.random(n_person) < 0.8
        has_parent[: max(3, n_person // 10)] = False
        for k in np.flatnonzero(has_parent):
            self.parent[self.person[k]] = self.person[int(rng.integers(max(1, k - 30), k))]

        kids = self.person[self.parent[self.person] >= 0]
        facts = [
            (self.parent[kids], kids, PARENT_OF),
            (self.person, self.lives[self.person], LIVES_IN),
            (self.city, self.loc[self.city], LOCATED_IN),
            (self.person, self.works[self.person], WORKS_FOR),
            (self.company, self.hq[self.company], HEADQUARTERED_IN),
            (self.person, born, BORN_IN),
        ]
        src = np.concatenate([f[0] for f in facts])
        dst = np.concatenate([f[1] for f in facts])
        rel = np.concatenate([np.full(len(f[0]), f[2]) for f in facts])
        if num_triples < src.size:
            raise ValueError(
                f"generate_kg: num_triples={num_triples} is below the {src.size} base facts of "
                f"{num_entities} entities; raise num_triples or lower num_entities"
            )
        # Noise relations fill the rest: they never enter a rule.
        extra = num_triples - src.size
        noise_rel = rng.choice([FRIEND_OF, VISITED, SUPPLIES], size=4 * extra + 16, p=[0.5, 0.35, 0.15])
        size = noise_rel.size
        heads = np.where(noise_rel == SUPPLIES, rng.choice(self.company, size), rng.choice(self.person, size))
        tails = np.select(
            [noise_rel == FRIEND_OF, noise_rel == VISITED],
            [rng.choice(self.person, noise_rel.size), rng.choice(self.city, noise_rel.size)],
            rng.choice(self.company, noise_rel.size),
        )
        ok = heads != tails
        key = (heads * num_entities + tails) * len(RELATION_NAMES) + noise_rel
        _, first = np.unique(key[ok], return_index=True)
        keep = np.flatnonzero(ok)[np.sort(first)][:extra]
        self.src = np.r_[src, heads[keep]].astype(np.int64)
        self.dst = np.r_[dst, tails[keep]].astype(np.int64)
        self.rel = np.r_[rel, noise_rel[keep]].astype(np.int64)
        # Incident edge ids of each entity, for neighbourhood sampling.
        ends = np.r_[self.src, self.dst]
        order = np.argsort(ends, kind="stable")
        bounds = np.searchsorted(ends[order], np.arange(num_entities + 1))
        edge_of = order % self.src.size
        self.incident = [edge_of[bounds[v] : bounds[v + 1]] for v in range(num_entities)]

        self.children: dict[int, np.ndarray] = {}
        for p in np.unique(self.parent[kids]):
            self.children[int(p)] = kids[self.parent[kids] == p]

    def kids_of(self, p: int) -> np.ndarray:
        return self.children.get(int(p), np.empty(0, dtype=np.int64))


def _pick(rng: np.random.Generator, items: np.ndarray) -> int:
    return int(items[int(rng.integers(items.size))])


def _candidate(rng: np.random.Generator, w: _World, rule: int) -> tuple[list[int], int, int] | None:
    """``([h, y, t, p', y', t'], t, t')`` for ``rule`` in 1..4, or None to resample."""
    if rule == 1:  # grandparent_of
        grand = np.array([p for p in w.person if any(w.kids_of(c).size for c in w.kids_of(p))])
        if grand.size == 0:
            return None
        h = _pick(rng, grand)
        ys = np.array([c for c in w.kids_of(h) if w.kids_of(c).size])
        y = _pick(rng, ys)
        t = _pick(rng, w.kids_of(y))
        implied = np.concatenate([w.kids_of(c) for c in w.kids_of(h)])
        bad = np.flatnonzero((w.parent[w.person] >= 0) & (w.parent[w.parent[w.person]] >= 0))
        cands = np.setdiff1d(w.person[bad], np.r_[implied, h])
        if cands.size == 0:
            return None
        t2 = _pick(rng, cands)
        y2 = int(w.parent[t2])
        p2 = int(w.parent[y2])
    elif rule == 2:  # lives_in_country
        h = _pick(rng, w.person)
        y, t = int(w.lives[h]), int(w.loc[w.lives[h]])
        cities = w.city[(w.loc[w.city] != t)]
        cities = np.array([c for c in cities if np.any((w.lives[w.person] == c) & (w.person != h))])
        if cities.size == 0:
            return None
        y2 = _pick(rng, cities)
        t2 = int(w.loc[y2])
        p2 = _pick(rng, w.person[(w.lives[w.person] == y2) & (w.person != h)])
    elif rule == 3:  # colleague_of
        h = _pick(rng, w.person)
        y = int(w.works[h])
        mates = w.person[(w.works[w.person] == y) & (w.person != h)]
        others = w.person[w.works[w.person] != y]
        if mates.size == 0 or others.size == 0:
            return None
        t = _pick(rng, mates)
        t2 = _pick(rng, others)
        y2 = int(w.works[t2])
        mates2 = w.person[(w.works[w.person] == y2) & (w.person != t2)]
        if mates2.size == 0:
            return None
        p2 = _pick(rng, mates2)
    else:  # works_in_city
        h = _pick(rng, w.person)
        y, t = int(w.works[h]), int(w.hq[w.works[h]])
        comps = w.company[(w.hq[w.company] != t)]
        comps = np.array([c for c in comps if np.any((w.works[w.person] == c) & (w.person != h))])
        if comps.size == 0:
            return None
        y2 = _pick(rng, comps)
        t2 = int(w.hq[y2])
        p2 = _pick(rng, w.person[(w.works[w.person] == y2) & (w.person != h)])
    core = [h, y, t, p2, y2, t2]
    if len(set(core)) != 6:
        return None
    return core, t, t2


def _subgraph(
    rng: np.random.Generator, w: _World, core: list[int], fanout: int
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes = core + up to ``fanout`` sampled neighbours of each; every world edge among them."""
    nodes = list(core)
    for v in core:
        inc = w.incident[v]
        if inc.size:
            e = inc[rng.choice(inc.size, size=min(fanout, inc.size), replace=False)]
            nodes += np.where(w.src[e] == v, w.dst[e], w.src[e]).tolist()
    nodes_arr = np.array(list(dict.fromkeys(nodes)), dtype=np.int64)  # ordered de-duplication
    inside = np.zeros(w.etype.size, dtype=bool)
    inside[nodes_arr] = True
    edges = np.flatnonzero(inside[w.src] & inside[w.dst])
    return nodes_arr, edges


def generate_kg(num_entities: int, num_triples: int, seed: int, tier: str = "standard") -> GeneratedDataset:
    """``num_triples`` candidate-triple subgraphs over a world of ``num_entities`` entities.

    Args:
        num_entities: entities in the world KG (>= 20); unused by the deep tier, whose samples
            each have their own small world (:mod:`nsm.data.kg_deep`).
        num_triples: base facts in the world KG, and the number of samples (half positive).
        seed: seed of the numpy ``PCG64`` generator; the output depends on nothing else.
        tier: ``standard`` (the four 2-hop rules) or ``deep`` (``ancestor_of`` at any depth).
    """
    if num_triples < 2:
        raise ValueError(f"generate_kg: num_triples must be >= 2, got {num_triples}")
    check_tier("generate_kg", tier)
    rng = make_rng(seed)
    params = {
        "num_entities": num_entities,
        "num_triples": num_triples,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
    }
    if tier == "deep":
        from nsm.data.kg_deep import DEEP_FEATURE_VOCAB, DEEP_TEST, DEEP_TRAIN, deep_kg_pair

        n_test = deep_test_pairs(num_triples)
        pairs = collect_pairs("generate_kg", num_triples - 2 * n_test, lambda: deep_kg_pair(rng, DEEP_TRAIN))
        test = collect_pairs("generate_kg", 2 * n_test, lambda: deep_kg_pair(rng, DEEP_TEST))
        packed = pack_pairs(pairs + test, rng, num_triples, test_only=[False] * len(pairs) + [True] * len(test))
        return GeneratedDataset.from_packed(packed, DEEP_FEATURE_VOCAB, RELATION_NAMES, {**params, "tier": tier})
    w = _World(rng, num_entities, num_triples)
    local = np.full(num_entities, -1, dtype=np.int64)
    keys: list[tuple[int, int]] = []
    triples: list[tuple[list[int], list[int]]] = []

    def make_pair():
        rule = int(rng.integers(1, 5))
        cand = _candidate(rng, w, rule)
        if cand is None:
            return None
        core, t, t2 = cand
        nodes, edges = _subgraph(rng, w, core, fanout=int(rng.integers(2, 5)))
        local[nodes] = np.arange(nodes.size)
        src, dst, rel = local[w.src[edges]], local[w.dst[edges]], w.rel[edges]
        graphs = []
        for tail in (t, t2):
            x = np.zeros((nodes.size, 3), dtype=np.int64)
            x[:, 0] = w.etype[nodes]
            x[local[core[0]], 1], x[local[tail], 1] = 1, 2
            x[local[core[0]], 2], x[local[tail], 2] = rule, rule
            graphs.append(permuted_graph(rng, x, src, dst, rel))
        local[nodes] = -1
        keys.append((rule, core[0]))
        triples.append(([rule, core[0], t], [rule, core[0], t2]))
        return graphs[0], graphs[1]

    pairs = collect_pairs("generate_kg", num_triples, make_pair)
    # Both candidate triples of a pair are (rule, head, ·): grouping pairs by (rule, head) keeps
    # every test triple out of training and validation.
    packed = pack_pairs(pairs, rng, num_triples, keys=keys, info=triples)
    return GeneratedDataset.from_packed(packed, FEATURE_VOCAB, RELATION_NAMES, params)
