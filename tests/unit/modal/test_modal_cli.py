"""``nsm modal deploy|run|cancel`` with the fake bridge (Modal's servers are unreachable here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsm.cli import main
from tests.fakes.modal_bridge import FakeBridge

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
