import pytest

from nsm.data.planning import (
    ADD_EFFECT,
    FACT,
    FEATURE_VOCAB,
    HORIZON,
    PRECONDITION,
    RELATION_NAMES,
    generate_planning,
)

from .helpers import (
    assert_same_store,
    check_matched_statistics,
    check_no_shortcut,
    check_well_formed,
    graph_of,
    hops,
    store_digest,
)


@pytest.fixture(scope="module")
def data():
    return generate_planning(num_problems=400, seed=7)


def test_well_formed(data):
    check_well_formed(data)
    assert data.feature_vocab == FEATURE_VOCAB and data.relation_names == RELATION_NAMES
    assert data.params == {"num_problems": 400, "seed": 7, "generator_version": data.params["generator_version"]}
    assert len(data.store) == 400


def test_deterministic(data):
    again = generate_planning(num_problems=400, seed=7)
    assert_same_store(data.store, again.store)
    assert store_digest(generate_planning(num_problems=400, seed=8).store) != store_digest(data.store)


def test_odd_count_and_bad_size():
    assert len(generate_planning(num_problems=11, seed=0).store) == 11
    with pytest.raises(ValueError, match="num_problems"):
        generate_planning(num_problems=1, seed=0)


def test_label_is_goal_reachability_within_horizon(data):
    s = data.store
    for g in range(len(s)):
        x, ei, et = graph_of(s, g)
        init = [i for i in range(x.size(0)) if x[i, 0] == FACT and x[i, 1] == 1]
        goals = [i for i in range(x.size(0)) if x[i, 1] == 2]
        assert len(goals) == 1 and x[goals[0], 0] == FACT and len(init) >= 2
        d = hops(x.size(0), ei, et, {PRECONDITION, ADD_EFFECT}, init)[goals[0]]
        assert int(s.y[g]) == int(0 < d <= 2 * HORIZON), g


def test_pairs_hide_size_and_relation_bag(data):
    check_matched_statistics(data)


def test_no_shortcut_baselines(data):
    check_no_shortcut("planning", data)
