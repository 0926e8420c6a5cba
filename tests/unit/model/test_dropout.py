import pytest
import torch

from nsm.model.dropout import dropout


def test_identity_when_not_training_or_p_zero():
    x = torch.randn(10, 4)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_cpu_mask_rate_and_expectation(p):
    x = torch.ones(400, 250)
    y = dropout(x, p, training=True)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(round(p * 256) / 256, abs=0.01)
    assert y.mean().item() == pytest.approx(1.0, abs=0.02)
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 256 / (256 - round(p * 256))))


def test_gradient_is_masked_and_scaled():
    x = torch.ones(64, 8, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())


def test_bf16_and_odd_sizes():
    y = dropout(torch.ones(7, 3, dtype=torch.bfloat16), 0.1, training=True)
    assert y.dtype == torch.bfloat16 and y.shape == (7, 3)
