import pytest
import torch
from torch_geometric.nn import RGCNConv

from nsm.model.rgcn import RGCNLayer, build_edge_plan, choose_chunk_size


def _random_graph(n=40, e=150, r=5, c=16, device="cpu"):
    x = torch.randn(n, c, device=device)
    edge_index = torch.randint(0, n, (2, e), device=device)
    edge_type = torch.randint(0, r, (e,), device=device)
    return x, edge_index, edge_type


@pytest.mark.parametrize("num_bases", [None, 3])
@pytest.mark.parametrize("out_channels", [1, 8, 24])
@pytest.mark.parametrize("root_weight", [True, False])
def test_equals_pyg_rgcnconv(device, num_bases, out_channels, root_weight):
    x, ei, et = _random_graph(device=device)
    ref = RGCNConv(16, out_channels, 5, num_bases=num_bases, root_weight=root_weight).to(device)
    ours = RGCNLayer(16, out_channels, 5, num_bases=num_bases, root_weight=root_weight).to(device)
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x, ei, et), ref(x, ei, et), atol=1e-5, rtol=1e-5)


def test_both_paths_agree():
    x, ei, et = _random_graph(r=4, c=8)
    grouped = RGCNLayer(8, 2, 4)  # R * out = 8 <= 8: dense path
    assert grouped.dense
    other = RGCNLayer(8, 3, 4)
    assert not other.dense
    # The same weights through the other path.
    other.dense = True
    dense_out = other(x, ei, et)
    other.dense = False
    torch.testing.assert_close(other(x, ei, et), dense_out, atol=1e-5, rtol=1e-5)


def test_hand_built_mean_per_relation():
    # Node 2 receives two relation-0 edges (from 0 and 1) and one relation-1 edge (from 0).
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0], [5.0, 5.0]])
    ei = torch.tensor([[0, 1, 0], [2, 2, 2]])
    et = torch.tensor([0, 0, 1])
    layer = RGCNLayer(2, 2, num_relations=2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.stack([torch.eye(2), 2 * torch.eye(2)]))
        layer.root.copy_(10 * torch.eye(2))
    out = layer(x, ei, et)
    expected = torch.tensor([[10.0, 0.0], [0.0, 30.0], [50.0 + 0.5 + 2.0, 50.0 + 1.5]])
    torch.testing.assert_close(out, expected)


def test_plan_reuse_and_layout():
    x, ei, et = _random_graph(r=3)
    plan = build_edge_plan(ei, et, x.size(0), 3)
    counts = torch.bincount(et, minlength=3)
    assert plan.chunk_relation is None and plan.chunk_size == int(counts.max())  # balanced: 1 chunk each
    assert int((plan.slot_norm > 0).sum()) == et.numel()  # every edge in one slot, padding weighs 0
    layer = RGCNLayer(16, 8, 3, num_bases=2)
    torch.testing.assert_close(layer(x, plan=plan), layer(x, ei, et))


def test_choose_chunk_size_splits_a_dominant_relation():
    assert choose_chunk_size([0, 0]) == 0
    assert choose_chunk_size([100, 98, 97]) == 100
    size = choose_chunk_size([1401, 290, 64, 214])  # the causal domain's skew
    padded = size * sum(-(-n // size) for n in [1401, 290, 64, 214])
    assert padded < 1.25 * (1401 + 290 + 64 + 214)


@pytest.mark.parametrize("num_bases", [None, 2])
def test_skewed_relations_use_chunks_and_match_pyg(device, num_bases):
    n = 60
    ei = torch.randint(0, n, (2, 400), device=device)
    et = torch.cat([torch.zeros(300, dtype=torch.long), torch.randint(1, 5, (100,))]).to(device)
    et[:5] = 5  # relation 6 stays empty
    x = torch.randn(n, 16, device=device)
    plan = build_edge_plan(ei, et, n, 7)
    assert plan.chunk_relation is not None and plan.slot_src.numel() < 7 * 295
    assert int((plan.slot_norm > 0).sum()) == et.numel()
    ref = RGCNConv(16, 8, 7, num_bases=num_bases).to(device)
    ours = RGCNLayer(16, 8, 7, num_bases=num_bases).to(device)
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x, plan=plan), ref(x, ei, et), atol=1e-5, rtol=1e-5)


def test_no_edges(device):
    layer = RGCNLayer(4, 6, 3).to(device)
    x = torch.randn(5, 4, device=device)
    ei = torch.empty(2, 0, dtype=torch.long, device=device)
    et = torch.empty(0, dtype=torch.long, device=device)
    torch.testing.assert_close(layer(x, ei, et), x @ layer.root + layer.bias)


def test_gradients_reach_every_parameter(device):
    x, ei, et = _random_graph(device=device)
    x.requires_grad_(True)
    layer = RGCNLayer(16, 8, 5, num_bases=2).to(device)
    layer(x, ei, et).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bf16_autocast_finite(device):
    x, ei, et = _random_graph(device=device)
    layer = RGCNLayer(16, 8, 5, num_bases=2).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = layer(x, ei, et)
    assert torch.isfinite(out.float()).all()
    torch.testing.assert_close(out.float(), layer(x, ei, et), atol=0.1, rtol=0.05)


def test_errors_name_the_class():
    with pytest.raises(ValueError, match="RGCNLayer"):
        RGCNLayer(4, 4, 0)
    layer = RGCNLayer(4, 4, 2)
    with pytest.raises(ValueError, match="RGCNLayer"):
        layer(torch.randn(3, 5), torch.zeros(2, 1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="RGCNLayer"):
        layer(torch.randn(3, 4))
    plan = build_edge_plan(torch.zeros(2, 1, dtype=torch.long), torch.zeros(1, dtype=torch.long), 3, 5)
    with pytest.raises(ValueError, match="RGCNLayer"):
        layer(torch.randn(3, 4), plan=plan)


@pytest.mark.parametrize("out_channels", [1, 5])  # dense (scalar score) and grouped paths
def test_gradcheck_float64(device, out_channels):
    g = torch.Generator().manual_seed(0)
    layer = RGCNLayer(4, out_channels, num_relations=3, num_bases=2).to(device).double()
    x = torch.randn(7, 4, generator=g, dtype=torch.float64).to(device).requires_grad_()
    ei = torch.randint(0, 7, (2, 15), generator=g).to(device)
    et = torch.randint(0, 3, (15,), generator=g).to(device)
    names = [n for n, _ in layer.named_parameters()]

    def conv(x, *values):
        return torch.func.functional_call(layer, dict(zip(names, values)), (x, ei, et))

    inputs = (x, *[p.detach().clone().requires_grad_() for p in layer.parameters()])
    assert torch.autograd.gradcheck(conv, inputs)
