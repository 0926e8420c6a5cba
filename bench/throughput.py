"""Training and evaluation throughput of the NSM model, in graphs per second.

Compares, in the same run and the same 3-level architecture, our R-GCN (:class:`nsm.model.RGCNLayer`,
grouped per-relation transform) with two PyG convolutions swapped in for every R-GCN layer:

* ``materialised``: :class:`torch_geometric.nn.FastRGCNConv`, which builds an ``[E, H, H]`` weight
  per call from the bases, like the published NSM code;
* ``rgcnconv``: :class:`torch_geometric.nn.RGCNConv`, which loops over relations (no pyg-lib).

Models are timed step by step in turn (A, B, C, A, B, C, ...) and graphs/s comes from the median
step, so background load hits all of them alike; the ratios are the robust figure on a busy
machine. Example::

    python bench/throughput.py --threads 2 --steps 60
    python bench/throughput.py --device cuda --amp bf16 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsm.data.graph import GraphBatch, GraphStore  # noqa: E402
from nsm.model import NSMConfig, NSMModel, RGCNLayer  # noqa: E402
from nsm.model.rgcn import EdgePlan  # noqa: E402

CYCLE_WEIGHT = 0.01
SEED_POOL_RATIO = {"kg": 0.13}  # the seed's production values; 0.5 elsewhere


class _PyGConv(nn.Module):
    """Runs a PyG R-GCN convolution where an :class:`RGCNLayer` was (same call signature)."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor, edge_index=None, edge_type=None, plan: EdgePlan | None = None) -> torch.Tensor:
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


def synthetic_store(num_graphs: int, num_relations: int = 16, seed: int = 0) -> tuple[GraphStore, list[int]]:
    """Planning-size random typed graphs: ~33 nodes (28-38), ~63 edges (1.9 per node)."""
    g = torch.Generator().manual_seed(seed)
    vocab = [16, 8]
    graphs, labels = [], []
    for i in range(num_graphs):
        n = int(torch.randint(28, 39, (1,), generator=g))
        e = round(1.9 * n)
        x = torch.stack([torch.randint(0, v, (n,), generator=g) for v in vocab], dim=1)
        graphs.append((x, torch.randint(0, n, (2, e), generator=g), torch.randint(0, num_relations, (e,), generator=g)))
        labels.append(i % 2)
    return GraphStore.from_graphs(graphs, labels), vocab


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _fmt_load(load: tuple[float, ...]) -> str:
    return "/".join(f"{v:.1f}" for v in load)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(store: GraphStore, batch_size: int, count: int, device: torch.device, seed: int) -> list[GraphBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        idx = torch.randperm(len(store), generator=g)[:batch_size]
        out.append(store.collate(idx).to(device))
    return out


def _autocast(device: torch.device, amp: str):
    if amp == "none":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def make_runners(model: nn.Module, device: torch.device, amp: str, impl: str = "fused") -> tuple[Callable, Callable]:
    kwargs = {"fused": True} if impl == "fused" else {"foreach": True} if impl == "foreach" else {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **kwargs)
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))

    def train_step(batch: GraphBatch) -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            out = model(batch)
            loss = F.cross_entropy(out.logits.float(), batch.y) + CYCLE_WEIGHT * out.cycle_loss
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()

    @torch.no_grad()
    def eval_step(batch: GraphBatch) -> None:
        model.eval()
        with _autocast(device, amp):
            model(batch)

    return train_step, eval_step


