import pytest
import torch
import torch.nn.functional as F

from nsm.data.graph import GraphStore
from nsm.model import NSMConfig, NSMModel, NSMOutput


def _has_path(ei: torch.Tensor, et: torch.Tensor) -> bool:
    """Is there a -[0]-> b -[1]-> c ?"""
    mids = set(ei[1, et == 0].tolist())
    return any(s in mids for s in ei[0, et == 1].tolist())


def path_dataset(num_graphs: int = 32, seed: int = 0) -> GraphStore:
    """Balanced graphs labelled by the presence of a typed 2-hop path; constant node features."""
    g = torch.Generator().manual_seed(seed)
    graphs, labels, want = [], [], {0: num_graphs // 2, 1: num_graphs - num_graphs // 2}
    while len(graphs) < num_graphs:
        n = int(torch.randint(8, 13, (1,), generator=g))
        e = 2 * n
        ei = torch.randint(0, n, (2, e), generator=g)
        et = torch.randint(0, 4, (e,), generator=g)
        y = int(_has_path(ei, et))
        if want[y] > 0:
            want[y] -= 1
            graphs.append((torch.zeros(n, 1, dtype=torch.long), ei, et))
            labels.append(y)
    return GraphStore.from_graphs(graphs, labels)


def _random_batch(num_graphs=6, vocab=(5, 3), num_relations=4, device="cpu"):
    g = torch.Generator().manual_seed(1)
    graphs = []
    for i in range(num_graphs):
        n = 1 if i == 0 else int(torch.randint(5, 20, (1,), generator=g))  # include a 1-node graph
        e = 0 if i == 0 else 2 * n
        x = torch.stack([torch.randint(0, v, (n,), generator=g) for v in vocab], dim=1)
        graphs.append((x, torch.randint(0, n, (2, e), generator=g), torch.randint(0, num_relations, (e,), generator=g)))
    store = GraphStore.from_graphs(graphs, [i % 2 for i in range(num_graphs)])
    return store.collate(torch.arange(num_graphs)).to(device)


def test_config_defaults_and_round_trip():
    cfg = NSMConfig(feature_vocab=[5, 3], num_relations=12)
    assert (cfg.num_classes, cfg.hidden_dim, cfg.num_bases, cfg.pool_ratio, cfg.dropout) == (2, 64, None, 0.5, 0.1)
    assert (cfg.l1_layers, cfg.coarse_layers, cfg.l1_cycle_weight, cfg.l2_cycle_weight) == (3, 1, 0.7, 0.3)
    assert cfg.bases == 8 and NSMConfig(feature_vocab=[2], num_relations=3).bases == 3
    d = cfg.to_dict()
    assert d["feature_vocab"] == [5, 3] and d["num_bases"] is None
    assert NSMConfig.from_dict(d) == cfg


@pytest.mark.parametrize(
    "field,value",
    [("num_relations", 0), ("pool_ratio", 1.5), ("dropout", 1.0), ("hidden_dim", 0), ("num_bases", 0), ("l1_layers", 0)],
)
def test_config_errors_name_the_field(field, value):
    kwargs = {"feature_vocab": [4], "num_relations": 3, field: value}
    with pytest.raises(ValueError, match=f"NSMConfig.{field}"):
        NSMConfig(**kwargs)
    with pytest.raises(ValueError, match="NSMConfig.feature_vocab"):
        NSMConfig(feature_vocab=[], num_relations=3)
    with pytest.raises(ValueError, match="unknown fields"):
        NSMConfig.from_dict({"feature_vocab": [4], "num_relations": 3, "width": 9})


def test_forward_shapes_losses_and_gradients(device):
    batch = _random_batch(device=device)
    model = NSMModel(NSMConfig(feature_vocab=[5, 3], num_relations=4, hidden_dim=16)).to(device)
    out = model(batch)
    assert isinstance(out, NSMOutput)
    assert out.logits.shape == (6, 2)
    for loss in (out.cycle_loss, out.cycle_loss_l1, out.cycle_loss_l2):
        assert loss.dim() == 0 and torch.isfinite(loss)
    torch.testing.assert_close(out.cycle_loss, 0.7 * out.cycle_loss_l1 + 0.3 * out.cycle_loss_l2)
    (F.cross_entropy(out.logits, batch.y) + out.cycle_loss).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bf16_autocast_finite(device):
    batch = _random_batch(device=device)
    model = NSMModel(NSMConfig(feature_vocab=[5, 3], num_relations=4, hidden_dim=16)).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = model(batch)
        loss = F.cross_entropy(out.logits.float(), batch.y) + out.cycle_loss
    loss.backward()
    assert torch.isfinite(out.logits.float()).all() and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_fp16_autocast_cuda():
    batch = _random_batch(device="cuda")
    model = NSMModel(NSMConfig(feature_vocab=[5, 3], num_relations=4, hidden_dim=16)).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        out = model(batch)
    assert torch.isfinite(out.logits.float()).all() and torch.isfinite(out.cycle_loss)


def test_eval_is_deterministic():
    batch = _random_batch()
    model = NSMModel(NSMConfig(feature_vocab=[5, 3], num_relations=4, hidden_dim=16)).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch).logits, model(batch).logits)


def test_overfits_typed_two_hop_path(device):
    store = path_dataset(32)
    batch = store.collate(torch.arange(32)).to(device)
    model = NSMModel(NSMConfig(feature_vocab=[1], num_relations=4, hidden_dim=32, dropout=0.0)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(200):
        opt.zero_grad()
        out = model(batch)
        (F.cross_entropy(out.logits, batch.y) + 0.01 * out.cycle_loss).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(batch).logits.argmax(1) == batch.y).float().mean().item()
    assert acc == 1.0


def test_multi_hot_embedding_equals_embedding_bag():
    model = NSMModel(NSMConfig(feature_vocab=[5, 3], num_relations=4, hidden_dim=16))
    assert model._multi_hot
    x = torch.tensor([[0, 2], [4, 0], [3, 1]])
    torch.testing.assert_close(model.embed_nodes(x), model.embed(x + model.feature_offsets))
    big = NSMModel(NSMConfig(feature_vocab=[300, 3], num_relations=4, hidden_dim=16))
    assert not big._multi_hot and big.embed_nodes(x).shape == (3, 16)


def test_mean_max_readout_exact(device):
    from nsm.model.readout import MeanMaxReadout

    x = torch.tensor([[1.0, -2.0], [3.0, 4.0], [5.0, 6.0]], device=device)
    batch = torch.tensor([0, 0, 2], device=device)  # graph 1 is empty
    out = MeanMaxReadout()(x, batch, 3)
    expected = torch.tensor([[2.0, 1.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [5.0, 6.0, 5.0, 6.0]], device=device)
    torch.testing.assert_close(out, expected)
