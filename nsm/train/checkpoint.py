"""Checkpoint files, written atomically.

Layout of a run directory (the PVC in the cluster)::

    last.pt            after every epoch (what ``--resume auto`` loads)
    best.pt            whenever the validation loss improved
    epoch-NNNN.pt      every ``checkpoint.everyEpochs`` epochs, the newest ``checkpoint.keep`` kept
    history.json       per-epoch metrics, rewritten every epoch
    results.json       the final summary

Every file is written to a temporary file in the same directory, flushed and fsynced, then
renamed over the target with :func:`os.replace` (atomic on POSIX), and the directory is fsynced
so the rename itself survives a crash. A SIGKILL at any instant leaves either the old or the new
file, never a torn one.

Checkpoints contain only tensors, numbers, strings, lists and dicts, so they load with
``torch.load(..., weights_only=True)``: RNG states are converted to tensors and lists.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsm.contract import BEST_CHECKPOINT, EPOCH_CHECKPOINT_PATTERN, LAST_CHECKPOINT, epoch_checkpoint, json_safe
from nsm.spec import SpecError

_EPOCH_FILE = re.compile(EPOCH_CHECKPOINT_PATTERN)
CHECKPOINT_FORMAT = 1


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on this platform/filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new content, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(json_safe(obj), indent=2) + "\n").encode())


def serialize(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :class:`CheckpointManager` (``weights_only=True``)."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an nsm checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def check_world_size(state: dict[str, Any], world_size: int, allow_resharding: bool) -> bool:
    """Whether resuming ``state`` with ``world_size`` processes reshards (``nsm.train.distributed``).

    False: the same world size (exact resume). True: another one, allowed (the interrupted epoch
    restarts). Raises :class:`SpecError` naming the flags otherwise. Checkpoints without the key
    were written by one process.
    """
    saved = int(state.get("world_size") or 1)
    if saved == world_size:
        return False
    if not allow_resharding:
        raise SpecError([("--nproc-per-node/--nnodes", (
            f"the checkpoint was written with world size {saved}, this run has world size {world_size}; "
            "resume with the same world size, or pass --allow-resharding"))])
    return True


class CheckpointManager:
    """Writes ``last.pt`` / ``best.pt`` / ``epoch-NNNN.pt`` into ``directory`` and prunes old epochs."""

    def __init__(self, directory: str | Path, every_epochs: int = 10, keep: int = 3):
        if every_epochs < 1 or keep < 1:
            raise ValueError("CheckpointManager: every_epochs and keep must be >= 1")
        self.directory = Path(directory)
        self.every_epochs = every_epochs
        self.keep = keep
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def last_path(self) -> Path:
        return self.directory / LAST_CHECKPOINT

    @property
    def best_path(self) -> Path:
        return self.directory / BEST_CHECKPOINT

    def epoch_path(self, epoch: int) -> Path:
        return self.directory / epoch_checkpoint(epoch)

    def save(self, state: dict[str, Any], epoch: int, is_best: bool) -> list[Path]:
        """Write the checkpoints due after ``epoch`` (1-based); returns the paths written."""
        data = serialize({"format": CHECKPOINT_FORMAT, **state})
        written = []
        # best.pt and epoch files first: last.pt is the commit point a resume trusts.
        if is_best:
            atomic_write_bytes(self.best_path, data)
            written.append(self.best_path)
        if epoch % self.every_epochs == 0:
            atomic_write_bytes(self.epoch_path(epoch), data)
            written.append(self.epoch_path(epoch))
            self.prune()
        atomic_write_bytes(self.last_path, data)
        written.append(self.last_path)
        return written

    def save_last(self, state: dict[str, Any]) -> Path:
        """Write only ``last.pt`` (a mid-epoch checkpoint: no epoch finished, nothing is best)."""
        atomic_write_bytes(self.last_path, serialize({"format": CHECKPOINT_FORMAT, **state}))
        return self.last_path

    def epoch_files(self) -> list[tuple[int, Path]]:
        found = []
        for p in self.directory.iterdir():
            m = _EPOCH_FILE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def prune(self) -> list[Path]:
        """Delete all but the newest ``keep`` epoch files; returns the deleted paths."""
        files = self.epoch_files()
        doomed = [p for _, p in files[: max(0, len(files) - self.keep)]]
        for p in doomed:
            p.unlink(missing_ok=True)
        return doomed

    def latest(self) -> Path | None:
        return self.last_path if self.last_path.exists() else None


def capture_rng_state() -> dict[str, Any]:
    """Every RNG the training step may touch, as tensors and plain lists (``weights_only``-safe)."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npst["bit_generator"],
            "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": npst["pos"]},
            "has_gauss": npst["has_gauss"],
            "gauss": npst["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    # A checkpoint from a GPU run resumed on a CPU (or fewer GPUs) restores what it can.
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(cuda[i].cpu(), i)
