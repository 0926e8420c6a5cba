"""A checkpoint resumes only its own training, and only into a model of its shape."""

from __future__ import annotations

import pytest

from nsm.contract import TRAINING_UID_ENV
from nsm.spec import SpecError
from nsm.train import checkpoint as ckpt
from nsm.train.ownership import move_aside, run_files, shape_errors


def test_move_aside_moves_only_run_files_and_deletes_nothing(tmp_path):
    for name in ("last.pt", "best.pt", "epoch-0010.pt", "history.json", "results.json", "wandb-run-id",
                 "fence.json", "notes.txt"):
        (tmp_path / name).write_text(name)
    for name in ("calls", "tensorboard", "wandb"):
        (tmp_path / name).mkdir()
    (tmp_path / "tensorboard" / "events.out").write_text("x")
    record = move_aside(tmp_path, "0123456789abcdef")
    target = tmp_path / record["path"].rsplit("/", 1)[-1]
    assert record["files"] == 8 and record["previousUid"] == "0123456789abcdef"
    assert target.name.startswith("previous-") and target.name.endswith("-01234567")
    assert sorted(p.name for p in target.iterdir()) == ["best.pt", "epoch-0010.pt", "history.json", "last.pt",
                                                       "results.json", "tensorboard", "wandb", "wandb-run-id"]
    assert (target / "tensorboard" / "events.out").exists()  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("previous-")) == [
        "calls", "fence.json", "notes.txt"]
    assert run_files(tmp_path) == []
    again = move_aside(tmp_path, "0123456789abcdef")  # same second: a second directory, never a merge
    assert again["path"] != record["path"] and again["files"] == 0


def test_shape_errors_name_the_spec_field():
    saved = {"hidden_dim": 64, "num_relations": 4, "dropout": 0.1}
    assert shape_errors(saved, {"hidden_dim": 64, "num_relations": 4, "dropout": 0.5}) == []
    (err,) = shape_errors(saved, {"hidden_dim": 32, "num_relations": 4})
    assert err[0] == "spec.model.hiddenDim" and "64" in err[1] and "32" in err[1]


def test_resume_auto_resumes_its_own_training_only(run_tiny, monkeypatch, tmp_path):
    out = tmp_path / "run"
    monkeypatch.setenv(TRAINING_UID_ENV, "uid-old")
    run_tiny(out, epochs=2)
    assert ckpt.load_checkpoint(out / "last.pt")["training_uid"] == "uid-old"
    results, _ = run_tiny(out, epochs=3)
    assert results["resumed_from_epoch"] == 2  # same training: resumed

    monkeypatch.setenv(TRAINING_UID_ENV, "uid-new")
    results, _ = run_tiny(out, epochs=2)
    assert results["resumed_from_epoch"] == 0  # another training's files: not resumed
    (previous,) = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert ckpt.load_checkpoint(previous / "last.pt")["training_uid"] == "uid-old"
    assert ckpt.load_checkpoint(out / "last.pt")["training_uid"] == "uid-new"


def test_resuming_another_model_shape_is_a_spec_error(run_tiny, tmp_path):
    out = tmp_path / "run"
    run_tiny(out, epochs=1)
    state = ckpt.load_checkpoint(out / "last.pt")
    state["model_config"] = {**(state.get("model_config") or {}), "hidden_dim": 12345}
    (out / "last.pt").write_bytes(ckpt.serialize(state))
    with pytest.raises(SpecError) as exc:
        run_tiny(out, epochs=2)
    assert "spec.model" in str(exc.value) and "cannot resume" in str(exc.value)
