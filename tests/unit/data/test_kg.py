import pytest

from nsm.data.kg import (
    FEATURE_VOCAB,
    HEADQUARTERED_IN,
    LIVES_IN,
    LOCATED_IN,
    PARENT_OF,
    RELATION_NAMES,
    WORKS_FOR,
    generate_kg,
)

from .helpers import (
    assert_same_store,
    check_matched_statistics,
    check_no_shortcut,
    check_well_formed,
    graph_of,
    store_digest,
)

# query id -> (first body relation h -> y, second body relation, second edge points y -> t?)
RULES = {
    1: (PARENT_OF, PARENT_OF, True),
    2: (LIVES_IN, LOCATED_IN, True),
    3: (WORKS_FOR, WORKS_FOR, False),  # colleague: t -> y
    4: (WORKS_FOR, HEADQUARTERED_IN, True),
}


@pytest.fixture(scope="module")
def data():
    return generate_kg(num_entities=80, num_triples=400, seed=5)


def test_well_formed(data):
    check_well_formed(data)
    assert data.feature_vocab == FEATURE_VOCAB and data.relation_names == RELATION_NAMES
    assert data.params["num_entities"] == 80 and data.params["num_triples"] == 400


def test_deterministic(data):
    assert_same_store(data.store, generate_kg(num_entities=80, num_triples=400, seed=5).store)
    assert store_digest(generate_kg(num_entities=80, num_triples=400, seed=6).store) != store_digest(data.store)


def test_bad_sizes():
    with pytest.raises(ValueError, match="num_entities"):
        generate_kg(num_entities=10, num_triples=400, seed=0)
    with pytest.raises(ValueError, match="num_triples"):
        generate_kg(num_entities=200, num_triples=50, seed=0)


def test_label_is_rule_body_in_subgraph(data):
    s = data.store
    seen_rules = set()
    for g in range(len(s)):
        x, ei, et = graph_of(s, g)
        (h,) = (x[:, 1] == 1).nonzero().flatten().tolist()
        (t,) = (x[:, 1] == 2).nonzero().flatten().tolist()
        rule = int(x[h, 2])
        assert rule == int(x[t, 2]) >= 1 and int((x[:, 2] > 0).sum()) == 2
        seen_rules.add(rule)
        r1, r2, forward = RULES[rule]
        edges = set(zip(ei[0].tolist(), et.tolist(), ei[1].tolist()))
        mids = {b for (a, r, b) in edges if a == h and r == r1}
        implied = any(((y, r2, t) if forward else (t, r2, y)) in edges for y in mids)
        assert int(s.y[g]) == int(implied), g
    assert seen_rules == {1, 2, 3, 4}


def test_pairs_hide_size_and_relation_bag(data):
    check_matched_statistics(data)


def test_no_shortcut_baselines(data):
    check_no_shortcut("kg", data)
