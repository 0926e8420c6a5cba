"""``nsm modal deploy|run|cancel`` with the fake bridge (Modal's servers are unreachable here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nsm.cli import main
from tests.fakes.modal_bridge import FakeBridge
from tests.fakes.modal_sdk import FakeSDK

TRAINING = """\
apiVersion: nsm.dev/v1alpha1
kind: NSMTraining
metadata: {name: cli-run}
spec:
  domain: causal
  epochs: 3
  retry: {maxRetries: 1, initialDelaySeconds: 5, maxDelaySeconds: 10}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(TRAINING)
    return path


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeBridge:
    bridge = FakeBridge(tmp_path / "fake")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the recorded call ids stay in the test
    monkeypatch.setattr("nsm.cli.modal._bridge", lambda: bridge)
    monkeypatch.setattr("nsm.cli.modal._modal_ready", lambda: True)
    return bridge


def test_help_lists_the_actions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["modal", "--help"])
    out = capsys.readouterr().out
    assert "deploy" in out and "run" in out and "cancel" in out


def test_run_prints_the_call_id_and_follows_to_success(fake: FakeBridge, spec_file: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    fake.script("cli-run", {"startAfter": 0.05, "epochs": 3, "epochSeconds": 0.05})
    assert main(["modal", "run", "-f", str(spec_file), "--poll-seconds", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "call id: fc-fake-cli-run-a1-" in out
    assert "epoch    1/3" in out and "epoch    3/3" in out
    assert "succeeded: completed (max_epochs) after 3 epochs" in out


def test_run_detach(fake: FakeBridge, spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modal", "run", "-f", str(spec_file), "--detach"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("call id: fc-fake-cli-run-a1-") and "nsm modal cancel" in out
    assert len(fake.spawns("cli-run")) == 1


def test_run_exit_code_of_a_diverged_training(fake: FakeBridge, spec_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    fake.script("cli-run", {"outcome": "fail", "reason": "Diverged", "message": "loss is nan", "retryable": False,
                            "startAfter": 0, "epochSeconds": 0})
    assert main(["modal", "run", "-f", str(spec_file), "--poll-seconds", "0.01"]) == 3
    assert "failed: Diverged: loss is nan" in capsys.readouterr().err


def test_invalid_spec_and_strict_limits_name_the_field(fake: FakeBridge, spec_file: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modal", "run", "-f", str(spec_file), "--set", "poolRatio=2"]) == 2
    assert "spec.poolRatio" in capsys.readouterr().err
    args = ["modal", "run", "-f", str(spec_file), "--set", "retry.initialDelaySeconds=120",
            "--set", "retry.maxDelaySeconds=300", "--detach"]
    assert main([*args, "--strict"]) == 2
    assert "spec.retry.initialDelaySeconds: 120 s exceeds Modal's limit of 60 s" in capsys.readouterr().err
    assert main(args) == 0  # clamped, with the same message as a warning
    assert "warning: spec.retry.initialDelaySeconds" in capsys.readouterr().err


def test_run_needs_a_file(fake: FakeBridge, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modal", "run"]) == 2
    assert "run needs -f" in capsys.readouterr().err


def test_deploy(fake: FakeBridge, spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modal", "deploy", "-f", str(spec_file), "--app", "nsm-other"]) == 0
    assert "deployed Modal app 'nsm-other'" in capsys.readouterr().out
    assert (fake.root / "deployed" / "nsm-other.json").exists()


def test_cancel(fake: FakeBridge, spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["modal", "run", "-f", str(spec_file), "--detach"])
    call_id = fake.calls("cli-run")[0]["id"]
    assert main(["modal", "cancel", call_id]) == 0
    assert fake.calls("cli-run")[0]["cancelledAt"] is not None


def test_clear_errors_without_modal_or_credentials(monkeypatch: pytest.MonkeyPatch, spec_file: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "modal" else real(name, *a))
    assert main(["modal", "run", "-f", str(spec_file)]) == 1
    assert "the Modal SDK is not installed: pip install 'nsm-operator[modal]'" in capsys.readouterr().err
    monkeypatch.setattr(importlib.util, "find_spec", real)
    pytest.importorskip("modal")
    from modal.config import config

    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    monkeypatch.setattr(config, "get", lambda key, *a, **k: None)
    assert main(["modal", "deploy", "-f", str(spec_file)]) == 1
    assert "no Modal credentials: run `modal token new`" in capsys.readouterr().err


@pytest.fixture
def output_entered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each entry into ``modal.enable_output`` (replaced by a recording context manager:
    the real one only prints what Modal's unreachable servers would send)."""
    import contextlib

    modal = pytest.importorskip("modal")
    entered: list[str] = []

    @contextlib.contextmanager
    def enable_output():  # type: ignore[no-untyped-def]
        entered.append("enter")
        yield

    monkeypatch.setattr(modal, "enable_output", enable_output)
    return entered


def test_deploy_and_run_stream_modal_output_unless_quiet(fake: FakeBridge, spec_file: Path,
                                                         output_entered: list[str]) -> None:
    """Fakes: FakeBridge for Modal, a recording ``modal.enable_output``."""
    assert main(["modal", "deploy", "-f", str(spec_file)]) == 0
    assert output_entered == ["enter"]
    assert main(["modal", "run", "-f", str(spec_file), "--detach"]) == 0
    assert output_entered == ["enter", "enter"]
    assert main(["modal", "deploy", "-f", str(spec_file), "--quiet"]) == 0
    assert main(["modal", "run", "-f", str(spec_file), "--detach", "--quiet"]) == 0
    assert output_entered == ["enter", "enter"]


def _sdk_bridge(monkeypatch: pytest.MonkeyPatch, **script: Any) -> FakeSDK:
    """The real SDKBridge over tests.fakes.modal_sdk.FakeSDK (scripted log lines and result)."""
    pytest.importorskip("modal")
    from nsm.modal.bridge import SDKBridge

    sdk = FakeSDK(**script)
    monkeypatch.setattr("nsm.cli.modal._bridge", lambda: SDKBridge(sdk=sdk, timeout=2))
    return sdk


def test_logs_and_attach_use_the_recorded_call_id(fake: FakeBridge, spec_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``run --detach`` against FakeBridge records the call id; ``logs`` / ``attach`` then go through
    the real SDKBridge over FakeSDK, which yields the scripted log lines."""
    assert main(["modal", "run", "-f", str(spec_file), "--detach"]) == 0
    assert "nsm modal attach cli-run" in capsys.readouterr().out
    call_id = fake.calls("cli-run")[0]["id"]
    sdk = _sdk_bridge(monkeypatch, logs=("epoch 1\n", "epoch 2\n", "epoch 3\n"),
                      get_result={"ok": True, "result": {"status": "completed", "stop_reason": "max_epochs",
                                                         "epochs_run": 3}})
    assert main(["modal", "logs", "cli-run", "--tail", "2"]) == 0
    assert capsys.readouterr().out == "epoch 2\nepoch 3\n"
    assert main(["modal", "attach", "cli-run", "--poll-seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    assert f"attached to call {call_id}" in out and "epoch 1\nepoch 2\nepoch 3\n" in out
    assert "succeeded: completed (max_epochs) after 3 epochs" in out
    assert [entry[:2] for entry in sdk.log] == [("log_tail", call_id), ("log_stream", call_id)]


def test_attach_reports_a_failed_call_with_its_exit_code(fake: FakeBridge, spec_file: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """FakeBridge records the run; FakeSDK returns the Function's "diverged" result."""
    main(["modal", "run", "-f", str(spec_file), "--detach"])
    _sdk_bridge(monkeypatch, get_result={"ok": False, "reason": "Diverged", "message": "loss is nan"})
    assert main(["modal", "attach", "cli-run"]) == 3
    assert "failed: Diverged: loss is nan" in capsys.readouterr().err


def test_logs_and_attach_of_an_unknown_name(fake: FakeBridge, capsys: pytest.CaptureFixture[str]) -> None:
    """FakeBridge (never reached): nothing is recorded for the name."""
    for action in ("logs", "attach"):
        assert main(["modal", action, "nobody"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("nsm modal: no Modal call recorded for training 'nobody' in ")
        assert err.count("\n") == 1 and "modal-calls.json" in err


def test_a_bad_timeout_setting_names_the_variable(spec_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """No fake needed: the setting is refused before any SDK call."""
    pytest.importorskip("modal")
    monkeypatch.setattr("nsm.cli.modal._modal_ready", lambda: True)
    monkeypatch.setenv("NSM_MODAL_TIMEOUT_SECONDS", "soon")
    assert main(["modal", "cancel", "fc-1"]) == 1
    assert "NSM_MODAL_TIMEOUT_SECONDS must be a positive number of seconds, got 'soon'" in capsys.readouterr().err


@pytest.fixture
def blackhole_url():
    """A loopback port that accepts TCP connections and never answers: an unreachable or stalled
    Modal API as the real SDK sees it (no traffic leaves this machine)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("argv", [["cancel", "fc-doesnotexist"], ["run", "-f", "SPEC", "--detach"]])
def test_unreachable_modal_is_one_line_without_traceback(blackhole_url: str, spec_file: Path, tmp_path: Path,
                                                         argv: list[str]) -> None:
    """The real CLI and SDK in a subprocess against the loopback black hole, with a 1 s deadline
    (``deploy`` keeps its 30 min deadline for image builds, so it is not run here). The spec's
    retry-clamping warnings may precede the error; the error is one line, no traceback."""
    pytest.importorskip("modal")
    import os
    import re
    import subprocess
    import sys

    env = dict(os.environ, MODAL_SERVER_URL=blackhole_url, MODAL_TOKEN_ID="ak-test0123456789",
               MODAL_TOKEN_SECRET="as-secret0123456789", NSM_MODAL_TIMEOUT_SECONDS="1",
               XDG_STATE_HOME=str(tmp_path / "state"))
    argv = [str(spec_file) if a == "SPEC" else a for a in argv]
    proc = subprocess.run([sys.executable, "-m", "nsm", "modal", *argv], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    *warnings, error = proc.stderr.splitlines()
    assert all(line.startswith("nsm modal: warning: spec.retry.") for line in warnings), proc.stderr
    # Our 1 s deadline normally fires first; the SDK giving up by itself is just as clean.
    assert re.fullmatch(r"nsm modal: (ModalTimeout: Modal did not answer .* within 1 s \(are Modal's servers "
                        r"reachable\?\)|ModalUnreachable: .+)", error), proc.stderr
    assert "as-secret0123456789" not in proc.stderr
