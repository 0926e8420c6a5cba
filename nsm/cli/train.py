"""``nsm train``: train one NSMTraining spec on this machine (or inside the trainer pod).

Spec sources, in order: ``-f FILE`` (an NSMTraining YAML), else ``--domain`` (the spec's defaults
for that domain), else the embedded default run (:mod:`nsm.train.defaults`, what ``make run``
trains). Flags then override the spec; ``--set path.to.field=value`` reaches any other field.

Exit codes (the operator's Job podFailurePolicy depends on them): 0 done, 2 invalid spec,
3 diverged (NaN/inf loss), 143 (130) stopped by SIGTERM (SIGINT) after writing ``last.pt`` at the
exact position (retryable: ``--resume auto`` continues mid-epoch), 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml
from pydantic.alias_generators import to_camel

from nsm.cli.preflight import UsageError, check_train_options, port, positive
from nsm.contract import (
    BEST_CHECKPOINT,
    CURVES_FILE,
    HISTORY_FILE,
    LAST_CHECKPOINT,
    NNODES_FLAG,
    NPROC_PER_NODE_FLAG,
    RESULTS_FILE,
    ExitCode,
)
from nsm.spec import KIND, SpecError, load_training, parse_training

# The trainer pod's metrics port (the operator's PodMonitor/Service scrape it).
IN_CLUSTER_METRICS_PORT = 9400

# flag dest -> spec path (camelCase)
SPEC_FLAGS: dict[str, str] = {
    "domain": "domain",
    "epochs": "epochs",
    "batch_size": "batchSize",
    "learning_rate": "learningRate",
    "seed": "seed",
    "cycle_weight": "cycleWeight",
    "pool_ratio": "poolRatio",
    "num_workers": "dataLoader.numWorkers",
    "amp": "optimization.amp",
    "amp_dtype": "optimization.ampDtype",
}


def add_spec_arguments(p: argparse.ArgumentParser, *, with_file: bool = True) -> None:
    """The spec-building flags (shared with other sub-commands)."""
    if with_file:
        p.add_argument("-f", "--file", type=Path, help="NSMTraining YAML (kubectl-style manifest)")
    p.add_argument("--domain", choices=("planning", "causal", "kg"), help="reasoning domain")
    p.add_argument("--epochs", type=int, help="maximum number of epochs (spec.epochs)")
    p.add_argument("--batch-size", type=int, help="graphs per mini-batch (spec.batchSize)")
    p.add_argument("--learning-rate", type=float, help="initial learning rate (spec.learningRate)")
    p.add_argument("--seed", type=int, help="seed of data generation, splits and training (spec.seed)")
    p.add_argument("--cycle-weight", type=float, help="weight of the cycle-consistency loss (spec.cycleWeight)")
    p.add_argument("--pool-ratio", type=float, help="fraction of nodes the WHY step keeps (spec.poolRatio)")
    p.add_argument("--num-workers", type=int,
                   help="DataLoader worker processes (spec.dataLoader.numWorkers; default: the CPUs, at most 4)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="automatic mixed precision (spec.optimization.amp)")
    p.add_argument("--amp-dtype", choices=("bfloat16", "float16"),
                   help="autocast dtype; float16 needs CUDA (spec.optimization.ampDtype)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override any spec field, e.g. --set earlyStopping.patience=5 (repeatable)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from an NSMTraining spec (or the embedded default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_spec_arguments(p)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--output-dir", type=Path, help="run directory (default: runs/<name>)")
    p.add_argument("--resume", default="auto",
                   help="auto (last.pt in the output dir if present) | never | PATH (default: auto)")
    p.add_argument("--metrics-port", type=port,
                   help=f"serve Prometheus metrics on this port (default: {IN_CLUSTER_METRICS_PORT} "
                        "when NSM_TRAINING_NAME and NSM_TRAINING_NAMESPACE are set, else off)")
    p.add_argument("--data-cache", type=Path, help="dataset cache directory")
    p.add_argument("--baselines", action="store_true", help="also score the shortcut baselines")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip curves.png")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument(NPROC_PER_NODE_FLAG, type=positive, default=1, metavar="N",
                   help="data-parallel processes on this machine, one per GPU (default: 1; docs/distributed.md)")
    p.add_argument(NNODES_FLAG, type=positive, default=1, metavar="M",
                   help="machines in the run; this one's rank comes from $JOB_COMPLETION_INDEX (default: 1)")
    p.add_argument("--allow-resharding", action="store_true",
                   help="resume a checkpoint written by another number of processes "
                        "(an interrupted epoch restarts from its beginning)")
    p.set_defaults(handler=handle)


def _parse_value(text: str) -> Any:
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _camel_keys(obj: Any) -> Any:
    # The spec accepts both spellings; normalise so an override cannot collide with the file.
    if isinstance(obj, dict):
        return {to_camel(str(k)): _camel_keys(v) for k, v in obj.items()}
    return obj


def set_path(training: dict[str, Any], path: str, value: Any) -> None:
    """Set ``spec.a.b`` (or ``a.b``, meaning the spec; or ``metadata.name``) in ``training``."""
    parts = [p for p in path.split(".") if p]
    if not parts:
        raise SpecError([("", f"--set: empty field path in {path!r}")])
    if parts[0] == "metadata":
        node, parts = training.setdefault("metadata", {}), parts[1:]
    else:
        node = training.setdefault("spec", {})
        parts = [to_camel(p) for p in (parts[1:] if parts[0] == "spec" else parts)]
    for key in parts[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise SpecError([(f"spec.{key}", f"--set {path}: not a mapping")])
        node = child
    node[parts[-1]] = value


def _read_manifest(path: Path) -> dict[str, Any]:
    load_training(path)  # validates, and names the bad field, before any override is applied
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and doc.get("kind", KIND) == KIND:
            return doc
    raise SpecError([("", f"{path}: no {KIND} document found")])  # unreachable after load_training


def build_training(args: argparse.Namespace) -> Any:
    """The NSMTraining the flags describe; raises :class:`SpecError`."""
    from nsm.train.defaults import default_training

    if getattr(args, "file", None) is not None:
        try:
            obj = _read_manifest(args.file)
        except OSError as exc:
            raise SpecError([("", f"cannot read {args.file}: {exc.strerror or exc}")]) from None
        except UnicodeDecodeError:
            raise SpecError([("", f"cannot read {args.file}: not a UTF-8 text (YAML) file")]) from None
    elif args.domain is not None:
        obj = {"metadata": {"name": f"nsm-{args.domain}"}, "spec": {"domain": args.domain}}
    else:
        obj = default_training()
    obj = dict(obj)
    obj["spec"] = _camel_keys(obj.get("spec") or {})
    for dest, path in SPEC_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            set_path(obj, path, value)
    for item in args.overrides:
        path, sep, text = item.partition("=")
        if not sep:
            raise SpecError([("", f"--set expects PATH=VALUE, got {item!r}")])
        set_path(obj, path.strip(), _parse_value(text))
    obj.pop("status", None)
    return parse_training(obj)


def _print_summary(results: dict[str, Any], out: Path) -> None:
    best, test = results.get("best") or {}, results.get("test") or {}
    per_class = " ".join(f"{a:.3f}" for a in test.get("per_class_accuracy", []))
    print(f"\n{results['status']} ({results['stop_reason']}) after {results['epochs_run']} epochs "
          f"in {results['timing']['train_seconds']:.1f}s on {results['device']}")
    if best:
        print(f"best epoch {best['epoch']}: val loss {best['val_loss']:.4f}, "
              f"val balanced accuracy {best['val_balanced_accuracy']:.3f}")
    if test:
        print(f"test (best checkpoint): accuracy {test['accuracy']:.3f}, balanced {test['balanced_accuracy']:.3f}, "
              f"per class [{per_class}], AUC {test['auc']:.3f}")
    print(f"results:     {out / RESULTS_FILE}")
    print(f"history:     {out / HISTORY_FILE}")
    print(f"checkpoints: {out / LAST_CHECKPOINT}, {out / BEST_CHECKPOINT}")
    if (out / CURVES_FILE).exists():
        print(f"curves:      {out / CURVES_FILE}")


def handle(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        training = build_training(args)
    except SpecError as exc:
        print(f"nsm train: invalid spec: {exc}", file=sys.stderr)
        return ExitCode.INVALID_SPEC
    try:
        check_train_options(args, training.spec.domain.value, training.spec.tracking)
    except UsageError as exc:
        print(f"nsm train: {exc}", file=sys.stderr)
        return ExitCode.INVALID_SPEC
    world_size = args.nproc_per_node * args.nnodes
    from nsm.train.distributed import check_batch_size, worker_world_size

    if world_size > 1 and not worker_world_size():
        try:
            check_batch_size(training.spec.batch_size, world_size)
        except SpecError as exc:
            print(f"nsm train: invalid spec: {exc}", file=sys.stderr)
            return ExitCode.INVALID_SPEC
        from nsm.train.launcher import launch

        return launch(args.argv, args.nproc_per_node, args.nnodes)

    from nsm.train import TrainingDiverged
    from nsm.train.errors import TrainingPreempted
    from nsm.train.trainer import RunOptions, Trainer

    out = args.output_dir or Path("runs") / training.metadata.name
    metrics_port = args.metrics_port
    if metrics_port is None and os.environ.get("NSM_TRAINING_NAME") and os.environ.get("NSM_TRAINING_NAMESPACE"):
        metrics_port = IN_CLUSTER_METRICS_PORT
    options = RunOptions(output_dir=out, device=args.device, resume=args.resume,
                         metrics_port=metrics_port, quiet=args.quiet,
                         data_cache=args.data_cache, baselines=args.baselines,
                         allow_resharding=args.allow_resharding)
    trainer = None
    try:
        if worker_world_size() > 1:  # one rank of a run started by nsm's launcher or torchrun
            from nsm.train.distributed import DistributedTrainer

            trainer = DistributedTrainer(training, options)
        else:
            trainer = Trainer(training, options)
        results = trainer.run()
    except SpecError as exc:
        print(f"nsm train: invalid spec: {exc}", file=sys.stderr)
        return ExitCode.INVALID_SPEC
    except TrainingDiverged as exc:
        print(f"nsm train: {exc}; see {out / RESULTS_FILE}", file=sys.stderr)
        return ExitCode.DIVERGED
    except TrainingPreempted as exc:  # ExitCode.PREEMPTED (SIGTERM) or INTERRUPTED (SIGINT)
        print(f"nsm train: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nsm train: interrupted; resume with --resume auto", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception:  # noqa: BLE001 - anything else is retryable (exit 1)
        traceback.print_exc()
        return ExitCode.ERROR
    finally:
        if trainer is not None:
            trainer.close()
    if not trainer.is_main:
        return ExitCode.OK  # rank 0 writes the curves and prints the summary
    if args.report:
        try:
            from nsm.train.curves import write_curves

            write_curves(out)
        except Exception as exc:  # noqa: BLE001 - a plot must not fail a finished training
            print(f"nsm train: could not write curves.png: {exc}", file=sys.stderr)
    _print_summary(results, out)
    return ExitCode.OK
