import pytest
import torch

from nsm.model.readout import MeanMaxReadout, segment_max


def _amax_reference(x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Per-graph ``torch.amax`` (whose backward splits the gradient evenly over ties)."""
    rows = [
        torch.amax(x[batch == g], dim=0) if bool((batch == g).any()) else x.new_zeros(x.size(1))
        for g in range(num_graphs)
    ]
    return torch.stack(rows)


def _untied(num_rows: int, num_cols: int, device) -> torch.Tensor:
    # A permutation scaled apart: no two entries are within gradcheck's eps of each other.
    return (torch.randperm(num_rows * num_cols, dtype=torch.float64) * 0.1).view(num_rows, num_cols).to(device)


def test_segment_max_gradcheck_without_ties(device):
    x = _untied(9, 4, device).requires_grad_()
    batch = torch.tensor([0, 0, 0, 1, 1, 3, 3, 3, 3], device=device)  # graph 2 is empty
    assert torch.autograd.gradcheck(lambda t: segment_max(t, batch, 4), (x,))


def test_mean_max_readout_gradcheck_without_ties(device):
    x = _untied(7, 3, device).requires_grad_()
    batch = torch.tensor([0, 0, 1, 1, 1, 2, 2], device=device)
    assert torch.autograd.gradcheck(lambda t: MeanMaxReadout()(t, batch, 3), (x,))


def test_negative_gradient_is_split_over_ties_not_multiplied(device):
    # torch.segment_reduce(x, "max") returns [-1, -1, 0] here: the tie takes the gradient twice.
    x = torch.tensor([[2.0], [2.0], [1.0]], device=device, requires_grad=True)
    segment_max(x, torch.zeros(3, dtype=torch.long, device=device), 1).backward(
        torch.tensor([[-1.0]], device=device)
    )
    torch.testing.assert_close(x.grad, torch.tensor([[-0.5], [-0.5], [0.0]], device=device))


@pytest.mark.parametrize("upstream", [1.0, -1.0, -3.5, 0.25])
@pytest.mark.parametrize(
    "column",
    [
        pytest.param([0.0, 0.0, 0.0, 0.0], id="all-zero"),
        pytest.param([1.5, 1.5, 1.5, 1.5], id="all-equal"),
        pytest.param([-2.0, -2.0, -2.0, -2.0], id="all-equal-negative"),
        pytest.param([0.0, 3.0, 3.0, -1.0], id="two-tied"),
        pytest.param([0.0, 0.0, 0.0, -1.0], id="relu-zeros-and-one-below"),
    ],
)
def test_tied_column_gradient_sums_to_upstream(device, column, upstream):
    x = torch.tensor(column, device=device).unsqueeze(1).requires_grad_()
    batch = torch.zeros(4, dtype=torch.long, device=device)
    out = segment_max(x, batch, 1)
    assert out.item() == max(column)
    out.backward(torch.full_like(out, upstream))
    tied = torch.tensor(column, device=device) == max(column)
    expected = torch.where(tied, upstream / tied.sum(), 0.0).unsqueeze(1)
    torch.testing.assert_close(x.grad, expected)
    torch.testing.assert_close(x.grad.sum(), torch.tensor(upstream, device=device))


def test_matches_amax_on_relu_features_with_random_upstream(device):
    # After a ReLU, whole columns of a graph are 0: the case the readout sees every step.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 16, generator=g).relu().round(decimals=1).to(device)
    x[:, :4] = 0.0
    batch = torch.randint(0, 5, (40,), generator=g).sort().values.to(device)
    upstream = torch.randn(5, 16, generator=g).to(device)  # both signs
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    torch.testing.assert_close(segment_max(a, batch, 5), _amax_reference(b, batch, 5))
    segment_max(a, batch, 5).backward(upstream)
    _amax_reference(b, batch, 5).backward(upstream)
    torch.testing.assert_close(a.grad, b.grad)
    per_graph = torch.zeros(5, 16, device=device).index_add_(0, batch, a.grad)
    torch.testing.assert_close(per_graph, upstream)


def test_unsorted_batch_and_empty_graph(device):
    x = torch.tensor([[1.0, 5.0], [4.0, -1.0], [2.0, 7.0]], device=device, requires_grad=True)
    batch = torch.tensor([2, 0, 2], device=device)  # graph 1 has no nodes
    out = segment_max(x, batch, 3)
    torch.testing.assert_close(out, torch.tensor([[4.0, -1.0], [0.0, 0.0], [2.0, 7.0]], device=device))
    out.backward(torch.ones_like(out))
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]], device=device))


def test_bf16_matches_float32(device):
    x = torch.randn(12, 4, device=device).relu()
    batch = torch.tensor([0] * 5 + [1] * 7, device=device)
    out = segment_max(x.bfloat16(), batch, 2)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), segment_max(x.bfloat16().float(), batch, 2))


def test_errors_name_the_function():
    with pytest.raises(ValueError, match="segment_max"):
        segment_max(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), 1)
