"""Training throughput of the trainer's own step, in graphs per second, per domain.

What is timed is :func:`nsm.train.loop.train_step`, set up by the trainer itself
(:class:`nsm.train.trainer.Trainer`): the domain's spec defaults, the training split's graphs,
the trainer's optimizer (fused AdamW), its AMP decision and gradient clipping. For every domain:

* ``graphs_per_second``: batch size / median step time;
* ``aten_ops_per_step``: aten ops dispatched by one step (a ``TorchDispatchMode`` counts them);
* ``ms_fixed_per_step``: the intercept of a least-squares fit of step time over batch sizes
  (16 … 256): the cost a step pays whatever its size (op dispatch, the optimizer);
* the same model with PyG's convolutions swapped in for every R-GCN layer, timed alike:
  ``materialised`` (:class:`torch_geometric.nn.FastRGCNConv`, an ``[E, H, H]`` weight per call,
  as the published NSM code) and ``rgcnconv`` (:class:`torch_geometric.nn.RGCNConv`, a loop
  over relations; every tenth round only).

Steps of all variants and batch sizes are interleaved (A, B, C, A, B, C, …) so background load
hits them alike; on a shared machine ``--clock cpu`` (process CPU time, use with
``--threads 1``) is steadier than the wall clock. Examples::

    python bench/throughput.py --threads 1 --clock cpu --steps 40 --json
    python bench/throughput.py --device cuda --json

``--world-size W`` measures data-parallel scaling on CPU instead (W gloo processes against one
process, see ``bench/ddp_scaling.py``)::

    python bench/throughput.py --world-size 2 --domains causal --steps 40 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsm.data.graph import GraphBatch  # noqa: E402
from nsm.model import RGCNLayer  # noqa: E402
from nsm.model.rgcn import EdgePlan  # noqa: E402
from nsm.spec import parse_training  # noqa: E402
from nsm.train.loop import optimizer_gradients, train_step  # noqa: E402
from nsm.train.schedule import make_optimizer  # noqa: E402
from nsm.train.trainer import RunOptions, Trainer  # noqa: E402

FIT_BATCH_SIZES = (16, 32, 64, 128, 256)


class _PyGConv(nn.Module):
    """Runs a PyG R-GCN convolution where an :class:`RGCNLayer` was (the calls the model makes)."""

    comp = None  # no basis combination ahead of the call: the PyG layer forms its own weights

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def relation_weight(self) -> None:
        return None

    def forward(self, x: torch.Tensor, edge_index=None, edge_type=None, plan: EdgePlan | None = None,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        if plan is not None:
            edge_index, edge_type = plan.edge_index, plan.edge_type
        return self.conv(x, edge_index, edge_type)


def swap_convs(model: nn.Module, conv_cls: type) -> nn.Module:
    """Replace every :class:`RGCNLayer` in ``model`` by ``conv_cls`` with the same shape/bases."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RGCNLayer):
                conv = conv_cls(child.in_channels, child.out_channels, child.num_relations, num_bases=child.num_bases)
                setattr(parent, name, _PyGConv(conv))
    return model


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


class Clock:
    """Wall clock (with a device synchronisation on CUDA) or process CPU time."""

    def __init__(self, kind: str, device: torch.device) -> None:
        self.cpu = kind == "cpu"
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.process_time() if self.cpu else time.perf_counter()


class StepRunner:
    """The trainer's step on one model: its optimizer, AMP policy, clipping and cycle weight."""

    def __init__(self, trainer: Trainer, model: nn.Module) -> None:
        self.trainer, self.model = trainer, model
        self.optimizer = trainer.optimizer if model is trainer.model else make_optimizer(model, trainer.spec)
        self.scaler = trainer.amp.make_scaler()
        self.grads = optimizer_gradients(self.optimizer)

    def train(self, batch: GraphBatch) -> None:
        self.model.train()
        train_step(self.model, batch, self.optimizer, self.scaler, self.grads, self.trainer.ctx)

    @torch.no_grad()
    def eval(self, batch: GraphBatch) -> None:
        self.model.eval()
        with self.trainer.amp.autocast():
            self.model(batch)


