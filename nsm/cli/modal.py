"""``nsm modal``: train an NSMTraining on Modal instead of a Kubernetes cluster.

  nsm modal deploy [-f nsmtraining.yaml] [--quiet]  deploy the trainer App (spec.modal.app)
  nsm modal run -f nsmtraining.yaml [--detach]      spawn a training; print the call id and follow it
  nsm modal logs NAME [--tail N]                    print the last log lines of NAME's call
  nsm modal attach NAME                             stream NAME's logs until the call ends
  nsm modal cancel CALL_ID                          cancel a call

``run`` records each call id by training name in ${XDG_STATE_HOME:-~/.local/state}/nsm/
modal-calls.json; ``logs`` and ``attach`` look it up there (e.g. after ``run --detach``).

Credentials are Modal's own (``modal token new``, ``~/.modal.toml`` or MODAL_TOKEN_ID /
MODAL_TOKEN_SECRET). GPU, CPU, memory, timeout, retries and the Volume come from the spec; see
docs/modal.md. ``run`` deploys the App first when it is missing and keeps Modal's retries on
(``spec.retry`` within Modal's limits). Each SDK call has a 30 s deadline
(NSM_MODAL_TIMEOUT_SECONDS; a deploy 30 min). Exit codes: 0 succeeded (or detached), 2 invalid spec,
3 diverged, 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import time
from typing import Any

from nsm.contract import HISTORY_FILE, RESULTS_FILE, ExitCode, exit_code_of
from nsm.spec import SpecError

FOLLOW_SECONDS = 10.0
TIMEOUT_ENV = "NSM_MODAL_TIMEOUT_SECONDS"


def register(subparsers: argparse._SubParsersAction) -> None:
    from nsm.cli.train import add_spec_arguments

    p = subparsers.add_parser("modal", help="train on Modal (deploy the App, run a training)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="modal_command", metavar="ACTION")
    p.set_defaults(handler=lambda args: (p.print_help(), ExitCode.INVALID_SPEC)[1])

    deploy = sub.add_parser("deploy", help="deploy the trainer App for a spec (default: the embedded one)")
    add_spec_arguments(deploy)
    deploy.add_argument("--app", help="App name (default: spec.modal.app)")
    deploy.add_argument("--strict", action="store_true",
                        help="refuse retry settings beyond Modal's limits instead of clamping them")
    deploy.add_argument("--quiet", action="store_true", help="do not stream Modal's build and deploy output")
    deploy.set_defaults(handler=handle_deploy)

    run = sub.add_parser("run", help="spawn a training on Modal and follow it")
    add_spec_arguments(run)
    run.add_argument("--name", help="training name: the Volume directory (default: metadata.name)")
    run.add_argument("--detach", action="store_true", help="print the call id and return")
    run.add_argument("--strict", action="store_true",
                     help="refuse retry settings beyond Modal's limits instead of clamping them")
    run.add_argument("--quiet", action="store_true",
                     help="do not stream Modal's build output (an automatic deploy) and spawn progress")
    run.add_argument("--poll-seconds", type=float, default=FOLLOW_SECONDS, help="follow interval")
    run.set_defaults(handler=handle_run)

    logs = sub.add_parser("logs", help="print the last log lines of a training's recorded call")
    logs.add_argument("name", help="training name given to `nsm modal run`")
    logs.add_argument("--tail", type=int, default=100, help="how many log lines (default 100)")
    logs.set_defaults(handler=handle_logs)

    attach = sub.add_parser("attach", help="stream a training's logs until its call ends, then its result")
    attach.add_argument("name", help="training name given to `nsm modal run`")
    attach.add_argument("--poll-seconds", type=float, default=FOLLOW_SECONDS,
                        help="how often to ask for the result once the log stream ends")
    attach.set_defaults(handler=handle_attach)

    cancel = sub.add_parser("cancel", help="cancel a call")
    cancel.add_argument("call_id")
    cancel.set_defaults(handler=handle_cancel)


def _err(text: str) -> None:
    print(f"nsm modal: {text}", file=sys.stderr)


def _modal_ready() -> bool:
    if importlib.util.find_spec("modal") is None:
        _err("the Modal SDK is not installed: pip install 'nsm-operator[modal]'")
        return False
    from modal.config import config

    if not (config.get("token_id") and config.get("token_secret")):
        _err("no Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET")
        return False
    return True


def _output(quiet: bool) -> contextlib.AbstractContextManager[Any]:
    """Modal's own build/deploy output on the terminal (an image build takes minutes; silence
    would look like a hang) unless ``--quiet``."""
    if quiet:
        return contextlib.nullcontext()
    import modal

    return modal.enable_output()  # type: ignore[no-any-return]


def _training(args: argparse.Namespace) -> Any:
    from nsm.cli.train import build_training
    from nsm.modal.mapping import modal_options

    training = build_training(args)
    options = modal_options(training.spec, strict=args.strict)
    for warning in options.warnings:
        _err(f"warning: {warning}")
    return training


def _bridge() -> Any:
    """The real bridge; ``NSM_MODAL_TIMEOUT_SECONDS`` overrides its per-call deadline (default 30 s)."""
    from nsm.modal.bridge import DEFAULT_TIMEOUT_SECONDS, BridgeError, SDKBridge

    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        timeout = float(raw) if raw else DEFAULT_TIMEOUT_SECONDS
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise BridgeError("InvalidSetting", f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}",
                          retryable=False)
    return SDKBridge(timeout=timeout, modal_retries=True)


def handle_deploy(args: argparse.Namespace) -> int:
    from nsm.modal.bridge import BridgeError
    from nsm.modal.mapping import ModalLimitError

    try:
        training = _training(args)
    except (SpecError, ModalLimitError, ValueError) as exc:
        _err(f"invalid spec: {exc}")
        return ExitCode.INVALID_SPEC
    if args.app:
        training.spec.modal.app = args.app
    if not _modal_ready():
        return ExitCode.ERROR
    try:
        with _output(args.quiet):
            app = _bridge().deploy(training.spec)
    except BridgeError as exc:
        _err(str(exc))
        return ExitCode.ERROR
    env = training.spec.modal.environment or "default"
    print(f"deployed Modal app {app!r} (function 'train', environment {env}, volume {training.spec.modal.volume!r})")
    return ExitCode.OK


def _progress_line(row: dict[str, Any], epochs: int) -> str:
    return (f"epoch {row.get('epoch', '?'):>4}/{epochs}  train loss {row.get('train_loss', float('nan')):.4f}"
            f" | val loss {row.get('val_loss', float('nan')):.4f} acc {row.get('val_accuracy', float('nan')):.3f}")


def follow(bridge: Any, training: Any, name: str, call_id: str, poll_seconds: float) -> int:
    """Print new epochs from the Volume's history.json until the call ends; return the exit code."""
    from nsm.modal.bridge import BridgeError, Pending

    spec, shown = training.spec, 0
    while True:
        try:
            outcome = bridge.poll(call_id)
            history = bridge.read_json(spec, name, HISTORY_FILE) or []
        except BridgeError as exc:
            _err(f"{exc} (still following; Ctrl-C to stop, the call keeps running)")
            outcome, history = Pending(), []
        for row in history[shown:]:
            print(_progress_line(row, spec.epochs), flush=True)
        shown = max(shown, len(history))
        code = report_outcome(outcome, spec.modal.volume, name)
        if code is not None:
            return code
        time.sleep(poll_seconds)


