"""The ``nsm`` command: one sub-command a module, each with ``register(subparsers)``.

Sub-command modules import heavy libraries (torch, kubernetes, modal) inside their handlers,
so ``nsm --help`` stays fast and ``nsm crd`` works without torch being loaded.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence

from nsm import __version__

# (module, sub-commands it registers), in the order `nsm --help` lists them.
SUBCOMMAND_MODULES = (
    "nsm.cli.train",
    "nsm.cli.validate",
    "nsm.cli.baselines",
    "nsm.cli.report",
    "nsm.cli.crd",
    "nsm.cli.modal",
)


# Docstrings double as help text; they are written in Sphinx markup (``x``, :mod:`x`).
_MARKUP = re.compile(r":[a-z]+:`~?([^`]+)`|``([^`]+)``")


class CommandParser(argparse.ArgumentParser):
    """argparse with plain-text help and one-line usage errors (exit 2, no usage dump)."""

    def format_help(self) -> str:
        return _MARKUP.sub(lambda m: m.group(1) or m.group(2), super().format_help())

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="nsm",
        description="Train and check the Neural Symbolic Model (NSM).",
    )
    parser.add_argument("--version", action="version", version=f"nsm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a missing dependency inside an existing module is a bug
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv[argv.index(args.command) + 1:] if args.command in argv else []  # e.g. to re-run in workers
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
