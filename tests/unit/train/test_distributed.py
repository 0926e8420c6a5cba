"""Data-parallel pieces that need no second process: sharding, the loss-weight rule, exit codes.

The 2-process (gloo) runs are in ``tests/unit/cli/test_ddp_subprocess.py``.
"""

from __future__ import annotations

import pytest
import torch

from nsm.contract import MASTER_ADDR_ENV, MASTER_PORT_ENV, NODE_RANK_ENV, RENDEZVOUS_PORT
from nsm.data import BatchedGraphDataset
from nsm.spec import SpecError
from nsm.train.device import AmpPolicy
from nsm.train.distributed import ShardedBatchSampler, check_batch_size
from nsm.train.launcher import exit_code_of, rendezvous
from nsm.train.loaders import EpochBatchSampler
from nsm.train.loop import StepContext, _loss

from .conftest import make_training
from .standin import synthetic_dataset, tiny_model_factory


@pytest.mark.parametrize(("n", "batch", "world"), [(50, 8, 2), (47, 6, 3), (14, 6, 3), (13, 4, 4)])
def test_rank_batches_partition_the_single_process_batches(n, batch, world):
    single = EpochBatchSampler(torch.arange(n), batch, shuffle=True, seed=5)
    ranks = [ShardedBatchSampler(torch.arange(n), batch, r, world, shuffle=True, seed=5) for r in range(world)]
    for epoch in (1, 2):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        per_rank = [list(r) for r in ranks]
        for k, global_batch in enumerate(single):
            counts = [r.plan(k)[0] for r in ranks]
            assert {r.plan(k)[1] for r in ranks} == {len(global_batch)}
            assert sum(counts) == len(global_batch) and max(counts) - min(counts) <= 1
            # The union, in rank order, is the single-process batch; an empty slice gets a stand-in.
            real = [i for r in range(world) for i in per_rank[r][k][:counts[r]]]
            assert real == global_batch
            for r in range(world):
                assert len(per_rank[r][k]) == max(counts[r], 1)
        assert all(len(p) == len(single) for p in per_rank)


def test_resumed_epoch_skips_the_same_steps_on_every_rank():
    ranks = [ShardedBatchSampler(torch.arange(40), 8, r, 2, shuffle=True, seed=1) for r in range(2)]
    for r in ranks:
        r.set_epoch(3)
    full = [list(r) for r in ranks]
    for r in ranks:
        r.set_epoch(3, skip=2)
    assert [list(r) for r in ranks] == [f[2:] for f in full]


def _flat_grad(model, batch, ctx, scale):
    model.zero_grad()
    loss, _ = _loss(model, batch, ctx)
    (loss * scale).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("world", [2, 3])
def test_weighted_rank_gradients_average_to_the_single_process_gradient(world):
    """DDP's mean of the ranks' gradients, each rank's loss scaled by n_r * W / b (the loop's
    ``loss_scale``), is the gradient of the global batch's mean loss — also for the ragged last
    batch and for a rank that batch leaves empty (its stand-in graph has weight 0).

    The stand-in model has no batch-coupled op, dropout 0 and cycle weight 0, so the equality is
    exact up to float32 rounding (1e-5 relative); see docs/distributed.md for the real model.
    """
    data = synthetic_dataset(num_graphs=2 * 6 * world + 2)  # last batch: 2 graphs (< W when W=3)
    spec = make_training(model={"dropout": 0.0}).spec
    model = tiny_model_factory(data, spec)
    ctx = StepContext(torch.device("cpu"), AmpPolicy("cpu", None), cycle_weight=0.0)
    ds = BatchedGraphDataset(data.store, torch.arange(len(data.store)))
    n, batch = len(ds), 6 * world // 2 * 2  # divisible by world
    single = EpochBatchSampler(torch.arange(n), batch, shuffle=True, seed=3)
    ranks = [ShardedBatchSampler(torch.arange(n), batch, r, world, shuffle=True, seed=3) for r in range(world)]
    for s in (single, *ranks):
        s.set_epoch(1)
    for k, (global_batch, *shards) in enumerate(zip(single, *ranks)):
        ref = _flat_grad(model, ds[global_batch], ctx, 1.0)
        parts = []
        for r, shard in enumerate(shards):
            n_r, b = ranks[r].plan(k)
            parts.append(_flat_grad(model, ds[shard], ctx, n_r * world / b))
        mean = torch.stack(parts).mean(0)
        assert torch.allclose(mean, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max())), k


def test_batch_size_must_divide_by_the_world_size():
    check_batch_size(64, 4)
    with pytest.raises(SpecError, match=r"spec.batchSize: 6 is not divisible by the world size 4"):
        check_batch_size(6, 4)


@pytest.mark.parametrize(("failures", "code"), [
    ({1: 3, 0: 143}, 3),       # a diverged rank wins over the others' SIGTERM
    ({0: 143, 1: -15}, 143),  # killed by SIGTERM counts as 128 + 15
    ({2: 2}, 2),
    ({0: 1, 1: 143}, 1),      # rank 0's code when no rank has a non-retryable one
    ({3: -9}, 137),
    ({}, 1),
])
def test_launcher_exit_code_is_the_workers_protocol_code(failures, code):
    assert exit_code_of(failures) == code


def test_rendezvous_from_the_contract_environment():
    assert rendezvous({}) == ("127.0.0.1", RENDEZVOUS_PORT, 0)
    env = {MASTER_ADDR_ENV: "t-a1-0.t", MASTER_PORT_ENV: "29999", NODE_RANK_ENV: "3"}
    assert rendezvous(env) == ("t-a1-0.t", 29999, 3)