def report_outcome(outcome: Any, volume: str, name: str) -> int | None:
    """Print a final outcome and return its exit code; None while the call is pending."""
    from nsm.modal.bridge import Expired, Failed, Succeeded

    if isinstance(outcome, Succeeded):
        result = outcome.result
        print(f"succeeded: {result.get('status', 'completed')} ({result.get('stop_reason', '')}) after "
              f"{result.get('epochs_run', '?')} epochs; results in volume {volume!r} at {name}/{RESULTS_FILE}")
        return ExitCode.OK
    if isinstance(outcome, Failed):
        _err(f"failed: {outcome.reason}: {outcome.message}")
        return exit_code_of(outcome.reason) or ExitCode.ERROR
    if isinstance(outcome, Expired):
        _err(f"{outcome.message}")
        return ExitCode.ERROR
    return None


def handle_run(args: argparse.Namespace) -> int:
    from nsm.modal.bridge import BridgeError, new_token
    from nsm.modal.mapping import ModalLimitError

    if args.file is None:
        _err("run needs -f nsmtraining.yaml")
        return ExitCode.INVALID_SPEC
    try:
        training = _training(args)
    except (SpecError, ModalLimitError, ValueError) as exc:
        _err(f"invalid spec: {exc}")
        return ExitCode.INVALID_SPEC
    if not _modal_ready():
        return ExitCode.ERROR
    name = args.name or training.metadata.name
    try:
        bridge = _bridge()
        with _output(args.quiet):
            call_id = bridge.spawn(training.spec, name, 1, new_token())
    except BridgeError as exc:
        _err(str(exc))
        return ExitCode.ERROR
    print(f"call id: {call_id}", flush=True)
    _record(name, call_id, training.spec)
    if args.detach:
        print(f"detached; follow with: nsm modal attach {name}, cancel with: nsm modal cancel {call_id}")
        return ExitCode.OK
    try:
        return follow(bridge, training, name, call_id, args.poll_seconds)
    except KeyboardInterrupt:
        print(f"\nstopped following; the call keeps running. Cancel with: nsm modal cancel {call_id}")
        return ExitCode.INTERRUPTED