def trainer_for(domain: str, args: argparse.Namespace, workdir: Path) -> Trainer:
    """A trainer set up for ``domain`` at its spec defaults (``--set``-style overrides applied)."""
    spec: dict[str, Any] = {"domain": domain, "dataLoader": {"numWorkers": 0},
                            "optimization": {"amp": args.amp != "none"}}
    if args.amp != "none":
        spec["optimization"]["ampDtype"] = {"bf16": "bfloat16", "fp16": "float16"}[args.amp]
    training = parse_training({"metadata": {"name": f"bench-{domain}"}, "spec": spec})
    trainer = Trainer(training, RunOptions(output_dir=workdir / domain, device=args.device, quiet=True,
                                           data_cache=args.data_cache))
    trainer._setup()  # exactly what a run sets up: dataset, splits, model, optimizer, AMP, context
    return trainer


def training_batches(trainer: Trainer, batch_size: int, count: int, device: torch.device) -> list[GraphBatch]:
    """``count`` batches of ``batch_size`` graphs of the training split, drawn with a fixed seed."""
    train = trainer.splits["train"]
    g = torch.Generator().manual_seed(batch_size)
    store = trainer.dataset.store
    return [store.collate(train[torch.randperm(train.numel(), generator=g)[:batch_size]]).to(device)
            for _ in range(count)]


def count_ops(fn: Callable[[], None]) -> int:
    with OpCounter() as counter:
        fn()
    return sum(counter.ops.values())


