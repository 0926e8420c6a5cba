"""Splits without leakage: pairs never straddle a split, kg triples never repeat across splits."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from nsm.data import DOMAINS, generate_dataset, split_dataset, split_indices

SIZES = {
    "planning": {"num_problems": 300},
    "causal": {"num_scenarios": 300},
    "kg": {"num_entities": 120, "num_triples": 600},
}


def _signature(store, g: int) -> tuple:
    """What a matched pair shares: node count, edge count, relation counts and feature histogram."""
    n0, n1 = int(store.node_ptr[g]), int(store.node_ptr[g + 1])
    e0, e1 = int(store.edge_ptr[g]), int(store.edge_ptr[g + 1])
    x = store.x[n0:n1]
    return (n1 - n0, e1 - e0, tuple(torch.bincount(store.edge_type[e0:e1], minlength=9).tolist()),
            tuple(sorted(Counter(map(tuple, x[:, 0:1].tolist())).items())))


def _sides(n: int, splits) -> torch.Tensor:
    side = torch.full((n,), -1)
    for k, idx in enumerate(splits):
        assert bool((side[idx] == -1).all()), "a graph is in two splits"
        side[idx] = k
    assert bool((side >= 0).all()), "a graph is in no split"
    return side


@pytest.mark.parametrize("tier", ["standard", "deep"])
@pytest.mark.parametrize("domain", DOMAINS)
def test_matched_pairs_fall_on_one_side_of_every_split(domain, tier):
    ds = generate_dataset(domain, {**SIZES[domain], "tier": tier}, seed=3)
    store, groups = ds.store, ds.groups
    assert groups is not None and groups.shape == store.y.shape
    for seed in (0, 1):
        side = _sides(len(store), split_dataset(ds, seed=seed))
        for g in groups.unique():
            members = (groups == g).nonzero().flatten()
            assert side[members].unique().numel() == 1, f"group {int(g)} straddles a split"
            if domain != "kg" or tier == "deep":  # one pair per group
                assert members.numel() in (1, 2)
                if members.numel() == 2:
                    a, b = members.tolist()
                    assert sorted(store.y[members].tolist()) == [0, 1]
                    assert _signature(store, a) == _signature(store, b)
        counts = [int(store.y[side == k].sum()) * 2 - int((side == k).sum()) for k in range(3)]
        assert all(abs(c) <= 1 for c in counts[1:]), f"val/test not balanced: {counts}"


def test_kg_test_triples_never_occur_in_train_and_validation_is_disjoint_from_both():
    ds = generate_dataset("kg", {"num_entities": 200, "num_triples": 2500}, seed=5)  # production size
    assert ds.info is not None and ds.info.shape == (len(ds), 3)
    triples = [tuple(row) for row in ds.info.tolist()]
    # The world is small, so triples do repeat across samples: the split, not luck, keeps them apart.
    assert len(set(triples)) < len(triples)
    for seed in (0, 1, 2):
        train, val, test = (set(triples[i] for i in idx.tolist()) for idx in split_dataset(ds, seed=seed))
        assert not test & train and not val & train and not val & test
    # The old per-class split would have leaked most test triples into training.
    train, _, test = split_indices(ds.store.y, seed=0)
    leaked = {triples[i] for i in test.tolist()} & {triples[i] for i in train.tolist()}
    assert len(leaked) > 0.25 * len(test)


@pytest.mark.parametrize("domain", DOMAINS)
def test_deep_tier_tests_on_larger_graphs_only(domain):
    ds = generate_dataset(domain, {**SIZES[domain], "tier": "deep"}, seed=2)
    assert ds.params["tier"] == "deep" and ds.test_only is not None
    train, val, test = split_dataset(ds, seed=0)
    assert torch.equal(test, ds.test_only.nonzero().flatten())
    sizes = ds.store.num_nodes().double()
    assert sizes[test].mean() > 1.4 * sizes[train].mean()
    assert abs(len(val) - 0.15 * len(ds)) <= 2 and abs(len(test) - 0.15 * len(ds)) <= 2


def test_split_without_groups_is_still_stratified():
    y = torch.tensor([0, 1] * 50)
    train, val, test = split_indices(y, seed=0)
    assert len(val) == len(test) == 16 and int(y[test].sum()) == 8
