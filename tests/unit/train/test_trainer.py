import json

import pytest
import torch

from nsm.spec import SpecError
from nsm.train import TrainingDiverged
from nsm.train import loop as loop_module
from nsm.train.checkpoint import load_checkpoint

from .conftest import Crash, crash_after_epoch, without_timing


def test_run_writes_history_results_and_checkpoints(run_tiny):
    results, out = run_tiny(epochs=3)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["best.pt", "epoch-0002.pt", "epoch-0003.pt", "history.json", "last.pt", "results.json"]
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy",
                "val_per_class_accuracy", "val_f1_macro", "val_auc", "val_cycle_loss_l1",
                "val_cycle_loss_l2", "train_cycle_loss_l1", "lr", "epoch_seconds", "samples_per_second"):
        assert key in history[0], key
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "completed" and saved["stop_reason"] == "completed"
    assert saved["epochs_run"] == 3
    assert saved["dataset"]["sizes"] == {"train": 84, "val": 18, "test": 18}
    assert set(saved["test"]) >= {"accuracy", "balanced_accuracy", "per_class_accuracy", "auc", "f1_macro"}
    assert saved["config"]["spec"]["domain"] == "causal" and saved["config"]["model"]["hidden_dim"] == 16
    state = load_checkpoint(out / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "early_stopping", "run", "spec",
            "model_config", "epoch"} <= set(state)
    assert state["epoch"] == 3
    assert results["final"]["epoch"] == 3


def test_learns_the_synthetic_task(run_tiny):
    results, _ = run_tiny(epochs=8, learningRate=0.02)
    assert results["best"]["val_accuracy"] >= 0.8


def test_early_stopping_stops_and_says_so(run_tiny):
    # A learning rate this small cannot improve the loss by minDelta.
    results, _ = run_tiny(epochs=20, learningRate=1e-9,
                          earlyStopping={"patience": 2, "minDelta": 0.5})
    assert results["stop_reason"] == "early_stopped"
    assert results["epochs_run"] == 3 and results["best_epoch"] == 1


def test_nan_loss_raises_diverged_and_writes_results(run_tiny, monkeypatch, tmp_path):
    real = loop_module.F.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, y):
        calls["n"] += 1
        loss = real(logits, y)
        return loss * float("nan") if calls["n"] > 8 else loss

    monkeypatch.setattr(loop_module.F, "cross_entropy", poisoned)
    with pytest.raises(TrainingDiverged, match="epoch 2"):
        run_tiny(tmp_path / "nan", epochs=5)  # 6 training batches an epoch: batch 9 is in epoch 2
    saved = json.loads((tmp_path / "nan" / "results.json").read_text())
    assert saved["status"] == "diverged" and saved["stop_reason"] == "diverged"
    assert saved["epochs_run"] == 1  # the diverged epoch is never checkpointed
    assert load_checkpoint(tmp_path / "nan" / "last.pt")["epoch"] == 1


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_amp_yaml_trains_on_cpu_in_float32_and_says_so_once(run_tiny, dtype):
    # Deliberate change (issue #13): fp16 on CPU used to be a SpecError and bf16 ran ~4x slower;
    # now one YAML runs everywhere and the log names what was ignored.
    lines: list[str] = []
    results, _ = run_tiny(epochs=2, optimization={"amp": True, "ampDtype": dtype}, options={"device": "cpu"},
                          log=lines.append)
    assert results["status"] == "completed"
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in [results["final"]])
    notes = [line for line in lines if "optimization.amp ignored on cpu" in line]
    assert len(notes) == 1 and dtype in notes[0]


def test_resume_in_process_equals_uninterrupted(run_tiny, tmp_path):
    full, _ = run_tiny(tmp_path / "full", epochs=5, optimization={"lrSchedule": "cosine"})

    with pytest.raises(Crash):
        run_tiny(tmp_path / "resumed", log=crash_after_epoch(2), epochs=5, optimization={"lrSchedule": "cosine"})
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 2
    resumed, _ = run_tiny(tmp_path / "resumed", epochs=5, optimization={"lrSchedule": "cosine"})
    assert resumed["resumed_from_epoch"] == 2
    assert without_timing(json.loads((tmp_path / "resumed" / "history.json").read_text())) == \
        without_timing(json.loads((tmp_path / "full" / "history.json").read_text()))
    assert resumed["test"] == full["test"]
    assert resumed["best"]["val_loss"] == full["best"]["val_loss"]


def test_workers_give_the_same_results_as_the_main_process(run_tiny, tmp_path):
    main, _ = run_tiny(tmp_path / "w0", epochs=2)
    workers, _ = run_tiny(tmp_path / "w2", epochs=2,
                          dataLoader={"numWorkers": 2, "persistentWorkers": True, "prefetchFactor": 2})
    assert without_timing(json.loads((tmp_path / "w0" / "history.json").read_text())) == \
        without_timing(json.loads((tmp_path / "w2" / "history.json").read_text()))
    assert main["test"] == workers["test"]
