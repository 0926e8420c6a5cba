"""The outer training loop: setup, resume, epochs, early stopping, checkpoints and reporting.

:class:`Trainer` turns one :class:`~nsm.spec.NSMTraining` into a run directory (see
:mod:`nsm.train.checkpoint` for the layout). The epoch itself is :func:`nsm.train.loop.train_epoch`;
everything here happens once per epoch.

Exact resume: the model, optimizer, scheduler, GradScaler, every RNG state, the early-stopping
counters and the history are checkpointed after each epoch, and batch order depends only on
``(seed, epoch)``, so a run killed after epoch ``k`` and resumed from ``last.pt`` produces the
same numbers as one that was never interrupted (on CPU, same seed).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from nsm.contract import HISTORY_FILE, RESULTS_FILE, result_body, status_body
from nsm.contract import iso as rfc3339
from nsm.spec import NSMTraining, SpecError
from nsm.train import checkpoint as ckpt
from nsm.train import ownership
from nsm.train.device import amp_policy, configure_tf32, device_label, device_name, resolve_device
from nsm.train.errors import TrainingDiverged, TrainingPreempted
from nsm.train.loaders import EpochBatchSampler, make_loader
from nsm.train.loop import StepContext, evaluate, train_epoch
from nsm.train.preemption import EpochInterrupted, PartialEpoch, PreemptionGuard
from nsm.train.prometheus import TrainerMetrics
from nsm.train.progress import ProgressReporter
from nsm.train.schedule import current_lr, make_optimizer, make_scheduler, step_scheduler
from nsm.train.state import EarlyStopping, RunState
from nsm.train.tracking import Tracker

# The history keys that are wall-clock measurements (everything else is reproducible).
TIMING_KEYS = ("epoch_seconds", "samples_per_second")


@dataclass
class RunOptions:
    """How to run a spec on this machine (the CLI flags that are not part of the spec)."""

    output_dir: Path
    device: str = "auto"
    resume: str = "auto"  # auto | never | path to a checkpoint
    metrics_port: int | None = None
    quiet: bool = False
    data_cache: Path | None = None
    baselines: bool = False
    name: str | None = None  # default: $NSM_TRAINING_NAME, else metadata.name
    attempt: str | None = None  # default: $NSM_ATTEMPT, else "1"
    allow_resharding: bool = False  # resume a checkpoint of another world size (nsm.train.distributed)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_model_factory(dataset: Any, spec: Any) -> torch.nn.Module:
    from nsm.model import NSMConfig, NSMModel

    config = NSMConfig(
        feature_vocab=list(dataset.feature_vocab),
        num_relations=dataset.num_relations,
        num_classes=dataset.num_classes,
        hidden_dim=spec.model.hidden_dim,
        num_bases=spec.model.num_bases,
        pool_ratio=spec.pool_ratio,
        dropout=spec.model.dropout,
        l1_layers=spec.model.l1_layers,
        coarse_layers=spec.model.coarse_layers,
    )
    return NSMModel(config)


def _model_config(model: torch.nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else {}


def _prefixed(prefix: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


class Trainer:
    """Train ``training.spec`` into ``options.output_dir``; :meth:`run` returns ``results.json``.

    Args:
        training: the NSMTraining (its ``metadata.name`` names the run).
        options: machine-side options (device, resume, metrics port, …).
        dataset: an ``NSMDataset``-like object; loaded with :func:`nsm.data.load_dataset` if None.
        model_factory: ``(dataset, spec) -> nn.Module`` (default builds :class:`nsm.model.NSMModel`).
        log: where per-epoch lines go (default: print to stdout).
    """

    def __init__(
        self,
        training: NSMTraining,
        options: RunOptions,
        *,
        dataset: Any = None,
        model_factory: Callable[[Any, Any], torch.nn.Module] | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.training = training
        self.spec = training.spec
        self.options = options
        self.out = Path(options.output_dir)
        self.name = options.name or os.environ.get("NSM_TRAINING_NAME") or training.metadata.name
        self.attempt = options.attempt or os.environ.get("NSM_ATTEMPT") or "1"
        self.dataset = dataset
        self.model_factory = model_factory or default_model_factory
        self._log = log or (lambda line: print(line, flush=True))
        self.metrics: TrainerMetrics | None = None
        self.reporter: ProgressReporter | None = None
        self.tracker: Tracker | None = None
        self.preemption = PreemptionGuard()
        self.last_checkpoint: dict[str, Any] | None = None
        self.training_uid = ownership.training_uid()
        self.moved_aside: dict[str, Any] | None = None
        self.world_size = 1  # processes training together (nsm.train.distributed.DistributedTrainer)
        self.is_main = True  # the process that writes files and reports (rank 0)

    def log(self, line: str) -> None:
        if not self.options.quiet:
            self._log(line)

    def close(self) -> None:
        """Release what the run holds beyond its own lifetime (a process group; nothing here)."""

    def _load_dataset(self) -> None:
        from nsm.data import load_dataset

        spec = self.spec
        self.dataset = load_dataset(spec.domain.value, spec.dataset_params(), seed=spec.seed,
                                    cache_dir=self.options.data_cache)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        spec = self.spec
        self.device = resolve_device(self.options.device)
        self.amp = amp_policy(spec, self.device)
        if self.amp.note:
            self.log(self.amp.note)
        configure_tf32(spec.optimization.tf32)
        seed_everything(spec.seed)
        if self.dataset is None:
            self._load_dataset()
        from nsm.data import BatchedGraphDataset, split_dataset

        store = self.dataset.store
        # Matched pairs (and kg's (rule, head) groups) never straddle a split.
        self.splits = dict(zip(("train", "val", "test"), split_dataset(self.dataset, seed=spec.seed)))
        self.loaders = {}
        for split, idx in self.splits.items():
            ds = BatchedGraphDataset(store, idx)
            sampler = self._sampler(split, torch.arange(len(ds)))
            self.loaders[split] = make_loader(ds, sampler, spec.data_loader, self.device, spec.seed)
        torch.manual_seed(spec.seed)  # weight init independent of data generation
        self.model = self.model_factory(self.dataset, spec).to(self.device)
        self.train_model = self.model  # what the epoch loop calls (DistributedTrainer: the DDP wrapper)
        self.optimizer = make_optimizer(self.model, spec)
        self.scheduler = make_scheduler(self.optimizer, spec)
        self.scaler = self.amp.make_scaler()
        self.stopper = EarlyStopping(spec.early_stopping.patience, spec.early_stopping.min_delta)
        self.state = RunState()
        self.ckpts = ckpt.CheckpointManager(self.out, spec.checkpoint.every_epochs, spec.checkpoint.keep)
        self.ctx = StepContext(self.device, self.amp, float(spec.cycle_weight), spec.optimization.gradient_clip)

    def _sampler(self, split: str, indices: torch.Tensor) -> EpochBatchSampler:
        return EpochBatchSampler(indices, self.spec.batch_size, shuffle=split == "train", seed=self.spec.seed)

    def _resume(self) -> None:
        path = self._resume_path()
        if path is not None:
            self._load(path)

    def _resume_path(self) -> Path | None:
        mode = self.options.resume
        if mode == "never":
            return None
        if mode == "auto":
            return self.ckpts.latest()
        path = Path(mode)
        if not path.exists():
            raise FileNotFoundError(f"--resume {mode}: no such checkpoint")
        return path

    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "epoch": self.state.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.capture_rng_state(),
            "early_stopping": self.stopper.state_dict(),
            "run": self.state.state_dict(),
            "spec": self.spec.to_wire(),
            "model_config": _model_config(self.model),
            "name": self.name,
            "training_uid": self.training_uid,
            "partial_epoch": None,  # see _save_interrupted
            "world_size": self.world_size,
        }

    def _save_interrupted(self, partial: PartialEpoch) -> None:
        """``last.pt`` at the exact mid-epoch position (only last.pt: the epoch is not done)."""
        self.ckpts.save_last({**self._checkpoint_state(), "partial_epoch": partial.state_dict()})
        self.log(f"checkpoint {self.ckpts.last_path}: epoch {partial.epoch} after {partial.steps} steps")

    def _read_checkpoint(self, path: Path) -> dict[str, Any] | None:
        """The checkpoint to resume from, or None when it belongs to another training."""
        state = ckpt.load_checkpoint(path, map_location=self.device)
        if self.options.resume == "auto" and not ownership.belongs(state, self.training_uid):
            # Another training's files (a retained PVC re-used by name): keep them, start afresh.
            self.moved_aside = ownership.move_aside(self.out, state.get("training_uid"))
            self.log(f"checkpoints of training {self.moved_aside['previousUid']} moved to {self.moved_aside['path']}")
            return None
        state["written_at"] = rfc3339(path.stat().st_mtime)
        return state

    def _load(self, path: Path) -> None:
        state = self._read_checkpoint(path)
        if state is not None:
            self._apply_checkpoint(path, state)

    def _apply_checkpoint(self, path: Path, state: dict[str, Any]) -> None:
        resharded = ckpt.check_world_size(state, self.world_size, self.options.allow_resharding)
        if state["spec"].get("domain") != self.spec.domain.value:
            raise SpecError([("spec.domain", f"cannot resume {path}: checkpoint is for domain "
                                             f"{state['spec'].get('domain')!r}, not {self.spec.domain.value!r}")])
        ownership.check_shape(path, state.get("model_config"), _model_config(self.model))
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:  # a shape the config check cannot see (a custom model factory)
            raise SpecError([("spec.model", f"cannot resume {path}: {str(exc).splitlines()[0]}")]) from None
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.stopper.load_state_dict(state["early_stopping"])
        # A new patience/minDelta in the spec wins over the checkpointed one.
        self.stopper.patience = self.spec.early_stopping.patience
        self.stopper.min_delta = self.spec.early_stopping.min_delta
        self.state.load_state_dict(state["run"])
        self._restore_rng(state, resharded)
        self.last_checkpoint = {"epoch": self.state.epoch, "path": str(path), "time": state["written_at"]}
        partial = state.get("partial_epoch")
        if partial and resharded:
            self.log(f"resharding from {state.get('world_size') or 1} to {self.world_size} processes: "
                     f"epoch {partial['epoch']} restarts from its beginning ({partial['steps']} steps redone)")
            partial = None
        self.ctx.resume = PartialEpoch.from_state(partial) if partial else None
        where = f"in epoch {partial['epoch']} after {partial['steps']} steps" if partial else ""
        self.log(f"resumed from {path} after epoch {self.state.epoch} {where}".rstrip())

    def _restore_rng(self, state: dict[str, Any], resharded: bool) -> None:
        ckpt.restore_rng_state(state["rng"])

    def _start_observers(self) -> None:
        self.metrics = TrainerMetrics(self.name, self.spec.domain.value, epochs_planned=self.spec.epochs,
                                      attempt=self.attempt, device=device_label(self.device))
        if self.options.metrics_port is not None:
            port = self.metrics.serve(self.options.metrics_port)
            self.log(f"metrics on http://0.0.0.0:{port}/metrics")
        if self.last_checkpoint is not None:
            self.metrics.checkpoint_written(self.ckpts.last_path.stat().st_mtime)
        self.reporter = ProgressReporter.from_env()
        self.tracker = Tracker(self.spec.tracking, self.out, resumed_after=self.state.epoch, name=self.name,
                               config=self.spec.to_wire())
        if self.reporter is not None and self.moved_aside is not None:
            self.reporter.report({"status": {"checkpointsMovedAside": self.moved_aside}})

    def _stop_observers(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
        if self.reporter is not None:
            self.reporter.close()
        if self.metrics is not None:
            self.metrics.close()

    # ------------------------------------------------------------------ epochs
    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        self.ctx.epoch = epoch
        resume = self.ctx.resume if self.ctx.resume is not None and self.ctx.resume.epoch == epoch else None
        self.ctx.resume = resume
        self.loaders["train"].sampler.set_epoch(epoch, skip=resume.steps if resume else 0)
        lr = resume.lr if resume and resume.lr is not None else current_lr(self.optimizer)
        start = time.perf_counter()
        batches = tqdm(self.loaders["train"], desc=f"epoch {epoch}/{self.spec.epochs}", leave=False,
                       unit="batch", disable=self.options.quiet or not sys.stderr.isatty())
        try:
            train = train_epoch(self.train_model, batches, self.optimizer, self.scaler, self.ctx)
        except EpochInterrupted as exc:
            exc.partial.lr = lr
            self._save_interrupted(exc.partial)
            raise TrainingPreempted(self.preemption.signum or 15, f"in epoch {epoch}") from None
        self.ctx.resume = None
        train_seconds = time.perf_counter() - start
        val = self._validate()
        if not math.isfinite(val["loss"]):
            raise TrainingDiverged(epoch, "validation loss")
        step_scheduler(self.scheduler, val["loss"])
        seconds = time.perf_counter() - start
        return {
            "epoch": epoch,
            **_prefixed("train", {k: v for k, v in train.items() if k != "samples"}),
            **_prefixed("val", val),
            "lr": lr,
            "epoch_seconds": seconds,
            "samples_per_second": train["samples"] / max(train_seconds, 1e-9),
        }

    def _validate(self) -> dict[str, Any]:
        return evaluate(self.model, self.loaders["val"], self.ctx)

    def _after_epoch(self, row: dict[str, Any]) -> None:
        epoch = row["epoch"]
        improved = self.stopper.update(epoch, row["val_loss"])
        self.state.epoch = epoch
        self.state.history.append(row)
        self.state.train_seconds += row["epoch_seconds"]
        if improved:
            self.state.best_metrics = dict(row)
        self._publish_epoch(row, improved)

    def _publish_epoch(self, row: dict[str, Any], improved: bool) -> None:
        """Checkpoints, history, metrics, tracking, progress and the log line of an epoch."""
        epoch = row["epoch"]
        self.ckpts.save(self._checkpoint_state(), epoch, improved)
        now = time.time()
        self.last_checkpoint = {"epoch": epoch, "path": str(self.ckpts.last_path), "time": rfc3339(now)}
        ckpt.atomic_write_json(self.out / HISTORY_FILE, self.state.history)
        assert self.metrics is not None
        self.metrics.observe_epoch(row, self.stopper.best_loss)
        self.metrics.checkpoint_written(now)
        assert self.tracker is not None
        self.tracker.log_epoch(row)
        if self.reporter is not None:
            self.reporter.report(status_body(row, self.spec.epochs, self.stopper.best_loss, self.last_checkpoint))
        per_class = " ".join(f"{a:.2f}" for a in row["val_per_class_accuracy"])
        self.log(
            f"epoch {epoch:>4}/{self.spec.epochs}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}"
            f" | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}"
            f" bal {row['val_balanced_accuracy']:.3f} [{per_class}] auc {row['val_auc']:.3f}"
            f" | lr {row['lr']:.2e} | {row['epoch_seconds']:.1f}s {row['samples_per_second']:.0f} graphs/s"
            + ("  *best" if improved else "")
        )

    # ------------------------------------------------------------------ results
    def _test_best(self) -> dict[str, Any] | None:
        if not self.ckpts.best_path.exists():
            return None
        best = ckpt.load_checkpoint(self.ckpts.best_path, map_location=self.device)
        self.model.load_state_dict(best["model"])
        return evaluate(self.model, self.loaders["test"], self.ctx)

    def _results(self, status: str, stop_reason: str, started: float, resumed_from: int) -> dict[str, Any]:
        history = self.state.history
        last = history[-1] if history else None
        best = self.state.best_metrics
        results: dict[str, Any] = {
            "status": status,
            "stop_reason": stop_reason,
            "name": self.name,
            "domain": self.spec.domain.value,
            "epochs_run": self.state.epoch,
            "epochs_planned": self.spec.epochs,
            "resumed_from_epoch": resumed_from,
            "best_epoch": self.stopper.best_epoch,
            "final": last,
            "best": best,
            "test": self._test_best(),
            "timing": {
                "train_seconds": self.state.train_seconds,
                "mean_epoch_seconds": self.state.train_seconds / max(len(history), 1),
                "attempt_seconds": time.perf_counter() - started,
            },
            "device": device_name(self.device),
            "attempt": self.attempt,
            "finished_at": rfc3339(),
            "config": {"spec": self.spec.to_wire(), "model": _model_config(self.model)},
            "dataset": {
                "domain": self.spec.domain.value,
                "params": dict(getattr(self.dataset, "params", {})),
                "sizes": {k: int(v.numel()) for k, v in self.splits.items()},
                "num_relations": int(self.dataset.num_relations),
                "num_classes": int(self.dataset.num_classes),
            },
        }
        if self.options.baselines:
            from nsm.data.baselines import run_baselines

            results["baselines"] = run_baselines(self.dataset, self.splits["train"], self.splits["test"])
        return results

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        """Train to the end (or early stop); write ``results.json``; return its content.

        Raises:
            TrainingDiverged: a loss became NaN/inf (``results.json`` says ``diverged``).
        """
        with PreemptionGuard() as self.preemption:
            return self._run()

    def _run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self._setup()
        self.ctx.stop_requested = lambda: self.preemption.requested
        self._resume()
        resumed_from = self.state.epoch
        self._start_observers()
        stop_reason = "completed"
        try:
            try:
                for epoch in range(self.state.epoch + 1, self.spec.epochs + 1):
                    if self.stopper.should_stop:
                        break
                    if self._stop_before_epoch():  # last.pt is at this point
                        raise TrainingPreempted(self.preemption.signum or 15, f"before epoch {epoch}")
                    self._after_epoch(self._run_epoch(epoch))
            except TrainingDiverged:
                self._finish(self._results("diverged", "diverged", started, resumed_from))
                raise
            if self.stopper.should_stop and self.state.epoch < self.spec.epochs:
                stop_reason = "early_stopped"
                self.log(f"early stopping: no val-loss improvement for {self.stopper.bad_epochs} epochs")
            results = self._results("completed", stop_reason, started, resumed_from)
            self._finish(results)
        finally:
            self._stop_observers()
        return results

    def _stop_before_epoch(self) -> bool:
        return self.preemption.requested and self.ctx.resume is None

    def _finish(self, results: dict[str, Any]) -> None:
        ckpt.atomic_write_json(self.out / RESULTS_FILE, results)
        if self.reporter is not None:
            self.reporter.report(result_body(results))
