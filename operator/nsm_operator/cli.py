"""``nsm-operator``: ``kopf run`` of ``nsm_operator.main`` with the namespaces from settings.

Extra arguments go to ``kopf run`` (e.g. ``--liveness=http://0.0.0.0:8081/healthz``,
``--verbose``). ``--namespace``/``--all-namespaces`` given here override NSM_OPERATOR_NAMESPACES.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from nsm_operator.settings import ENV_PREFIX, OperatorSettings, SettingsError

NAMESPACES_ENV = f"{ENV_PREFIX}NAMESPACES"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nsm-operator",
        description="Run the NSMTraining operator (kopf). Configuration: NSM_OPERATOR_* environment "
        "variables (see docs/operator.md); unknown options are passed to `kopf run`.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="serve this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve all namespaces")
    parser.add_argument(
        "--liveness", metavar="URL", default=None, help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument("--dry-print", action="store_true", help="print the kopf command line and exit")
    return parser


def served_namespaces(args: argparse.Namespace, settings: OperatorSettings) -> list[str]:
    """The namespaces (or globs) to serve; empty = all. The flags override the setting."""
    return list(args.namespace) or ([] if args.all_namespaces else list(settings.namespaces))


def kopf_args(args: argparse.Namespace, extra: Sequence[str], settings: OperatorSettings) -> list[str]:
    argv = ["run", "--standalone", "-m", "nsm_operator.main"]
    namespaces = served_namespaces(args, settings)
    if namespaces:
        for ns in namespaces:
            argv += ["--namespace", ns]
    else:
        argv.append("--all-namespaces")
    if args.liveness:
        argv.append(f"--liveness={args.liveness}")
    return argv + list(extra)


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    try:
        settings = OperatorSettings.from_env()
    except SettingsError as exc:
        print(f"nsm-operator: {exc}", file=sys.stderr)
        return 2
    kopf_argv = kopf_args(args, extra, settings)
    if args.dry_print:
        print("kopf " + " ".join(kopf_argv))
        return 0
    # kopf serves the trainings in these namespaces; the operator's own child watches
    # (nsm_operator/watches.py, started in main.startup) read the same scope from the setting.
    os.environ[NAMESPACES_ENV] = ",".join(served_namespaces(args, settings))
    from kopf.cli import main as kopf_main  # heavy import, only when running

    kopf_main.main(args=kopf_argv, prog_name="nsm-operator")  # exits the process
    return 0


if __name__ == "__main__":
    sys.exit(main())
