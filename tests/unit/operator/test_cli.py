"""``nsm-operator`` wraps ``kopf run`` with the namespaces from settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nsm_operator.cli import build_parser, kopf_args, main
from nsm_operator.settings import OperatorSettings


def _args(*argv):
    return build_parser().parse_known_args(list(argv))


def test_namespaces_from_settings_or_flags():
    args, extra = _args("--liveness=http://0.0.0.0:8081/healthz", "--verbose")
    assert kopf_args(args, extra, OperatorSettings(namespaces=("a", "b"))) == [
        "run", "--standalone", "-m", "nsm_operator.main", "--namespace", "a", "--namespace", "b",
        "--liveness=http://0.0.0.0:8081/healthz", "--verbose",
    ]  # fmt: skip
    args, extra = _args("-A")
    assert kopf_args(args, extra, OperatorSettings(namespaces=("a",)))[-1] == "--all-namespaces"
    args, extra = _args("-n", "x")
    assert kopf_args(args, extra, OperatorSettings())[-2:] == ["--namespace", "x"]
    args, extra = _args()
    assert kopf_args(args, extra, OperatorSettings())[-1] == "--all-namespaces"


def test_the_served_namespaces_reach_the_operator_settings(monkeypatch):
    # kopf gets flags; the operator's own child watches read NSM_OPERATOR_NAMESPACES (OperatorSettings).
    import kopf.cli

    monkeypatch.setenv("NSM_OPERATOR_NAMESPACES", "from-env")
    monkeypatch.setattr(kopf.cli.main, "main", lambda **kwargs: None)
    assert main(["-n", "test-op-*", "-n", "b"]) == 0
    assert OperatorSettings.from_env().namespaces == ("test-op-*", "b")
    assert main(["-A"]) == 0
    assert OperatorSettings.from_env().namespaces == ()


def test_bad_settings_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("NSM_OPERATOR_METRICS_PORT", "nope")
    assert main(["--dry-print"]) == 2
    assert "NSM_OPERATOR_METRICS_PORT" in capsys.readouterr().err


def test_help_works():
    exe = Path(sys.executable).with_name("nsm-operator")
    assert exe.exists(), "pip install -e . provides the nsm-operator console script"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "kopf" in proc.stdout