def interleaved(jobs: dict[str, tuple[Callable, list[GraphBatch]]], steps: int, clock: Clock,
                every: dict[str, int]) -> dict[str, list[float]]:
    """Step times of every job, one step of each in turn; job ``k`` runs on every ``every[k]``-th round."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for i in range(steps):
        for name, (fn, batches) in jobs.items():
            if i % every.get(name, 1):
                continue
            start = clock.now()
            fn(batches[i % len(batches)])
            times[name].append(clock.now() - start)
    return times


def fixed_cost_ms(times_by_size: dict[int, float]) -> tuple[float, float]:
    """Least-squares ``t = a + c * batch``: (a, c) in milliseconds (per step, per graph)."""
    xs, ys = list(times_by_size), [t * 1e3 for t in times_by_size.values()]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def bench_domain(domain: str, args: argparse.Namespace, workdir: Path, clock: Clock) -> dict[str, Any]:
    trainer = trainer_for(domain, args, workdir)
    device, batch_size = trainer.device, trainer.spec.batch_size
    runners = {"ours": StepRunner(trainer, trainer.model)}
    if args.baselines:
        from torch_geometric.nn import FastRGCNConv, RGCNConv

        for name, cls in (("materialised", FastRGCNConv), ("rgcnconv", RGCNConv)):
            torch.manual_seed(0)
            runners[name] = StepRunner(trainer, swap_convs(trainer.model_factory(trainer.dataset, trainer.spec),
                                                           cls).to(device))
    batches = training_batches(trainer, batch_size, 8, device)
    sizes = {b: training_batches(trainer, b, 4, device) for b in FIT_BATCH_SIZES if b != batch_size}
    for runner in runners.values():
        for batch in batches[: args.warmup]:
            runner.train(batch)
            runner.eval(batch)
    for size_batches in sizes.values():
        runners["ours"].train(size_batches[0])
    ours = runners["ours"]
    ops = count_ops(lambda: ours.train(batches[0]))

    jobs = {name: (r.train, batches) for name, r in runners.items()}
    jobs.update({f"ours@{b}": (ours.train, bs) for b, bs in sizes.items()})
    train_times = interleaved(jobs, args.steps, clock, {"rgcnconv": 10})
    eval_times = interleaved({name: (r.eval, batches) for name, r in runners.items()}, args.steps, clock,
                             {"rgcnconv": 10})
    median = {name: statistics.median(t) for name, t in train_times.items()}
    fit = {b: median[f"ours@{b}"] if b != batch_size else median["ours"] for b in FIT_BATCH_SIZES}
    fixed, per_graph = fixed_cost_ms(fit)
    models = {name: {"train_graphs_per_second": batch_size / median[name],
                     "eval_graphs_per_second": batch_size / statistics.median(eval_times[name]),
                     "train_steps_timed": len(train_times[name])} for name in runners}
    result: dict[str, Any] = {
        "domain": domain,
        "batch_size": batch_size,
        "train_graphs": int(trainer.splits["train"].numel()),
        "mean_nodes_per_graph": float(trainer.dataset.store.num_nodes().float().mean()),
        "amp": str(trainer.amp.dtype).replace("torch.", "") if trainer.amp.enabled else "none",
        "optimizer": "AdamW fused" if trainer.optimizer.param_groups[0]["fused"] else "AdamW foreach",
        "graphs_per_second": models["ours"]["train_graphs_per_second"],
        "aten_ops_per_step": ops,
        "ms_per_step": median["ours"] * 1e3,
        "ms_fixed_per_step": fixed,
        "ms_per_graph": per_graph,
        "step_ms_by_batch_size": {b: t * 1e3 for b, t in fit.items()},
        "models": models,
    }
    for base in ("materialised", "rgcnconv"):
        if base in models:
            result[f"train_ratio_ours_over_{base}"] = models["ours"]["train_graphs_per_second"] / models[base][
                "train_graphs_per_second"]
    return result


def print_domain(r: dict[str, Any]) -> None:
    print(f"\n== {r['domain']}: batch {r['batch_size']}, {r['train_graphs']} training graphs, "
          f"{r['mean_nodes_per_graph']:.1f} nodes/graph, {r['optimizer']}, AMP {r['amp']}")
    print(f"step: {r['graphs_per_second']:,.0f} graphs/s, {r['ms_per_step']:.2f} ms, {r['aten_ops_per_step']} aten ops; "
          f"fit over batch sizes: {r['ms_fixed_per_step']:.2f} ms fixed + {r['ms_per_graph']:.3f} ms/graph")
    print(f"{'model':<14}{'train g/s':>12}{'eval g/s':>12}")
    for name, m in r["models"].items():
        print(f"{name:<14}{m['train_graphs_per_second']:>12,.0f}{m['eval_graphs_per_second']:>12,.0f}")
    for base in ("materialised", "rgcnconv"):
        if f"train_ratio_ours_over_{base}" in r:
            print(f"ours / {base}: train {r[f'train_ratio_ours_over_{base}']:.2f}x")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall clock, or process CPU time (steadier on a shared machine; with --threads 1)")
    p.add_argument("--steps", type=int, default=40, help="timed rounds (rgcnconv: a tenth)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--amp", choices=["bf16", "fp16", "none"], default="none", help="spec.optimization.amp(Dtype)")
    p.add_argument("--no-baselines", dest="baselines", action="store_false")
    p.add_argument("--domains", nargs="+", default=["planning", "causal", "kg"])
    p.add_argument("--data-cache", type=Path, default=None, help="dataset cache directory")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--world-size", type=int, default=1,
                   help="> 1: data-parallel scaling on CPU, W gloo processes vs one (bench/ddp_scaling.py)")
    p.add_argument("--repeats", type=int, default=3, help="repetitions of the --world-size comparison")
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    if args.clock == "cpu" and args.device == "cuda":
        p.error("--clock cpu measures host CPU time; use the wall clock on CUDA")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = Clock(args.clock, device)
    report: dict[str, Any] = {"device": args.device, "threads": args.threads, "clock": args.clock,
                              "torch": torch.__version__, "load_average_start": os.getloadavg(), "domains": {}}
    if args.world_size > 1:
        if args.device != "cpu" or args.clock != "wall":
            p.error("--world-size measures CPU (gloo) scaling on the wall clock")
        from ddp_scaling import print_scaling, scaling

        report["threads"] = "set per variant (bench/ddp_scaling.py)"
    with tempfile.TemporaryDirectory(prefix="nsm-bench-") as tmp:
        for domain in args.domains:
            if args.world_size > 1:
                r = scaling(domain, args, Path(tmp))
                report["domains"][domain] = r
                if not args.json:
                    print_scaling(r)
                continue
            r = bench_domain(domain, args, Path(tmp), clock)
            report["domains"][domain] = r
            if not args.json:
                print_domain(r)
                sys.stdout.flush()
    report["load_average_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"\nload average at start {report['load_average_start']}, at end {report['load_average_end']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
