"""The kg domain's deep tier: is the head an ancestor of the tail, at any number of generations?

Every sample is its own small world (so no fact is shared between a training and a test
sample): persons in a family forest (``parent_of``), cities in countries, companies with
headquarters, and the functional and noise relations of :mod:`nsm.data.kg`. Two disjoint
lineages of the same length ``k`` run from two roots: ``h -> ... -> t`` and ``p' -> ... -> t'``.
Extra persons hang off random persons of the forest, so both ends have the same kind of
neighbourhood. The positive marks ``t`` as the tail, the negative marks ``t'``; the head is
always ``h`` and the query column says ``ancestor_of``.

Label 1 iff the marked tail descends from the head, which takes ``k`` ``parent_of`` hops.
Training samples have ``k`` in 2..4; the test samples have ``k`` in 5..8 and larger worlds
(:data:`DEEP_TRAIN`, :data:`DEEP_TEST`), so a fixed-depth reader cannot carry over.
"""

from __future__ import annotations

import numpy as np

from nsm.data.base import Graph, permuted_graph
from nsm.data.kg import (
    BORN_IN,
    CITY,
    COMPANY,
    COUNTRY,
    FRIEND_OF,
    HEADQUARTERED_IN,
    LIVES_IN,
    LOCATED_IN,
    PARENT_OF,
    PERSON,
    QUERY_RELATIONS,
    VISITED,
    WORKS_FOR,
)

DEEP_QUERY_RELATIONS: tuple[str, ...] = (*QUERY_RELATIONS, "ancestor_of")
ANCESTOR_OF = len(QUERY_RELATIONS)
DEEP_FEATURE_VOCAB: list[int] = [4, 3, len(DEEP_QUERY_RELATIONS)]

DEEP_TRAIN = {"depth": (2, 4), "extra_persons": (4, 8), "cities": (3, 4), "companies": (2, 3)}
DEEP_TEST = {"depth": (5, 8), "extra_persons": (8, 14), "cities": (4, 6), "companies": (3, 4)}


def _draw(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def deep_kg_pair(rng: np.random.Generator, regime: dict[str, tuple[int, int]]) -> tuple[Graph, Graph]:
    """One (positive, negative) pair of the deep tier in ``regime``."""
    k = _draw(rng, regime["depth"])
    n_extra = _draw(rng, regime["extra_persons"])
    n_city, n_company, n_country = _draw(rng, regime["cities"]), _draw(rng, regime["companies"]), 2
    chain_a = np.arange(k + 1)  # h = 0, t = k
    chain_b = k + 1 + np.arange(k + 1)  # p' = k + 1, t' = 2k + 1
    n_person = 2 * (k + 1) + n_extra
    parent = np.full(n_person, -1)
    parent[chain_a[1:]], parent[chain_b[1:]] = chain_a[:-1], chain_b[:-1]
    for v in range(2 * (k + 1), n_person):  # extra persons: a child of any earlier person, or a root
        if rng.random() < 0.8:
            parent[v] = int(rng.integers(v))
    country = n_person + np.arange(n_country)
    city = country[-1] + 1 + np.arange(n_city)
    company = city[-1] + 1 + np.arange(n_company)
    n = company[-1] + 1
    persons = np.arange(n_person)
    kids = persons[parent >= 0]
    loc = rng.choice(country, n_city)
    loc[:n_country] = country
    n_friend = int(rng.integers(n_person // 3, n_person // 2 + 1))
    f_src, f_dst = rng.choice(persons, n_friend), rng.choice(persons, n_friend)
    keep = f_src != f_dst
    n_visit = int(rng.integers(1, n_person // 3 + 2))
    parts = [
        (parent[kids], kids, PARENT_OF),
        (persons, rng.choice(city, n_person), LIVES_IN),
        (persons, rng.choice(city, n_person), BORN_IN),
        (persons, rng.choice(company, n_person), WORKS_FOR),
        (city, loc, LOCATED_IN),
        (company, rng.choice(city, n_company), HEADQUARTERED_IN),
        (f_src[keep], f_dst[keep], FRIEND_OF),
        (rng.choice(persons, n_visit), rng.choice(city, n_visit), VISITED),
    ]
    src = np.concatenate([p[0] for p in parts]).astype(np.int64)
    dst = np.concatenate([p[1] for p in parts]).astype(np.int64)
    rel = np.concatenate([np.full(len(p[0]), p[2]) for p in parts]).astype(np.int64)
    etype = np.empty(n, dtype=np.int64)
    etype[persons], etype[country], etype[city], etype[company] = PERSON, COUNTRY, CITY, COMPANY
    graphs = []
    for tail in (int(chain_a[-1]), int(chain_b[-1])):
        x = np.zeros((n, 3), dtype=np.int64)
        x[:, 0] = etype
        x[0, 1], x[tail, 1] = 1, 2
        x[0, 2], x[tail, 2] = ANCESTOR_OF, ANCESTOR_OF
        graphs.append(permuted_graph(rng, x, src, dst, rel))
    return graphs[0], graphs[1]