def handle_cancel(args: argparse.Namespace) -> int:
    from nsm.modal.bridge import BridgeError

    if not _modal_ready():
        return ExitCode.ERROR
    try:
        _bridge().cancel(args.call_id)
    except BridgeError as exc:
        _err(str(exc))
        return ExitCode.ERROR
    print(f"cancelled {args.call_id}")
    return ExitCode.OK


def _record(name: str, call_id: str, spec: Any) -> None:
    from nsm.modal.calls import record_call

    try:
        record_call(name, call_id, spec)
    except OSError as exc:  # the call runs anyway; only `logs` / `attach NAME` will not find it
        _err(f"warning: could not record the call id for `nsm modal attach`: {exc}")


def _recorded(name: str) -> dict[str, Any] | None:
    from nsm.modal.calls import UnknownCall, find_recorded_call

    try:
        return find_recorded_call(name)
    except UnknownCall as exc:
        _err(str(exc))
        return None


def handle_logs(args: argparse.Namespace) -> int:
    from nsm.modal.bridge import BridgeError

    if args.tail < 1:
        _err(f"--tail must be at least 1, got {args.tail}")
        return ExitCode.INVALID_SPEC
    entry = _recorded(args.name)
    if entry is None:
        return ExitCode.INVALID_SPEC
    if not _modal_ready():
        return ExitCode.ERROR
    try:
        messages = _bridge().log_tail(entry["callId"], args.tail)
    except BridgeError as exc:
        _err(str(exc))
        return ExitCode.ERROR
    for message in messages:
        print(message, end="" if message.endswith("\n") else "\n")
    return ExitCode.OK


def handle_attach(args: argparse.Namespace) -> int:
    from nsm.modal.bridge import BridgeError, Pending

    entry = _recorded(args.name)
    if entry is None:
        return ExitCode.INVALID_SPEC
    if not _modal_ready():
        return ExitCode.ERROR
    call_id = entry["callId"]
    print(f"attached to call {call_id} of {args.name!r} (Ctrl-C detaches; the call keeps running)", flush=True)
    try:
        bridge = _bridge()
        bridge.stream_logs(call_id, lambda m: print(m, end="" if m.endswith("\n") else "\n", flush=True))
        while True:  # the stream ends when Modal sees the call finish (best effort): ask for the result
            outcome = bridge.poll(call_id)
            code = report_outcome(outcome, entry.get("volume", "?"), args.name)
            if code is not None:
                return code
            if not isinstance(outcome, Pending):
                return ExitCode.ERROR
            time.sleep(args.poll_seconds)
    except BridgeError as exc:
        _err(str(exc))
        return ExitCode.ERROR
    except KeyboardInterrupt:
        print(f"\ndetached; the call keeps running. Cancel with: nsm modal cancel {call_id}")
        return ExitCode.INTERRUPTED