def _timed(fn: Callable, batch: GraphBatch, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn(batch)
    _sync(device)
    return time.perf_counter() - t0


def bench_models(
    models: dict[str, nn.Module], batches: list[GraphBatch], args: argparse.Namespace, device: torch.device
) -> dict[str, dict[str, float]]:
    """Graphs/s from the median step time, models interleaved step by step.

    Every model's steps are spread over the same wall-clock window (A, B, C, A, B, C, ...), so
    background load hits all of them alike and the ratios stay meaningful on a busy machine;
    the median ignores steps that a descheduling stalled. The slow ``rgcnconv`` baseline runs
    on every tenth cycle only.
    """
    runners = {name: make_runners(m, device, args.amp, args.optimizer) for name, m in models.items()}
    for train_step, eval_step in runners.values():
        for i in range(args.warmup):
            train_step(batches[i % len(batches)])
            eval_step(batches[i % len(batches)])
    times: dict[str, dict[str, list[float]]] = {n: {"train": [], "eval": []} for n in models}
    for kind in ("train", "eval"):
        for i in range(args.steps):
            batch = batches[i % len(batches)]
            for name, (train_step, eval_step) in runners.items():
                if name == "rgcnconv" and i % 10:
                    continue
                times[name][kind].append(_timed(train_step if kind == "train" else eval_step, batch, device))
    gps = {}
    for name, t in times.items():
        gps[name] = {
            "train_graphs_per_s": args.batch_size / statistics.median(t["train"]),
            "eval_graphs_per_s": args.batch_size / statistics.median(t["eval"]),
            "train_steps": len(t["train"]),
        }
    return gps


def bench_collate(store: GraphStore, batch_size: int, steps: int) -> float:
    g = torch.Generator().manual_seed(1)
    idx = [torch.randperm(len(store), generator=g)[:batch_size] for _ in range(steps)]
    store.collate(idx[0])
    t0 = time.perf_counter()
    for i in idx:
        store.collate(i)
    return batch_size * steps / (time.perf_counter() - t0)


def build_models(config: NSMConfig, device: torch.device, baselines: bool) -> dict[str, nn.Module]:
    from torch_geometric.nn import FastRGCNConv, RGCNConv

    torch.manual_seed(0)
    models: dict[str, nn.Module] = {"ours": NSMModel(config)}
    if baselines:
        models["materialised"] = swap_convs(NSMModel(config), FastRGCNConv)
        models["rgcnconv"] = swap_convs(NSMModel(config), RGCNConv)
    return {n: m.to(device) for n, m in models.items()}


def run_case(
    label: str, store: GraphStore, vocab: list[int], num_relations: int, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    ratio = args.pool_ratio if args.pool_ratio is not None else SEED_POOL_RATIO.get(label, 0.5)
    config = NSMConfig(
        feature_vocab=vocab,
        num_relations=num_relations,
        hidden_dim=args.hidden,
        pool_ratio=ratio,
        **({"l1_layers": args.l1_layers} if args.l1_layers else {}),
    )
    batches = _batches(store, args.batch_size, 16, device, seed=0)
    models = build_models(config, device, args.baselines)
    result: dict[str, Any] = {
        "case": label,
        "num_relations": num_relations,
        "pool_ratio": ratio,
        "l1_layers": config.l1_layers,
        "mean_nodes": float(store.num_nodes().float().mean()),
        "mean_edges": float(store.num_edges().float().mean()),
        "parameters": sum(p.numel() for p in models["ours"].parameters()),
        "models": bench_models(models, batches, args, device),
    }
    collate_gps = bench_collate(store, args.batch_size, 50)
    result["collate_graphs_per_s"] = collate_gps
    ours = result["models"]["ours"]
    ours["train_with_collate_graphs_per_s"] = 1.0 / (1.0 / ours["train_graphs_per_s"] + 1.0 / collate_gps)
    ours["eval_with_collate_graphs_per_s"] = 1.0 / (1.0 / ours["eval_graphs_per_s"] + 1.0 / collate_gps)
    for base in ("materialised", "rgcnconv"):
        if base in result["models"]:
            for kind in ("train", "eval"):
                key = f"{kind}_graphs_per_s"
                result[f"{kind}_ratio_ours_over_{base}"] = ours[key] / result["models"][base][key]
    return result


def print_case(r: dict[str, Any]) -> None:
    print(
        f"\n== {r['case']}: {r['mean_nodes']:.1f} nodes, {r['mean_edges']:.1f} edges, "
        f"{r['num_relations']} relations, pool ratio {r['pool_ratio']}, "
        f"{r['l1_layers']} L1 layers, {r['parameters']:,} parameters"
    )
    print(f"{'model':<14}{'train g/s':>12}{'eval g/s':>12}")
    for name, m in r["models"].items():
        print(f"{name:<14}{m['train_graphs_per_s']:>12,.0f}{m['eval_graphs_per_s']:>12,.0f}")
    o = r["models"]["ours"]
    print(
        f"collate: {r['collate_graphs_per_s']:,.0f} g/s; ours incl. collate: train "
        f"{o['train_with_collate_graphs_per_s']:,.0f} g/s, eval {o['eval_with_collate_graphs_per_s']:,.0f} g/s"
    )
    for base in ("materialised", "rgcnconv"):
        if f"train_ratio_ours_over_{base}" in r:
            print(
                f"ours / {base}: train {r[f'train_ratio_ours_over_{base}']:.2f}x, "
                f"eval {r[f'eval_ratio_ours_over_{base}']:.2f}x"
            )


def domain_cases(args: argparse.Namespace) -> list[tuple[str, GraphStore, list[int], int]]:
    try:
        from nsm.data import VALIDATION_PARAMS, load_dataset
    except ImportError as exc:
        print(f"(skipping per-domain figures: nsm.data.load_dataset not available: {exc})", file=sys.stderr)
        return []
    cases = []
    for domain in args.domains:
        try:
            ds = load_dataset(domain, dict(VALIDATION_PARAMS[domain]), seed=42)
        except Exception as exc:  # a generator still being written must not stop the benchmark
            print(f"(skipping {domain}: {type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        cases.append((domain, ds.store, list(ds.feature_vocab), ds.num_relations))
    return cases


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--steps", type=int, default=60, help="timed steps per model (rgcnconv: a tenth)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--l1-layers", type=int, default=None, help="L1 encoder layers (default: NSMConfig's)")
    p.add_argument("--pool-ratio", type=float, default=None, help="default: 0.13 for kg, else 0.5 (the seed's)")
    p.add_argument("--optimizer", choices=["fused", "foreach", "default"], default="fused",
                   help="AdamW implementation (PyTorch's CPU default is a per-tensor loop, ~10x slower)")
    p.add_argument("--amp", choices=["bf16", "fp16", "none"], default="none")
    p.add_argument("--no-baselines", dest="baselines", action="store_false")
    p.add_argument("--domains", nargs="*", default=["planning", "causal", "kg"], help="empty: synthetic only")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    if args.amp == "fp16" and args.device != "cuda":
        p.error("--amp fp16 needs --device cuda")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    report: dict[str, Any] = {
        "device": device.type,
        "device_name": device_name(device),
        "threads": args.threads,
        "torch": torch.__version__,
        "amp": args.amp,
        "optimizer": args.optimizer,
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "load_average_start": os.getloadavg(),
        "cases": [],
    }
    if not args.json:
        print(
            f"device: {report['device_name']} ({device.type}), threads={args.threads}, torch {torch.__version__}, "
            f"amp={args.amp}, AdamW {args.optimizer}, batch {args.batch_size}, hidden {args.hidden}, "
            f"{args.steps} interleaved steps per model"
        )
    store, vocab = synthetic_store(512)
    cases = [("synthetic-planning-size", store, vocab, 16)] + domain_cases(args)
    for label, st, vb, nr in cases:
        r = run_case(label, st, vb, nr, args, device)
        report["cases"].append(r)
        if not args.json:
            print_case(r)
            sys.stdout.flush()
    report["load_average_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"\nload average (1/5/15 min) at start {_fmt_load(report['load_average_start'])}, "
            f"at end {_fmt_load(report['load_average_end'])} on {os.cpu_count()} CPUs"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
