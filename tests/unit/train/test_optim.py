import pytest
import torch

from nsm.train.optim import FlatGradients, make_adamw

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _params(device="cpu"):
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (4,), (2, 2, 2), (1,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g).to(device)) for s in shapes]


def _loss(params):
    return sum((p * (i + 1)).pow(2).sum() for i, p in enumerate(params))


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_accumulate_into_the_flat_buffer_in_place(device):
    params = _params(device)
    grads = FlatGradients(params)
    assert len(grads.buffers) == 1 and grads.buffers[0].numel() == sum(p.numel() for p in params)
    for _ in range(2):  # the views survive zeroing and a second backward
        grads.zero_()
        _loss(params).backward()
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        torch.testing.assert_close(grads.buffers[0], flat)
        for i, p in enumerate(params):
            torch.testing.assert_close(p.grad, 2 * (i + 1) ** 2 * p.detach())
    grads.zero_()
    assert all(float(p.grad.abs().sum()) == 0.0 for p in params)


@pytest.mark.parametrize("max_norm", [1e-3, 1.0, 1e6])
def test_clip_matches_torch(max_norm):
    params, reference = _params(), _params()
    grads = FlatGradients(params)
    _loss(params).backward()
    _loss(reference).backward()
    norm = grads.clip_norm_(max_norm)
    expected = torch.nn.utils.clip_grad_norm_(reference, max_norm, foreach=False)
    torch.testing.assert_close(norm, expected)
    for p, r in zip(params, reference):
        torch.testing.assert_close(p.grad, r.grad)


def test_attach_after_set_to_none_keeps_the_gradient():
    params = _params()
    grads = FlatGradients(params)
    _loss(params).backward()
    before = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    _loss(params).backward()  # fresh gradient tensors outside the buffer
    grads.attach()
    for p, b in zip(params, before):
        assert p.grad.data_ptr() >= grads.buffers[0].data_ptr()
        torch.testing.assert_close(p.grad, b)


@pytest.mark.parametrize("device", DEVICES)
def test_adamw_is_fused_and_equals_the_per_tensor_loop(device):
    params, reference = _params(device), _params(device)
    opt = make_adamw(params, lr=0.01, weight_decay=0.1)
    ref = torch.optim.AdamW(reference, lr=0.01, weight_decay=0.1, foreach=False)
    assert opt.param_groups[0]["fused"] is True
    grads = FlatGradients(params)
    for _ in range(3):
        grads.zero_()
        ref.zero_grad(set_to_none=True)
        _loss(params).backward()
        _loss(reference).backward()
        opt.step()
        ref.step()
    for p, r in zip(params, reference):
        torch.testing.assert_close(p, r)


def test_resume_from_a_per_tensor_checkpoint_stays_fused():
    params, reference = _params(), _params()
    old = torch.optim.AdamW(reference, lr=0.01, foreach=False)
    _loss(reference).backward()
    old.step()
    opt = make_adamw(params, lr=0.01, weight_decay=0.0)
    opt.load_state_dict(old.state_dict())
    assert opt.param_groups[0]["fused"] is True and opt.param_groups[0]["foreach"] is None
    with torch.no_grad():
        for p, r in zip(params, reference):
            p.copy_(r)
    for opt_, ps in ((opt, params), (old, reference)):
        opt_.zero_grad()
        _loss(ps).backward()
        opt_.step()
    for p, r in zip(params, reference):
        torch.testing.assert_close(p, r)


def test_foreach_where_fusion_is_not_supported():
    opt = make_adamw([torch.nn.Parameter(torch.zeros(2, dtype=torch.float64, device="meta"))], 0.1, 0.0)
    assert opt.param_groups[0]["fused"] in (None, False) and opt.param_groups[0]["foreach"] is True
