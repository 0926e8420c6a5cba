"""Data-parallel training: one :class:`DistributedTrainer` per process, DistributedDataParallel.

The processes are started by :mod:`nsm.train.launcher` (``nsm train --nproc-per-node N --nnodes M``)
or by an external ``torchrun``; either way torch's launcher sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE`` and the rendezvous, and every process runs the same ``nsm train`` command.

Semantics (docs/distributed.md):

* **Sharding.** Every rank draws the single-process permutation of epoch ``e``
  (:func:`~nsm.train.loaders.epoch_generator` of ``(seed, e)``) and takes its contiguous slice
  of each global batch of ``spec.batchSize`` = B graphs, so the union of the ranks' step-k
  batches is the single-process batch k and each rank sees B/W graphs. B must be divisible by W.
* **Gradients.** DDP averages the ranks' gradients; each rank's loss is scaled by
  ``n_r * W / b`` (``n_r`` its graphs, ``b`` the global batch's), so the ragged last batch too
  gives the gradient of the global batch's mean cross-entropy. A rank the last batch leaves
  without graphs runs one stand-in graph with weight 0 (every rank must take part in every step).
  The cycle loss is a mean over each shard's nodes, so its gradient equals the single-process one
  in expectation, not bit for bit; dropout masks differ too (each rank has its own RNG stream).
* **Agreement.** Once per step the ranks all-reduce two flags over a gloo group (CPU, no device
  sync): a non-finite loss (CPU) and a stop signal. All ranks then diverge, or stop after the same
  step, together; on CUDA divergence is agreed once per epoch with the epoch's sums.
* **Validation.** Rank 0 evaluates the full validation split and broadcasts the metrics, so
  early stopping, the LR plateau and the divergence decision are identical on every rank.
* **Files.** Only rank 0 writes checkpoints, history, results, progress and tracking and serves
  metrics. Checkpoints record ``world_size`` and every rank's RNG state (and, mid-epoch, its
  partial sums), so a resume with the same world size is exact.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from nsm.spec import SpecError
from nsm.train import checkpoint as ckpt
from nsm.train.loaders import EPOCH_SEED_STRIDE, EpochBatchSampler
from nsm.train.trainer import Trainer

# torchrun / torch.distributed.run set these in every worker.
WORKER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


def worker_world_size() -> int:
    """WORLD_SIZE when this process is a worker of torch's launcher, else 0."""
    if not all(k in os.environ for k in WORKER_ENV):
        return 0
    return int(os.environ["WORLD_SIZE"])


def check_batch_size(batch_size: int, world_size: int) -> None:
    """spec.batchSize must split evenly over the ranks (each rank gets B/W graphs a step)."""
    if batch_size % world_size:
        raise SpecError([("spec.batchSize", (
            f"{batch_size} is not divisible by the world size {world_size} (--nproc-per-node x --nnodes); "
            f"each process trains on batchSize / world size graphs a step"))])


@dataclass
class Group:
    """This process's place in the process group, plus a gloo group for host-side agreement."""

    rank: int
    local_rank: int
    world_size: int
    control: Any  # a gloo ProcessGroup: CPU collectives that never synchronise the GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, diverged: bool, stop: bool) -> tuple[bool, bool]:
        flags = torch.tensor([int(diverged), int(stop)], dtype=torch.int32)
        dist.all_reduce(flags, group=self.control)
        return bool(flags[0]), bool(flags[1])

    def broadcast(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def reduce_sums(self, sums: Tensor, samples: int, finite: bool) -> tuple[Tensor, int, bool]:
        """Epoch-end reduction of the loop's running sums (one device sync an epoch)."""
        packed = torch.cat([sums.detach().double().cpu(), torch.tensor([float(samples), float(not finite)],
                                                                        dtype=torch.float64)])
        dist.all_reduce(packed, group=self.control)
        return packed[:-2], int(packed[-2]), not bool(packed[-1])


def init_group(device_option: str) -> tuple[Group, str]:
    """Join the process group torch's launcher set up; returns the group and this rank's device.

    NCCL with ``cuda:LOCAL_RANK`` when CUDA is used (``--device auto`` on a GPU machine, or
    ``cuda``), gloo on CPU.
    """
    rank, local_rank, world = (int(os.environ[k]) for k in WORKER_ENV)
    use_cuda = device_option.startswith("cuda") or (device_option == "auto" and torch.cuda.is_available())
    device = f"cuda:{local_rank}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo",
                                device_id=torch.device(device) if use_cuda else None)
    control = dist.new_group(backend="gloo") if use_cuda else dist.group.WORLD
    return Group(rank, local_rank, world, control), device


class ShardedBatchSampler(EpochBatchSampler):
    """This rank's slice of every batch of the single-process :class:`EpochBatchSampler`.

    Global batch k (``b`` graphs, ``b = B`` except for the last) is cut into ``W`` slices whose
    sizes differ by at most one; rank r takes slice r. A rank whose slice is empty gets the
    batch's first graph as a stand-in (:meth:`plan` says it counts 0 graphs).
    """

    def __init__(self, indices: Tensor, batch_size: int, rank: int, world_size: int, shuffle: bool, seed: int):
        super().__init__(indices, batch_size, shuffle=shuffle, seed=seed)
        self.rank, self.world_size = rank, world_size

    def _bounds(self, global_n: int) -> tuple[int, int]:
        base, extra = divmod(global_n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def plan(self, step: int) -> tuple[int, int]:
        """(graphs of this rank, graphs of the global batch) at ``step`` (0-based, in the epoch)."""
        global_n = min(self.batch_size, self.indices.numel() - step * self.batch_size)
        start, stop = self._bounds(global_n)
        return stop - start, global_n

    def __iter__(self) -> Iterator[list[int]]:
        for batch in super().__iter__():
            start, stop = self._bounds(len(batch))
            yield batch[start:stop] or batch[:1]


class DistributedTrainer(Trainer):
    """:class:`~nsm.train.trainer.Trainer` as one rank of a DistributedDataParallel run."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.group, device = init_group(self.options.device)
        self.options.device = device
        self.world_size = self.group.world_size
        self.is_main = self.group.is_main
        if not self.is_main:
            self.options.quiet = True
            self.options.metrics_port = None

    def _setup(self) -> None:
        check_batch_size(self.spec.batch_size, self.world_size)
        if self.dataset is None:  # rank 0 generates and caches the dataset; the others read the cache
            if self.is_main:
                self._load_dataset()
            dist.barrier(group=self.group.control)
        super()._setup()
        g = self.group
        # Dropout: its own stream per rank (the weights were initialised alike before this).
        torch.manual_seed(self._rank_seed())
        from torch.nn.parallel import DistributedDataParallel as DDP

        # No BatchNorm-like layer in the model (its only buffer is constant), so no SyncBatchNorm
        # and no buffer broadcast; every parameter gets a gradient every step (FlatGradients'
        # note), so no find_unused_parameters scan.
        self.train_model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                               forward_sync_buffers=False)
        self.ctx.shard = self.loaders["train"].sampler
        self.ctx.agree = g.agree
        self.ctx.reduce = g.reduce_sums

    def _rank_seed(self, offset: int = 0) -> int:
        """This rank's own dropout stream (``offset``: the epoch a resharded resume starts in)."""
        return self.spec.seed * EPOCH_SEED_STRIDE + 7_919 * self.group.rank + offset

    def _sampler(self, split: str, indices: Tensor) -> EpochBatchSampler:
        if split != "train":  # validation and test run on rank 0 over the whole split
            return super()._sampler(split, indices)
        return ShardedBatchSampler(indices, self.spec.batch_size, self.group.rank, self.world_size,
                                   shuffle=True, seed=self.spec.seed)

    # --------------------------------------------------------------- checkpoints
    def _checkpoint_state(self) -> dict[str, Any]:
        rngs = self.group.gather(ckpt.capture_rng_state())  # collective: every rank calls it
        return {**super()._checkpoint_state(), "rng_ranks": rngs}

    def _save_interrupted(self, partial: Any) -> None:
        partials = self.group.gather(partial.state_dict())
        state = self._checkpoint_state()
        if self.is_main:
            self.ckpts.save_last({**state, "partial_epoch": partial.state_dict(), "partial_epoch_ranks": partials})
            self.log(f"checkpoint {self.ckpts.last_path}: epoch {partial.epoch} after {partial.steps} steps")

    def _resume(self) -> None:
        """Rank 0 reads the checkpoint (others may not see the volume) and broadcasts it."""
        state, path, error = None, None, None
        if self.is_main:
            try:
                path = self._resume_path()
                state = self._read_checkpoint(path) if path is not None else None
            except Exception as exc:  # noqa: BLE001 - every rank stops below, none waits for rank 0
                error = exc
        path, state, failed = self.group.broadcast((path, state, None if error is None else str(error)))
        if error is not None:
            raise error
        if failed is not None:
            raise RuntimeError(f"rank 0 could not read the checkpoint: {failed}")
        if state is not None:
            self._apply_checkpoint(path, state)

    def _apply_checkpoint(self, path: Any, state: dict[str, Any]) -> None:
        super()._apply_checkpoint(path, state)
        ranks = state.get("partial_epoch_ranks")
        if self.ctx.resume is not None and ranks and len(ranks) == self.world_size:
            from nsm.train.preemption import PartialEpoch

            self.ctx.resume = PartialEpoch.from_state(ranks[self.group.rank])

    def _restore_rng(self, state: dict[str, Any], resharded: bool) -> None:
        ranks = state.get("rng_ranks")
        if ranks and not resharded:
            ckpt.restore_rng_state(ranks[self.group.rank])
            return
        ckpt.restore_rng_state(state["rng"])
        torch.manual_seed(self._rank_seed(state["epoch"]))

    # --------------------------------------------------------------- epochs
    def _validate(self) -> dict[str, Any]:
        return self.group.broadcast(super()._validate() if self.is_main else None)

    def _publish_epoch(self, row: dict[str, Any], improved: bool) -> None:
        if self.is_main:
            super()._publish_epoch(row, improved)
        else:
            self._checkpoint_state()  # its RNG gather is a collective

    def _stop_before_epoch(self) -> bool:
        return self.group.agree(False, super()._stop_before_epoch())[1]

    # --------------------------------------------------------------- observers and results
    def _start_observers(self) -> None:
        if self.is_main:
            super()._start_observers()

    def _results(self, status: str, stop_reason: str, started: float, resumed_from: int) -> dict[str, Any]:
        if self.is_main:
            return super()._results(status, stop_reason, started, resumed_from)
        return {"status": status, "stop_reason": stop_reason}

    def _finish(self, results: dict[str, Any]) -> None:
        if self.is_main:
            super()._finish(results)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
