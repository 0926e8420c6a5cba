"""``nsm crd``: print or write the NSMTraining CustomResourceDefinition."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "crd",
        help="print the NSMTraining CRD generated from the spec",
        description="Generate the NSMTraining CustomResourceDefinition from nsm/spec.py.",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nsm.crd import render_crd

    text = render_crd()
    if args.output:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    else:
        print(text, end="")
    return 0
