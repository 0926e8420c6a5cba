import numpy as np
import torch

from nsm.data.baselines import bag_features, marked_degree_features, run_baselines, size_features, tree_accuracy
from nsm.data.dataset import NSMDataset, split_indices
from nsm.data.graph import GraphStore


def leaky_dataset(kind: str, n: int = 300) -> NSMDataset:
    """Graphs whose label leaks through size or through the relation bag."""
    rng = np.random.Generator(np.random.PCG64(0))
    graphs, labels = [], []
    for i in range(n):
        y = i % 2
        nodes = int(rng.integers(10, 20)) + (10 if kind == "size" and y else 0)
        e = nodes
        src = torch.from_numpy(rng.integers(0, nodes, e))
        dst = torch.from_numpy(rng.integers(0, nodes, e))
        if kind == "bag":
            rel = torch.from_numpy((rng.random(e) < (0.8 if y else 0.2)).astype(np.int64))
        else:
            rel = torch.from_numpy(rng.integers(0, 2, e))
        graphs.append((torch.zeros(nodes, 1, dtype=torch.long), torch.stack([src, dst]), rel))
        labels.append(y)
    store = GraphStore.from_graphs(graphs, labels)
    return NSMDataset("toy", store, [1], 2, ("a", "b"))


def test_size_leak_is_detected():
    ds = leaky_dataset("size")
    tr, _, te = split_indices(ds.store.y, seed=0)
    res = run_baselines(ds, tr, te)
    assert res["size_only"] >= 0.95 and res["size_tree"] >= 0.95
    assert abs(res["majority"] - 0.5) < 0.05


def test_bag_leak_is_detected():
    ds = leaky_dataset("bag")
    tr, _, te = split_indices(ds.store.y, seed=0)
    res = run_baselines(ds, tr, te)
    assert res["bag_of_relations"] >= 0.9
    assert res["size_only"] <= 0.65


def test_features():
    ds = leaky_dataset("bag", n=4)
    s = ds.store
    assert size_features(s)[:, 0].tolist() == s.num_nodes().double().tolist()
    bag = bag_features(s, 2, [1])
    assert bag.shape == (4, 3)
    assert bag[:, :2].sum(1).tolist() == s.num_edges().double().tolist()
    assert bag[:, 2].tolist() == s.num_nodes().double().tolist()


def test_tree_needs_two_levels():
    # XOR-free but two-threshold concept: y = 1 iff 3 < a <= 6 (a stump cannot, a depth-2 tree can).
    a = torch.arange(0, 10).repeat(20).double()
    x = torch.stack([a, torch.zeros_like(a)], 1)
    y = ((a > 3) & (a <= 6)).long()
    assert tree_accuracy(x, y, x, y) == 1.0


def test_marked_degree_leak_is_detected():
    # Same size and relation bag in both classes; only whether the marked node (role 1) is the
    # source of the type-1 edge differs.
    graphs, labels = [], []
    for i in range(200):
        y = i % 2
        x = torch.tensor([[0, 1], [0, 0], [0, 0]])
        ei = torch.tensor([[0, 1], [1, 2]]) if y else torch.tensor([[1, 1], [0, 2]])  # [src; dst]
        graphs.append((x, ei, torch.tensor([1, 0])))
        labels.append(y)
    ds = NSMDataset("toy", GraphStore.from_graphs(graphs, labels), [1, 2], 2, ("a", "b"))
    feats = marked_degree_features(ds.store, 2, 2)
    # [role 1: out rel0, out rel1, in rel0, in rel1]; g0 (y=0) receives the type-1 edge, g1 sends it.
    assert feats[0].tolist() == [0, 0, 0, 1] and feats[1].tolist() == [0, 1, 0, 0]
    tr, _, te = split_indices(ds.store.y, seed=0)
    res = run_baselines(ds, tr, te)
    assert res["marked_degree"] == 1.0 and res["bag_of_relations"] <= 0.6


def test_typed_walk_features_count_walks_by_relation_and_direction():
    from nsm.data.baselines import typed_walk_features

    # head(role 1) -r0-> y <-r1- tail(role 2), plus a direct r0 edge head -> tail and a dead end.
    x = torch.tensor([[0, 1], [0, 0], [0, 2], [0, 0]])
    ei = torch.tensor([[0, 2, 0, 1], [1, 1, 2, 3]])
    et = torch.tensor([0, 1, 0, 1])
    store = GraphStore.from_graphs([(x, ei, et)], [1])
    feats, names = typed_walk_features(store, num_relations=2, depth=2)
    counts = dict(zip(names, feats[0].tolist()))
    # step ids: r forwards = r, r backwards = 2 + r
    assert counts[(0,)] == 1.0  # head -r0-> tail
    assert counts[(0, 3)] == 1.0  # head -r0-> y <-r1- tail
    assert (1,) not in counts and all(v > 0 for v in counts.values())


def test_typed_walk_counter_solves_the_standard_tier_and_not_the_deep_one():
    from nsm.data import generate_dataset, split_dataset
    from nsm.data.baselines import typed_walk_accuracies

    sizes = {"planning": {"num_problems": 600}, "causal": {"num_scenarios": 600},
             "kg": {"num_entities": 120, "num_triples": 800}}
    rule_depth = {"planning": 4, "causal": 3, "kg": 2}
    for domain, params in sizes.items():
        standard = generate_dataset(domain, params, seed=0)
        tr, _, te = split_dataset(standard, seed=0)
        acc = typed_walk_accuracies(standard.store, standard.num_relations, tr, te, rule_depth[domain])
        assert acc[rule_depth[domain]] >= 0.95, (domain, acc)  # the standard tier is saturated
        deep = generate_dataset(domain, {**params, "tier": "deep"}, seed=0)
        tr, _, te = split_dataset(deep, seed=0)
        acc = typed_walk_accuracies(deep.store, deep.num_relations, tr, te, 4)
        assert max(acc.values()) <= 0.75, (domain, acc)
