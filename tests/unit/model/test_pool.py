import pytest
import torch

from nsm.model.pool import WhyPool, filter_edges, nodes_to_keep, topk_per_graph


def test_nodes_to_keep_ceil_and_at_least_one():
    n = torch.tensor([0, 1, 2, 3, 5, 33, 100])
    assert nodes_to_keep(n, 0.5).tolist() == [0, 1, 1, 2, 3, 17, 50]
    assert nodes_to_keep(n, 0.01).tolist() == [0, 1, 1, 1, 1, 1, 1]
    # 0.13 * 100 is 13.000000000000002 in floating point: still 13 nodes, not 14.
    assert nodes_to_keep(n, 0.13).tolist() == [0, 1, 1, 1, 1, 5, 13]
    assert nodes_to_keep(n, 1.0).tolist() == n.tolist()


def test_topk_per_graph_exact(device):
    # Graph 0 has 3 nodes, graph 1 has 5 (sorted batch vector).
    score = torch.tensor([0.1, 0.9, 0.5, 0.3, -1.0, 2.0, 0.7, 0.0], device=device)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1], device=device)
    # ceil(0.5 * 3) = 2, ceil(0.5 * 5) = 3; highest score first within each graph.
    assert topk_per_graph(score, batch, 2, 0.5).tolist() == [1, 2, 5, 6, 3]
    assert topk_per_graph(score, batch, 2, 0.1).tolist() == [1, 5]
    assert topk_per_graph(score, batch, 2, 1.0).tolist() == [1, 2, 0, 5, 6, 3, 7, 4]


def test_topk_empty_graph_in_the_middle():
    score = torch.tensor([1.0, 2.0, 3.0])
    batch = torch.tensor([0, 0, 2])  # graph 1 has no nodes
    assert topk_per_graph(score, batch, 3, 0.5).tolist() == [1, 2]


def test_filter_edges_reindexes_and_keeps_types(device):
    ei = torch.tensor([[0, 1, 2, 3, 4, 4], [1, 2, 3, 4, 0, 2]], device=device)
    et = torch.tensor([5, 6, 7, 8, 9, 10], device=device)
    perm = torch.tensor([4, 2, 0], device=device)  # new ids: 4 -> 0, 2 -> 1, 0 -> 2
    new_ei, new_et = filter_edges(ei, et, perm, 5)
    assert new_ei.tolist() == [[0, 0], [2, 1]]
    assert new_et.tolist() == [9, 10]


def _score_is_first_feature(pool: WhyPool) -> None:
    with torch.no_grad():
        pool.score.weight.zero_()
        pool.score.root.zero_()
        pool.score.root[0, 0] = 1.0
        pool.score.bias.zero_()


def test_why_pool_exact(device):
    pool = WhyPool(2, num_relations=3, ratio=0.5).to(device)
    _score_is_first_feature(pool)
    x = torch.tensor([[0.1, 1.0], [0.9, 2.0], [0.5, 3.0], [0.3, 4.0], [2.0, 5.0]], device=device)
    batch = torch.tensor([0, 0, 0, 1, 1], device=device)
    ei = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 1, 4, 3]], device=device)
    et = torch.tensor([0, 1, 2, 1, 0], device=device)
    out = pool(x, ei, et, batch, num_graphs=2)
    assert out.perm.tolist() == [1, 2, 4]
    assert out.batch.tolist() == [0, 0, 1]
    torch.testing.assert_close(out.x, x[[1, 2, 4]] * torch.tanh(x[[1, 2, 4], :1]))
    assert out.edge_index.tolist() == [[0, 1], [1, 0]]  # 1->2 and 2->1; node 3 dropped
    assert out.edge_type.tolist() == [1, 2]
    assert out.plan.num_nodes == 3 and out.plan.edge_index is out.edge_index


def test_why_pool_score_gets_gradient(device):
    pool = WhyPool(8, num_relations=4, ratio=0.5).to(device)
    x = torch.randn(20, 8, device=device, requires_grad=True)
    ei = torch.randint(0, 20, (2, 60), device=device)
    et = torch.randint(0, 4, (60,), device=device)
    batch = torch.arange(20, device=device) // 7
    pool(x, ei, et, batch, 3).x.sum().backward()
    for name, p in pool.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_errors_name_the_class():
    with pytest.raises(ValueError, match="WhyPool"):
        WhyPool(4, 2, ratio=0.0)
    pool = WhyPool(4, 2)
    with pytest.raises(ValueError, match="WhyPool"):
        pool(torch.randn(3, 4), torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
             torch.zeros(2, dtype=torch.long), 1)


def test_why_pool_gradcheck_without_ties(device):
    # float64, random features: the scores are far apart compared with gradcheck's eps, so the
    # selection is locally constant and the kept features are smooth in x and the scorer.
    pool = WhyPool(4, num_relations=3, ratio=0.5).to(device).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 4, generator=g, dtype=torch.float64).to(device).requires_grad_()
    ei = torch.randint(0, 9, (2, 20), generator=g).to(device)
    et = torch.randint(0, 3, (20,), generator=g).to(device)
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1], device=device)
    params = (pool.score.weight, pool.score.root, pool.score.bias)

    def pooled(x, weight, root, bias):
        out = torch.func.functional_call(pool, {"score.weight": weight, "score.root": root, "score.bias": bias},
                                         (x, ei, et, batch, 2))
        return out.x, out.score

    assert torch.autograd.gradcheck(pooled, (x, *[p.detach().clone().requires_grad_() for p in params]))
