"""Checks of ``nsm train``'s machine-side flags, run before any data is generated.

A user error (a device this machine lacks, a checkpoint that is missing or unreadable, an output
path that is a file …) ends the command with one line naming the flag and exit code 2, the
code the operator treats as permanent, instead of a traceback minutes into the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class UsageError(ValueError):
    """A flag value this machine cannot run; ``str()`` names the flag."""


def port(text: str) -> int:
    """argparse type of a TCP port (1-65535)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1-65535")
    return value


def positive(text: str) -> int:
    """argparse type of a count >= 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count >= 1")
    return value


def check_device(name: str) -> None:
    from nsm.train.device import resolve_device

    try:
        resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--device {name}: {exc}") from None


def check_directory(flag: str, path: Path | None) -> None:
    """``path`` is a directory that exists or can be created, and is writable."""
    if path is None:
        return
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: {existing} is not writable")


def check_resume(mode: str, domain: str) -> None:
    """An explicit ``--resume PATH`` must be a readable nsm checkpoint of the same domain."""
    if mode in ("auto", "never"):
        return
    path = Path(mode)
    if not path.is_file():
        raise UsageError(f"--resume {mode}: no such checkpoint file (or use auto | never)")
    from nsm.train.checkpoint import load_checkpoint

    try:
        state: dict[str, Any] = load_checkpoint(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--resume {mode}: unreadable checkpoint ({reason})") from None
    found = (state.get("spec") or {}).get("domain")
    if found != domain:
        raise UsageError(f"--resume {mode}: checkpoint is for domain {found!r}, not {domain!r}")


def check_tracking(tracking: Any) -> None:
    """The packages ``spec.tracking`` needs are installed (the ``tracking`` extra)."""
    import importlib.util

    for field, package in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
        if getattr(tracking, field) and importlib.util.find_spec(package) is None:
            raise UsageError(f"spec.tracking.{field} needs the {package} package "
                             "(pip install 'nsm-operator[tracking]')")


def check_train_options(args: Any, domain: str, tracking: Any = None) -> None:
    """Every machine-side flag of ``nsm train``; raises :class:`UsageError`."""
    if tracking is not None:
        check_tracking(tracking)
    check_device(args.device)
    check_directory("--output-dir", args.output_dir)
    check_directory("--data-cache", args.data_cache)
    check_resume(args.resume, domain)
