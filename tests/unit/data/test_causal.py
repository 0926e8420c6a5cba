import pytest
import torch

from nsm.data.causal import (
    CAUSES,
    FEATURE_VOCAB,
    INTERVENES,
    LATENT,
    LATENT_CAUSE,
    MAX_PATH,
    RELATION_NAMES,
    generate_causal,
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
    return generate_causal(num_scenarios=400, seed=3)


def test_well_formed(data):
    check_well_formed(data)
    assert data.feature_vocab == FEATURE_VOCAB and data.relation_names == RELATION_NAMES
    assert data.params["num_scenarios"] == 400 and data.params["seed"] == 3


def test_deterministic(data):
    assert_same_store(data.store, generate_causal(num_scenarios=400, seed=3).store)
    assert store_digest(generate_causal(num_scenarios=400, seed=4).store) != store_digest(data.store)


def test_bad_size():
    with pytest.raises(ValueError, match="num_scenarios"):
        generate_causal(num_scenarios=0, seed=0)


def test_label_is_directed_path_not_confounding(data):
    s = data.store
    for g in range(len(s)):
        x, ei, et = graph_of(s, g)
        n = x.size(0)
        (t,) = (x[:, 1] == 1).nonzero().flatten().tolist()
        (o,) = (x[:, 1] == 2).nonzero().flatten().tolist()
        d = hops(n, ei, et, {CAUSES}, [t])[o]
        if int(s.y[g]) == 1:
            assert 0 < d <= MAX_PATH, g
        else:
            assert d == -1, g
        # Every scenario is confounded: a latent drives both treatment and outcome.
        lat = ei[:, et == LATENT_CAUSE]
        assert any(
            x[a, 0] == LATENT and {t, o} <= set(lat[1, lat[0] == a].tolist()) for a in lat[0].unique().tolist()
        )
        assert ei[:, et == INTERVENES][1].tolist() == [t]


def test_causes_edges_acyclic(data):
    s = data.store
    for g in range(len(s)):
        x, ei, et = graph_of(s, g)
        n = x.size(0)
        c = ei[:, et == CAUSES]
        indeg = torch.bincount(c[1], minlength=n).tolist()
        queue = [v for v in range(n) if indeg[v] == 0]
        seen = 0
        while queue:
            u = queue.pop()
            seen += 1
            for v in c[1, c[0] == u].tolist():
                indeg[v] -= 1
                if indeg[v] == 0:
                    queue.append(v)
        assert seen == n, g


def test_pairs_hide_size_and_relation_bag(data):
    check_matched_statistics(data)


def test_no_shortcut_baselines(data):
    check_no_shortcut("causal", data)
