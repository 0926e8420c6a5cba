"""Data-parallel scaling of the trainer's step on CPU: ``bench/throughput.py --world-size W``.

For every domain and repetition, in one run and in turn:

* ``single_1t``: one process, 1 torch thread, batch B (the per-core baseline);
* ``single_Wt``: one process, W torch threads, batch B (the same cores used by intra-op threads);
* ``ddp``: W gloo processes of 1 thread each, B/W graphs a rank, wrapped in DistributedDataParallel,
  with the trainer's per-step agreement all-reduce (:class:`nsm.train.distributed.Group`).

Graphs/s = B · steps / wall time (from a barrier before the first timed step to one after the last).
Scaling efficiency = ddp / (W · single_1t); ``ddp_over_threads`` = ddp / single_Wt answers the
practical question: for the same cores, do processes beat threads? Medians over the repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nsm.train.distributed import Group


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _global_batches(trainer: Any, batch_size: int, count: int) -> list[torch.Tensor]:
    train = trainer.splits["train"]
    g = torch.Generator().manual_seed(batch_size)
    return [train[torch.randperm(train.numel(), generator=g)[:batch_size]] for _ in range(count)]


def _time_steps(runner: Any, batches: list[Any], steps: int, warmup: int, barrier=lambda: None) -> float:
    for b in batches[:warmup]:
        runner.train(b)
    barrier()
    start = time.perf_counter()
    for i in range(steps):
        runner.train(batches[i % len(batches)])
    barrier()
    return time.perf_counter() - start


def _single(domain: str, args: argparse.Namespace, workdir: Path, threads: int) -> float:
    from throughput import StepRunner, trainer_for  # bench/ is on sys.path when run as a script

    torch.set_num_threads(threads)
    trainer = trainer_for(domain, args, workdir)
    store, b = trainer.dataset.store, trainer.spec.batch_size
    batches = [store.collate(idx) for idx in _global_batches(trainer, b, 8)]
    return b * args.steps / _time_steps(StepRunner(trainer, trainer.model), batches, args.steps, args.warmup)


def _worker(rank: int, world: int, port: int, domain: str, args: argparse.Namespace, workdir: Path) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from throughput import StepRunner, trainer_for

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        trainer = trainer_for(domain, args, workdir / f"rank{rank}")
        group = Group(rank, rank, world, dist.group.WORLD)
        trainer.ctx.agree = group.agree  # the per-step agreement DistributedTrainer does
        store, b = trainer.dataset.store, trainer.spec.batch_size
        per = b // world
        batches = [store.collate(idx[rank * per:(rank + 1) * per]) for idx in _global_batches(trainer, b, 8)]
        model = DDP(trainer.model, forward_sync_buffers=False)
        runner = StepRunner(trainer, model)  # an optimizer over the DDP module's (the same) parameters
        elapsed = _time_steps(runner, batches, args.steps, args.warmup, lambda: dist.barrier())
        if rank == 0:
            (workdir / "ddp.json").write_text(json.dumps({"seconds": elapsed}))
    finally:
        dist.destroy_process_group()


def _ddp(domain: str, args: argparse.Namespace, workdir: Path) -> float:
    (workdir / "ddp.json").unlink(missing_ok=True)
    mp.spawn(_worker, args=(args.world_size, _free_port(), domain, args, workdir), nprocs=args.world_size,
             join=True)
    seconds = json.loads((workdir / "ddp.json").read_text())["seconds"]
    return _batch_size(domain) * args.steps / seconds


def _batch_size(domain: str) -> int:
    from nsm.spec import parse_training

    return parse_training({"metadata": {"name": "b"}, "spec": {"domain": domain}}).spec.batch_size


def scaling(domain: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Medians (and all repetitions) of single_1t, single_Wt and ddp graphs/s for ``domain``."""
    w = args.world_size
    if _batch_size(domain) % w:
        raise SystemExit(f"{domain}: batch size {_batch_size(domain)} is not divisible by {w}")
    runs: dict[str, list[float]] = {"single_1t": [], f"single_{w}t": [], "ddp": []}
    for _ in range(args.repeats):
        runs["single_1t"].append(_single(domain, args, workdir, 1))
        runs[f"single_{w}t"].append(_single(domain, args, workdir, w))
        runs["ddp"].append(_ddp(domain, args, workdir))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "domain": domain, "world_size": w, "batch_size": _batch_size(domain),
        "steps": args.steps, "repeats": args.repeats, "graphs_per_second": med, "runs": runs,
        "scaling_efficiency": med["ddp"] / (w * med["single_1t"]),
        "ddp_over_threads": med["ddp"] / med[f"single_{w}t"],
    }


def print_scaling(r: dict[str, Any]) -> None:
    w = r["world_size"]
    print(f"\n== {r['domain']}: batch {r['batch_size']} ({r['batch_size'] // w} a rank), {r['steps']} steps, "
          f"median of {r['repeats']}")
    for name, gps in r["graphs_per_second"].items():
        spread = ", ".join(f"{x:,.0f}" for x in r["runs"][name])
        print(f"{name:<12}{gps:>10,.0f} graphs/s   [{spread}]")
    print(f"scaling efficiency ddp / ({w} x single_1t): {r['scaling_efficiency']:.2f}; "
          f"ddp / single_{w}t (same cores as threads): {r['ddp_over_threads']:.2f}")
