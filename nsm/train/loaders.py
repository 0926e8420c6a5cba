"""DataLoaders whose batch order is a pure function of ``(seed, epoch)``.

The training permutation of epoch ``e`` comes from a fresh ``torch.Generator`` seeded with
``seed * 1000003 + e``, never from the global RNG stream, so a run resumed at epoch ``e`` sees
exactly the batches an uninterrupted run would, whatever happened before. Each loader also gets
its own generator for the worker base seed, which otherwise would be drawn from (and advance)
the global torch RNG that dropout uses.

Batches are whole index lists (``batch_size=None`` + a batch sampler): the dataset collates a
batch in one vectorised call instead of per-graph ``__getitem__`` and a Python ``collate_fn``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from nsm.spec import DataLoaderSpec

EPOCH_SEED_STRIDE = 1_000_003


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * EPOCH_SEED_STRIDE + epoch)


class EpochBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices, ``batch_size`` at a time, shuffled per epoch if asked.

    Args:
        indices: the graph indices of this split.
        batch_size: graphs per batch (the last batch may be smaller).
        shuffle: permute with :func:`epoch_generator` (``seed``, ``epoch``) every epoch.
        seed: the run's seed.
    """

    def __init__(self, indices: Tensor, batch_size: int, shuffle: bool = False, seed: int = 0):
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Batches of ``epoch``; the first ``skip`` are left out (an interrupted epoch resumed)."""
        self.epoch = epoch
        self.skip = skip

    def __len__(self) -> int:
        return max(0, (self.indices.numel() + self.batch_size - 1) // self.batch_size - self.skip)

    def __iter__(self) -> Iterator[list[int]]:
        idx = self.indices
        if self.shuffle:
            idx = idx[torch.randperm(idx.numel(), generator=epoch_generator(self.seed, self.epoch))]
        for chunk in idx.split(self.batch_size)[self.skip:]:
            yield chunk.tolist()


def default_num_workers(limit: int = 4) -> int:
    """Workers for ``numWorkers: null``: one per CPU this process may run on, at most ``limit``.

    torch warns when a DataLoader has more workers than that (e.g. 4 on a 2-core machine).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cpus = os.cpu_count() or 1
    return min(limit, cpus)


def make_loader(
    dataset: torch.utils.data.Dataset,
    sampler: EpochBatchSampler,
    cfg: DataLoaderSpec,
    device: torch.device,
    seed: int,
) -> DataLoader:
    """A DataLoader over ``dataset`` honouring ``spec.dataLoader`` where it applies on ``device``."""
    workers = cfg.num_workers if cfg.num_workers is not None else default_num_workers()
    kwargs: dict = {}
    if workers > 0:
        kwargs["persistent_workers"] = cfg.persistent_workers
        kwargs["prefetch_factor"] = cfg.prefetch_factor
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        pin_memory=cfg.pin_memory and device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )
