"""The lean training step (issue #17) computes what the step before it computed.

The reference below is the step as it was: one readout per level with a per-graph
``torch.amax``, each R-GCN layer combining its own relation weights, dropout with a
``bool -> float`` mask, PyTorch's per-tensor AdamW, ``zero_grad(set_to_none=True)`` and
``clip_grad_norm_``. Both steps draw the same dropout masks from the same RNG state, so logits,
gradients and updated parameters must agree up to float rounding.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from nsm.data.graph import GraphStore
from nsm.model import NSMConfig, NSMModel
from nsm.spec import parse_spec
from nsm.train.device import amp_policy
from nsm.train.loop import StepContext, optimizer_gradients, train_step
from nsm.train.optim import make_adamw

CYCLE_WEIGHT = 0.5
CLIP = 0.05  # small enough that clipping acts


def _batch(num_graphs=12, vocab=(5, 3), num_relations=4):
    g = torch.Generator().manual_seed(7)
    graphs = []
    for _ in range(num_graphs):
        n = int(torch.randint(6, 30, (1,), generator=g))
        e = 2 * n
        x = torch.stack([torch.randint(0, v, (n,), generator=g) for v in vocab], dim=1)
        graphs.append((x, torch.randint(0, n, (2, e), generator=g), torch.randint(0, num_relations, (e,), generator=g)))
    return GraphStore.from_graphs(graphs, [i % 2 for i in range(num_graphs)]).collate(torch.arange(num_graphs))


def _old_dropout(x, p, training):
    if not training or p == 0.0:
        return x
    threshold = min(255, max(1, round(p * 256)))
    n = x.numel()
    bits = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    keep = bits.view(torch.uint8)[:n].view(x.shape) >= threshold
    return x * (keep.to(x.dtype) * (256.0 / (256 - threshold)))


def _old_readout(x, batch, num_graphs):
    rows = []
    for g in range(num_graphs):
        xs = x[batch == g]
        rows.append(torch.cat([xs.mean(0), torch.amax(xs, dim=0)]) if xs.numel() else x.new_zeros(2 * x.size(1)))
    return torch.stack(rows)


def _old_forward(model, batch):
    def encode(encoder, x, plan):
        for conv in encoder.convs:
            x = _old_dropout(conv(x, plan=plan, weight=conv.relation_weight()).relu(), encoder.dropout, model.training)
        return x

    def unpool(what, x, perm, plan):
        h = what.conv(what.unpool(x, perm, plan.num_nodes), plan=plan, weight=what.conv.relation_weight()).relu()
        h = _old_dropout(h, what.dropout, model.training)
        return h, what.recon(h)

    from nsm.model.rgcn import build_edge_plan
    from nsm.model.unpool import cycle_loss

    b, vec = batch.num_graphs, batch.batch
    plan1 = build_edge_plan(batch.edge_index, batch.edge_type, batch.x.size(0), model.config.num_relations)
    h1 = encode(model.enc1, model.embed_nodes(batch.x), plan1)
    p2 = model.why1(h1, batch.edge_index, batch.edge_type, vec, b, plan=plan1)
    h2 = encode(model.enc2, p2.x, p2.plan)
    p3 = model.why2(h2, p2.edge_index, p2.edge_type, p2.batch, b, plan=p2.plan)
    h3 = encode(model.enc3, p3.x, p3.plan)
    d2, rec2 = unpool(model.what2, h3, p3.perm, p2.plan)
    d1, rec1 = unpool(model.what1, d2, p2.perm, plan1)
    levels = [(h1, vec), (d1, vec), (h2, p2.batch), (h3, p3.batch)]
    logits = model.classifier(torch.cat([_old_readout(h, g, b) for h, g in levels], dim=1))
    cycle = model.config.l1_cycle_weight * cycle_loss(rec1, h1) + model.config.l2_cycle_weight * cycle_loss(rec2, h2)
    return logits, cycle


def test_lean_step_equals_the_reference_step():
    torch.manual_seed(0)
    model = NSMModel(NSMConfig(feature_vocab=[5, 3], num_relations=4, hidden_dim=16, dropout=0.1))
    reference = copy.deepcopy(model)
    batch = _batch()
    spec = parse_spec({"domain": "causal"})
    ctx = StepContext(torch.device("cpu"), amp_policy(spec, torch.device("cpu")), CYCLE_WEIGHT, gradient_clip=CLIP)
    optimizer = make_adamw(model.parameters(), lr=1e-2, weight_decay=0.01)
    ref_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.01, foreach=False)
    grads = optimizer_gradients(optimizer)
    model.train()
    reference.train()
    for step in range(2):  # the second step runs on first-step optimizer state
        torch.manual_seed(100 + step)
        loss, out = train_step(model, batch, optimizer, ctx.amp.make_scaler(), grads, ctx)
        torch.manual_seed(100 + step)
        ref_logits, ref_cycle = _old_forward(reference, batch)
        ref_loss = F.cross_entropy(ref_logits, batch.y) + CYCLE_WEIGHT * ref_cycle
        ref_optimizer.zero_grad(set_to_none=True)
        ref_loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), CLIP, foreach=False)
        torch.testing.assert_close(out.logits, ref_logits)
        torch.testing.assert_close(loss, ref_loss)
        for (name, p), r in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, r.grad, msg=lambda m, name=name: f"gradient of {name}: {m}")
        ref_optimizer.step()
        for (name, p), r in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p, r, msg=lambda m, name=name: f"{name} after step {step}: {m}")


def _syncs(fn) -> int:
    """Host synchronisations ``fn`` performs on CUDA (PyTorch's sync debug mode warns on each)."""
    import warnings

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in record)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host synchronisation is a CUDA notion")
def test_zeroing_clipping_and_the_optimizer_add_no_host_synchronisation():
    torch.manual_seed(0)
    model = NSMModel(NSMConfig(feature_vocab=[5, 3], num_relations=4, hidden_dim=16)).cuda()
    spec = parse_spec({"domain": "causal"})
    ctx = StepContext(torch.device("cuda"), amp_policy(spec, torch.device("cuda")), CYCLE_WEIGHT, gradient_clip=CLIP)
    optimizer = make_adamw(model.parameters(), lr=1e-3, weight_decay=0.0)
    grads = optimizer_gradients(optimizer)
    batch = _batch().to("cuda")

    def forward_backward():
        out = model(batch)
        (F.cross_entropy(out.logits, batch.y) + CYCLE_WEIGHT * out.cycle_loss).backward()

    def lean_step():
        train_step(model, batch, optimizer, ctx.amp.make_scaler(), grads, ctx)

    lean_step()  # warm-up: lazy optimizer state
    # The model's own synchronisations (the edge plans' layout sizes, the pools' masks) only.
    assert _syncs(lean_step) == _syncs(forward_backward)
