"""``nsm report RUN_DIR``: training curves (loss, accuracy, per-class accuracy, lr) → RUN_DIR/curves.png."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="plot training curves of a run directory", description=__doc__)
    p.add_argument("run_dir", type=Path, help="directory with history.json (an `nsm train` output dir)")
    p.add_argument("-o", "--output", type=Path, help="PNG path (default: RUN_DIR/curves.png)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from nsm.train.curves import write_curves

    try:
        path = write_curves(args.run_dir, args.output)
    except (FileNotFoundError, ValueError) as exc:
        print(f"nsm report: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0
