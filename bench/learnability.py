"""Learnability benchmark: writes ``docs/results.md``.

    python bench/learnability.py --output docs/results.md            # defaults + ablation (~2 CPU hours)
    python bench/learnability.py --sections defaults --seeds 0 1     # a subset, printed only

Sections (each run is the real trainer, :class:`nsm.train.trainer.Trainer`, on CPU):

* ``defaults``: the NSM at the spec's defaults (sizes, batch, learning rate, epochs, early
  stopping) for every domain and seed: test balanced accuracy, worst class, epochs, wall time.
* ``ablation``: for each domain and tier, mean ± std over the seeds of test balanced accuracy of
  the NSM, a flat R-GCN of the same depth and parameter budget (:class:`FlatRGCN`), the NSM
  without cycle loss (``cycleWeight: 0``) and the baselines of :mod:`nsm.data.baselines`
  (majority, size-only, bag-of-relations, the typed-walk counter at depths 1-4). It uses the
  reduced sizes and epochs of :data:`ABLATION` (CPU is scarce) and says so in the table.
* ``speed`` (not run by default): time to 0.95 validation balanced accuracy at the defaults with
  2 threads, seed 0; meaningful only on an idle machine. The defaults section reports the same
  time per seed with 1 thread.

Every run's result is cached as JSON under ``--work-dir`` keyed by its full configuration, so an
interrupted benchmark resumes, and the markdown is always rendered from the cached results of
exactly the configurations it lists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

DOMAINS = ("planning", "causal", "kg")
TIERS = ("standard", "deep")
WALK_DEPTHS = (1, 2, 3, 4)
RULE_DEPTH = {"planning": 4, "causal": 3, "kg": 2}
# Reduced settings of the ablation section (stated in the table).
ABLATION: dict[str, Any] = {
    "sizes": {
        "planning": {"numProblems": 600},
        "causal": {"numScenarios": 600},
        "kg": {"numEntities": 120, "numTriples": 600},
    },
    "epochs": 20,
    "patience": 8,
    # 420 training graphs at batch 64 are 7 steps an epoch: too few for 20 epochs. Batch 16 gives
    # the optimiser about as many steps as the defaults get in 5 epochs at full size.
    "batchSize": 16,
}
MODELS = ("nsm", "flat_rgcn", "nsm_no_cycle")


# ---------------------------------------------------------------- the flat R-GCN reference
class FlatOutput:
    """What the training loop reads from a model's output (no hierarchy, so no cycle loss)."""

    def __init__(self, logits: Tensor) -> None:
        zero = logits.new_zeros(())
        self.logits, self.cycle_loss, self.cycle_loss_l1, self.cycle_loss_l2 = logits, zero, zero, zero


class FlatRGCN(nn.Module):
    """The NSM without WHY/WHAT: ``depth`` R-GCN layers (the NSM's own layer), mean ‖ max readout, MLP.

    Same embedding, convolution, activation, dropout and readout as :class:`nsm.model.NSMModel`;
    ``depth`` equals the NSM's R-GCN layers on its message path (L1 + L2 + L3) and the width is
    chosen so the parameter count matches the NSM's (:func:`flat_width`).
    """

    def __init__(self, feature_vocab: list[int], num_relations: int, hidden: int, depth: int,
                 num_bases: int, dropout: float) -> None:
        super().__init__()
        from nsm.model.readout import MeanMaxReadout
        from nsm.model.rgcn import RGCNLayer

        self.num_relations, self.dropout = num_relations, dropout
        offsets = torch.tensor([0] + feature_vocab[:-1], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.embed = nn.Embedding(sum(feature_vocab), hidden)
        nn.init.normal_(self.embed.weight, std=len(feature_vocab) ** -0.5)
        self.convs = nn.ModuleList(RGCNLayer(hidden, hidden, num_relations, num_bases=num_bases)
                                   for _ in range(depth))
        self.readout = MeanMaxReadout()
        self.classifier = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(hidden, 2))

    def forward(self, batch: Any) -> FlatOutput:
        from nsm.model.dropout import dropout
        from nsm.model.rgcn import build_edge_plan

        h = self.embed(batch.x + self.offsets).sum(1)
        plan = build_edge_plan(batch.edge_index, batch.edge_type, h.size(0), self.num_relations)
        for conv in self.convs:
            h = dropout(conv(h, plan=plan).relu(), self.dropout, self.training)
        return FlatOutput(self.classifier(self.readout(h, batch.batch, batch.num_graphs)))


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flat_width(dataset: Any, spec: Any, target: int) -> int:
    """The hidden width whose :class:`FlatRGCN` has the parameter count closest to ``target``."""
    depth = spec.model.l1_layers + 2 * spec.model.coarse_layers
    bases = spec.model.num_bases or min(8, dataset.num_relations)
    best = min(range(8, 513, 2), key=lambda h: abs(_count(FlatRGCN(
        list(dataset.feature_vocab), dataset.num_relations, h, depth, bases, spec.model.dropout)) - target))
    return best


