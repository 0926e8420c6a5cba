"""``nsm validate``: the quick check that the model learns every domain without collapsing.

Trains each domain for a few epochs at the small ``nsm.data.VALIDATION_PARAMS`` sizes (CPU,
no workers), then prints one row per domain: balanced validation accuracy and per-class
accuracy at the best (lowest val-loss) epoch, the class-collapse verdict, the best shortcut
baseline (test accuracy) and the model's margin over it on the same test split.

A domain FAILs when any class's accuracy is below the collapse threshold (5 %) or below
``--min-class-accuracy`` (0.6); the exit code is then 1.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

DOMAIN_NAMES = ("planning", "causal", "kg")
BASELINE_KEYS = ("majority", "size_only", "bag_of_relations")

# Settings of the quick check, the best of a small sweep on 2 idle CPU cores (all three domains,
# 10 epochs, cosine): batch 8 / lr 1e-3 took 35 s and gave the highest worst-class accuracy;
# batch 16-32 or lr >= 2e-3 let planning (and at 3e-3 also kg) collapse onto one class.
VALIDATE_SPEC: dict[str, Any] = {
    "epochs": 10,
    "batchSize": 8,
    "learningRate": 1.0e-3,
    "seed": 42,
    "optimization": {"amp": False, "lrSchedule": "cosine", "gradientClip": 1.0},
    "earlyStopping": {"patience": 0},
    "checkpoint": {"everyEpochs": 1000, "keep": 1},
    "dataLoader": {"numWorkers": 0, "pinMemory": False, "persistentWorkers": False},
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("validate", help="quick check: every domain learns without class collapse",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", dest="domains", action="append", choices=DOMAIN_NAMES,
                   help="only this domain (repeatable; default: all three)")
    p.add_argument("--epochs", type=int, default=VALIDATE_SPEC["epochs"],
                   help="epochs per domain (default: %(default)s)")
    p.add_argument("--learning-rate", type=float, default=VALIDATE_SPEC["learningRate"],
                   help="initial learning rate (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=VALIDATE_SPEC["batchSize"],
                   help="graphs per mini-batch (default: %(default)s)")
    p.add_argument("--lr-schedule", choices=("none", "plateau", "cosine"),
                   default=VALIDATE_SPEC["optimization"]["lrSchedule"],
                   help="learning-rate schedule (default: %(default)s)")
    p.add_argument("--seed", type=int, default=VALIDATE_SPEC["seed"],
                   help="seed of data generation, splits and training (default: %(default)s)")
    p.add_argument("--min-class-accuracy", type=float, default=0.6,
                   help="fail a domain whose worst class is below this (default: 0.6)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply the validation dataset sizes (tests use < 1)")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda (default: cpu)")
    p.add_argument("--output-dir", type=Path, help="keep the runs here (default: a temporary directory)")
    p.add_argument("--data-cache", type=Path, help="dataset cache directory")
    p.set_defaults(handler=handle)


def _training(domain: str, args: argparse.Namespace) -> Any:
    from nsm.data import VALIDATION_PARAMS
    from nsm.spec import parse_training
    from pydantic.alias_generators import to_camel

    params = {to_camel(k): max(10, int(round(v * args.scale))) for k, v in VALIDATION_PARAMS[domain].items()}
    spec = {**VALIDATE_SPEC, "domain": domain, "epochs": args.epochs, "learningRate": args.learning_rate,
            "batchSize": args.batch_size,
            "optimization": {**VALIDATE_SPEC["optimization"], "lrSchedule": args.lr_schedule},
            "seed": args.seed, "dataset": params}
    return parse_training({"metadata": {"name": f"validate-{domain}"}, "spec": spec})


def judge(per_class: list[float], min_class_accuracy: float) -> tuple[bool, bool]:
    """``(class_collapse, passed)`` for a domain's per-class validation accuracies."""
    from nsm.train.metrics import CLASS_COLLAPSE_THRESHOLD

    collapse = not per_class or min(per_class) < CLASS_COLLAPSE_THRESHOLD
    return collapse, not collapse and min(per_class) >= min_class_accuracy


def validate_domain(domain: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Train one domain; returns its table row."""
    from nsm.train.trainer import RunOptions, Trainer

    start = time.perf_counter()
    options = RunOptions(output_dir=root / domain, device=args.device, resume="never", quiet=True,
                         data_cache=args.data_cache, baselines=True)
    results = Trainer(_training(domain, args), options, log=lambda line: None).run()
    best, test = results["best"] or {}, results["test"] or {}
    per_class = [a for a in best.get("val_per_class_accuracy", []) if a is not None and not math.isnan(a)]
    baselines = {k: v for k, v in (results.get("baselines") or {}).items() if k in BASELINE_KEYS}
    best_baseline = max(baselines.items(), key=lambda kv: kv[1]) if baselines else ("-", math.nan)
    collapse, passed = judge(per_class, args.min_class_accuracy)
    return {
        "domain": domain,
        "best_epoch": best.get("epoch"),
        "val_balanced_accuracy": best.get("val_balanced_accuracy", math.nan),
        "val_per_class_accuracy": per_class,
        "test_accuracy": test.get("accuracy", math.nan),
        "class_collapse": collapse,
        "verdict": "PASS" if passed else "FAIL",
        "best_baseline": best_baseline[0],
        "best_baseline_accuracy": best_baseline[1],
        "margin": test.get("accuracy", math.nan) - best_baseline[1],
        "seconds": time.perf_counter() - start,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("domain", "best val bal.acc", "per-class acc", "collapse", "verdict",
              "best baseline (test)", "model test acc", "margin", "time")
    lines = [header]
    for r in rows:
        lines.append((
            r["domain"],
            f"{r['val_balanced_accuracy']:.3f}",
            " / ".join(f"{a:.3f}" for a in r["val_per_class_accuracy"]),
            "yes" if r["class_collapse"] else "no",
            r["verdict"],
            f"{r['best_baseline']} {r['best_baseline_accuracy']:.3f}",
            f"{r['test_accuracy']:.3f}",
            f"{r['margin']:+.3f}",
            f"{r['seconds']:.0f}s",
        ))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def handle(args: argparse.Namespace) -> int:
    domains = args.domains or list(DOMAIN_NAMES)
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nsm-validate-") as tmp:
        root = args.output_dir or Path(tmp)
        for domain in domains:
            print(f"validating {domain} ({args.epochs} epochs) ...", flush=True)
            rows.append(validate_domain(domain, args, root))
    print()
    print(format_table(rows))
    failed = [r["domain"] for r in rows if r["verdict"] != "PASS"]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} domains passed in {time.perf_counter() - start:.0f}s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


