import pytest
import torch
import torch.nn.functional as F

from nsm.model.rgcn import build_edge_plan
from nsm.model.unpool import WhatUnpool, cycle_loss


def test_unpool_puts_features_back_in_their_slots(device):
    up = WhatUnpool(2, 2, num_relations=2).to(device)
    with torch.no_grad():
        up.fill.copy_(torch.tensor([-1.0, -2.0]))
    coarse = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], device=device)
    perm = torch.tensor([4, 0, 2], device=device)
    out = up.unpool(coarse, perm, 5)
    expected = torch.tensor([[2.0, 2.0], [-1.0, -2.0], [3.0, 3.0], [-1.0, -2.0], [1.0, 1.0]], device=device)
    torch.testing.assert_close(out, expected)


def test_forward_shapes_and_gradients(device):
    up = WhatUnpool(8, 8, num_relations=3, num_bases=2).to(device)
    ei = torch.randint(0, 10, (2, 30), device=device)
    et = torch.randint(0, 3, (30,), device=device)
    plan = build_edge_plan(ei, et, 10, 3)
    coarse = torch.randn(5, 8, device=device, requires_grad=True)
    h, rec = up(coarse, torch.tensor([1, 3, 5, 7, 9], device=device), plan)
    assert h.shape == (10, 8) and rec.shape == (10, 8)
    (h.sum() + rec.sum()).backward()
    for name, p in up.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert coarse.grad.abs().sum() > 0


def test_cycle_loss_target_is_normalised_and_detached():
    enc = torch.randn(6, 8, requires_grad=True)
    target = F.layer_norm(enc.detach(), (8,))
    assert cycle_loss(target, enc).item() == pytest.approx(0.0, abs=1e-10)
    # Shrinking the encoder does not shrink the target: no collapse to zero.
    assert cycle_loss(torch.zeros(6, 8), 0.1 * enc).item() == pytest.approx(1.0, rel=1e-2)
    rec = torch.zeros(6, 8, requires_grad=True)
    cycle_loss(rec, enc).backward()
    assert enc.grad is None and rec.grad.abs().sum() > 0


def test_errors_name_the_class():
    up = WhatUnpool(4, 4, 2)
    with pytest.raises(ValueError, match="WhatUnpool"):
        up.unpool(torch.randn(3, 5), torch.arange(3), 6)


def test_what_unpool_and_cycle_loss_gradcheck(device):
    up = WhatUnpool(3, 4, num_relations=2, num_bases=2).to(device).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # no zero fill or bias: a pre-activation exactly at ReLU's kink
        for p in up.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    ei = torch.randint(0, 6, (2, 12), generator=g).to(device)
    et = torch.randint(0, 2, (12,), generator=g).to(device)
    plan = build_edge_plan(ei, et, 6, 2)
    perm = torch.tensor([4, 0, 2], device=device)
    coarse = torch.randn(3, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    names = ["fill", "conv.weight", "conv.comp", "conv.root", "recon.weight"]
    params = {n: p for n, p in up.named_parameters() if n in names}
    target = torch.randn(6, 4, generator=g, dtype=torch.float64).to(device)

    def decoded(x, *values):
        h, rec = torch.func.functional_call(up, dict(zip(params, values)), (x, perm, plan))
        return h, rec, cycle_loss(rec, target)

    inputs = (coarse, *[p.detach().clone().requires_grad_() for p in params.values()])
    assert torch.autograd.gradcheck(decoded, inputs)