def flat_factory(dataset: Any, spec: Any) -> nn.Module:
    from nsm.train.trainer import default_model_factory

    target = _count(default_model_factory(dataset, spec))
    depth = spec.model.l1_layers + 2 * spec.model.coarse_layers
    bases = spec.model.num_bases or min(8, dataset.num_relations)
    return FlatRGCN(list(dataset.feature_vocab), dataset.num_relations, flat_width(dataset, spec, target),
                    depth, bases, spec.model.dropout)


# ---------------------------------------------------------------- one run
def run_key(job: dict[str, Any]) -> str:
    """Cache key: the job plus its fully resolved spec, so a changed default is a new run."""
    from nsm.data import GENERATOR_VERSION
    from nsm.spec import parse_spec

    resolved = parse_spec({"domain": job["domain"], "seed": job["seed"], **job["spec"]}).to_wire()
    payload = {"job": job, "spec": resolved, "generator_version": GENERATOR_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _time_to(history: list[dict[str, Any]], threshold: float) -> float | None:
    """Training seconds until validation balanced accuracy first reaches ``threshold``."""
    elapsed = 0.0
    for row in history:
        elapsed += row["epoch_seconds"]
        if row["val_balanced_accuracy"] >= threshold:
            return elapsed
    return None


def train_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration with the real trainer; returns the figures the tables need."""
    torch.set_num_threads(job["threads"])
    from nsm.spec import parse_training
    from nsm.train.trainer import RunOptions, Trainer

    spec = {"domain": job["domain"], "seed": job["seed"], **job["spec"],
            "dataLoader": {"numWorkers": 0, "pinMemory": False, "persistentWorkers": False},
            "checkpoint": {"everyEpochs": 100000, "keep": 1}}
    training = parse_training({"metadata": {"name": f"bench-{job['domain']}"}, "spec": spec})
    factory = flat_factory if job["model"] == "flat_rgcn" else None
    with tempfile.TemporaryDirectory(prefix="nsm-bench-") as tmp:
        start = time.perf_counter()
        trainer = Trainer(training, RunOptions(output_dir=Path(tmp), device="cpu", resume="never", quiet=True,
                                               data_cache=job.get("data_cache")),
                          model_factory=factory, log=lambda line: None)
        results = trainer.run()
        wall = time.perf_counter() - start
        history = trainer.state.history
        params = _count(trainer.model)
    test = results["test"] or {}
    per_class = [a for a in test.get("per_class_accuracy", []) if a is not None]
    return {
        "test_balanced_accuracy": test.get("balanced_accuracy", math.nan),
        "test_per_class": per_class,
        "epochs": results["epochs_run"],
        "best_epoch": results["best_epoch"],
        "wall_s": wall,
        "train_s": results["timing"]["train_seconds"],
        "time_to_095_s": _time_to(history, 0.95),
        "params": params,
    }


def baseline_job(job: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(job["threads"])
    from nsm.data import load_dataset, split_dataset
    from nsm.data.baselines import run_baselines
    from nsm.spec import parse_spec

    spec = parse_spec({"domain": job["domain"], "seed": job["seed"], **job["spec"]})
    ds = load_dataset(job["domain"], spec.dataset_params(), seed=job["seed"], cache_dir=job.get("data_cache"))
    train, _, test = split_dataset(ds, seed=job["seed"])
    return run_baselines(ds, train, test, walk_depth=max(WALK_DEPTHS))


def _execute(item: tuple[dict[str, Any], Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    job, work = item
    cached = work / f"{run_key(job)}.json"
    if cached.exists():  # finished meanwhile by another invocation sharing the work dir
        return job, json.loads(cached.read_text())["result"]
    start = time.perf_counter()
    out = baseline_job(job) if job["model"] == "baselines" else train_job(job)
    out["job_seconds"] = time.perf_counter() - start
    return job, out


def run_all(jobs: list[dict[str, Any]], work: Path, parallel: int, reverse: bool = False) -> dict[str, dict[str, Any]]:
    """Run every job not cached in ``work``; returns ``{run_key: result}`` for all of them.

    ``reverse`` takes the jobs from the end, so a second invocation sharing ``work`` (another
    machine, or a second process) meets the first in the middle instead of duplicating it.
    """
    work.mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs if not (work / f"{run_key(j)}.json").exists()]
    todo = todo[::-1] if reverse else todo
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} cached, {len(todo)} to do", flush=True)

    def save(job: dict[str, Any], out: dict[str, Any]) -> None:
        (work / f"{run_key(job)}.json").write_text(json.dumps({"job": job, "result": out}, indent=1))
        acc = out.get("test_balanced_accuracy")
        print(f"  {job['section']:8} {job['domain']:8} {job.get('tier', ''):8} {job['model']:12} seed {job['seed']}"
              f"  {'' if acc is None else f'test bal {acc:.3f}'}  {out['job_seconds']:.0f}s", flush=True)

    if parallel <= 1:
        for job in todo:
            save(*_execute((job, work)))
    else:
        with mp.get_context("spawn").Pool(parallel, maxtasksperchild=1) as pool:
            for job, out in pool.imap_unordered(_execute, [(job, work) for job in todo]):
                save(job, out)
    return {run_key(j): json.loads((work / f"{run_key(j)}.json").read_text())["result"] for j in jobs}


# ---------------------------------------------------------------- the job lists
# The defaults section runs the spec's own epochs and early stopping (nothing overridden). The speed
# section only needs the first epoch at which validation reaches 0.95, so it stops at a cap.
SPEED_EPOCH_CAP = 40


def defaults_jobs(seeds: list[int], threads: int = 1) -> list[dict[str, Any]]:
    return [{"section": "defaults", "domain": d, "tier": "standard", "model": "nsm", "seed": s,
             "spec": {}, "threads": threads} for d in DOMAINS for s in seeds]


def ablation_jobs(seeds: list[int]) -> list[dict[str, Any]]:
    """Seed-major order: an interrupted benchmark has whole seeds done (render with fewer ``--seeds``)."""
    jobs = []
    for s in seeds:
        for d in DOMAINS:
            for tier in TIERS:
                base = {"dataset": {**ABLATION["sizes"][d], "tier": tier}, "epochs": ABLATION["epochs"],
                        "batchSize": ABLATION["batchSize"], "earlyStopping": {"patience": ABLATION["patience"]}}
                for model in (*MODELS, "baselines"):
                    spec = {**base, "cycleWeight": 0.0} if model == "nsm_no_cycle" else base
                    jobs.append({"section": "ablation", "domain": d, "tier": tier, "model": model, "seed": s,
                                 "spec": spec, "threads": 1})
    return jobs


def speed_jobs() -> list[dict[str, Any]]:
    return [{"section": "speed", "domain": d, "tier": "standard", "model": "nsm", "seed": 0,
             "spec": {"epochs": SPEED_EPOCH_CAP}, "threads": 2} for d in DOMAINS]


# ---------------------------------------------------------------- rendering
def _ms(values: list[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def render_defaults(jobs: list[dict[str, Any]], res: dict[str, dict[str, Any]]) -> list[str]:
    from nsm.spec import parse_spec

    spec = parse_spec({"domain": "planning"})
    lines = [
        "## The NSM at the spec's defaults",
        "",
        f"Batch {spec.batch_size}, learning rate {spec.learning_rate:g}, "
        f"`{spec.optimization.lr_schedule.value}` schedule, early stopping patience "
        f"{spec.early_stopping.patience}, at most {spec.epochs} epochs, production sizes, pair-grouped "
        "splits: the spec's defaults, nothing overridden. Test figures are at the best "
        "(lowest validation loss) epoch. 1 thread each on a 2-core machine shared with "
        "other work: wall times and time to 0.95 (training seconds until validation balanced accuracy "
        "first reaches 0.95) are inflated by that sharing.",
        "",
        "| domain | seed | test bal. acc | per-class acc | epochs (best) | wall s | s to val bal. acc ≥ 0.95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for job in jobs:
        r = res[run_key(job)]
        t95 = r["time_to_095_s"]
        lines.append(
            f"| {job['domain']} | {job['seed']} | {r['test_balanced_accuracy']:.3f} | "
            f"{' / '.join(f'{a:.3f}' for a in r['test_per_class'])} | {r['epochs']} ({r['best_epoch']}) | "
            f"{r['wall_s']:.0f} | {'never' if t95 is None else f'{t95:.0f}'} |")
    lines += ["", "| domain | mean test bal. acc | worst class, any seed | seeds ≥ 0.95 with every class ≥ 0.90 "
              "| median s to 0.95 |", "|---|---|---|---|---|"]
    for d in DOMAINS:
        rs = [res[run_key(j)] for j in jobs if j["domain"] == d]
        if not rs:
            continue
        ok = sum(r["test_balanced_accuracy"] >= 0.95 and min(r["test_per_class"]) >= 0.90 for r in rs)
        t95 = [r["time_to_095_s"] for r in rs if r["time_to_095_s"] is not None]
        lines.append(f"| {d} | {_ms([r['test_balanced_accuracy'] for r in rs])} | "
                     f"{min(min(r['test_per_class']) for r in rs):.3f} | {ok}/{len(rs)} | "
                     f"{f'{statistics.median(t95):.0f}' if t95 else 'never'} |")
    return lines + [""]


def render_ablation(jobs: list[dict[str, Any]], res: dict[str, dict[str, Any]], seeds: list[int]) -> list[str]:
    sizes = ", ".join(f"{d} {', '.join(f'{k}={v}' for k, v in ABLATION['sizes'][d].items())}" for d in DOMAINS)
    lines = [
        "## NSM, flat R-GCN, NSM without cycle loss, and the baselines",
        "",
        f"Test balanced accuracy, mean ± std over seeds {', '.join(map(str, seeds))}. **Reduced settings** "
        f"(CPU is scarce): {sizes}; batch {ABLATION['batchSize']}, at most {ABLATION['epochs']} epochs, "
        f"early-stopping patience {ABLATION['patience']}; otherwise the spec's defaults. The flat R-GCN has the NSM's depth "
        "(L1 + L2 + L3 R-GCN layers) and about its parameter count. Baselines are test accuracy on the "
        "same pair-grouped splits (balanced splits, so accuracy = balanced accuracy up to a graph); "
        "`walk dN` is the typed-walk counter up to N hops (`*`: the standard rule's depth). "
        "`train s` is the mean training time per run, data generation excluded (1 thread, 2 runs at a "
        "time, shared machine).",
        "",
        "| domain | tier | NSM | flat R-GCN | NSM, no cycle | majority | size | bag | walk d1 | walk d2 | walk d3 | walk d4 "
        "| params NSM / flat | train s NSM / flat / no-cycle |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in DOMAINS:
        for tier in TIERS:
            picked = {m: [res[run_key(j)] for j in jobs if (j["domain"], j["tier"], j["model"]) == (d, tier, m)]
                      for m in (*MODELS, "baselines")}
            acc = {m: _ms([r["test_balanced_accuracy"] for r in picked[m]]) for m in MODELS}
            base = picked["baselines"]
            cells = [_ms([b[k] for b in base]) for k in ("majority", "size_only", "bag_of_relations")]
            walks = [_ms([b[f"typed_walk_d{k}"] for b in base]) + ("*" if tier == "standard" and k == RULE_DEPTH[d]
                                                                    else "") for k in WALK_DEPTHS]
            params = f"{picked['nsm'][0]['params']} / {picked['flat_rgcn'][0]['params']}" if picked["nsm"] else "–"
            walls = " / ".join(f"{statistics.mean(r['train_s'] for r in picked[m]):.0f}" if picked[m] else "–"
                               for m in MODELS)
            lines.append(f"| {d} | {tier} | {acc['nsm']} | {acc['flat_rgcn']} | {acc['nsm_no_cycle']} | "
                         f"{' | '.join(cells)} | {' | '.join(walks)} | {params} | {walls} |")
    return lines + [""]


def render_speed(jobs: list[dict[str, Any]], res: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "## Time to a good model (defaults, 2 threads)",
        "",
        "`nsm train --domain D --device cpu --num-workers 0` at the spec's defaults, seed 0, "
        "`torch.set_num_threads(2)`: training seconds until validation balanced accuracy first reaches "
        f"0.95 (target ≤ 60 s), and the whole run, stopped after at most {SPEED_EPOCH_CAP} epochs (only the first "
        "crossing matters). Run alone on the 2-core machine: rerun it when nothing else is running.",
        "",
        "| domain | s to val bal. acc ≥ 0.95 | epochs run | wall s | test bal. acc |",
        "|---|---|---|---|---|",
    ]
    for job in jobs:
        r = res[run_key(job)]
        t95 = r["time_to_095_s"]
        lines.append(f"| {job['domain']} | {'never' if t95 is None else f'{t95:.0f}'} | {r['epochs']} | "
                     f"{r['wall_s']:.0f} | {r['test_balanced_accuracy']:.3f} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", choices=("defaults", "ablation", "speed"),
                   default=["defaults", "ablation"],
                   help="speed (2 threads, seed 0) only means something on an otherwise idle machine")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--ablation-seeds", nargs="+", type=int, help="seeds of the ablation section (default: --seeds)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (1 thread each)")
    p.add_argument("--work-dir", type=Path, default=Path(os.environ.get("NSM_BENCH_DIR", ".bench/learnability")),
                   help="cache of finished runs (resumable)")
    p.add_argument("--output", type=Path, help="write the markdown here (default: print it)")
    p.add_argument("--reverse", action="store_true", help="run the missing jobs last-first (see run_all)")
    args = p.parse_args(argv)
    ablation_seeds = args.ablation_seeds or args.seeds
    sections = {"defaults": defaults_jobs(args.seeds), "ablation": ablation_jobs(ablation_seeds), "speed": speed_jobs()}
    chosen = {name: sections[name] for name in args.sections}
    res = run_all([j for jobs in chosen.values() for j in jobs], args.work_dir, args.jobs, args.reverse)
    import nsm

    lines = ["# Results", "",
             f"Produced by `python bench/learnability.py {' '.join(sys.argv[1:] if argv is None else argv)}` "
             f"(nsm {nsm.__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
             f"{os.cpu_count()} CPUs). Do not edit by hand: rerun the command. Finished runs are cached "
             "in `--work-dir` by configuration, so the command resumes and re-renders.", "",
             "The standard tier's labels are bounded-depth typed reachability, which the typed-walk "
             "counter solves at the rule's depth; the deep tier tests on larger graphs with longer "
             "paths than training (docs/datasets.md, \"Tiers\"), where a fixed-depth reader falls to "
             "chance. Nothing here is required to favour the NSM.", ""]
    if "defaults" in chosen:
        lines += render_defaults(chosen["defaults"], res)
    if "speed" in chosen:
        lines += render_speed(chosen["speed"], res)
    if "ablation" in chosen:
        lines += render_ablation(chosen["ablation"], res, ablation_seeds)
    text = "\n".join(lines)
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
