import json

import pytest
import yaml

from nsm.cli import main
from nsm.cli.train import _parse_value, build_training, set_path
from nsm.cli import build_parser
from nsm.train import loop as loop_module
from nsm.train.defaults import default_training

TINY = ["--domain", "causal", "--set", "dataset.numScenarios=40", "--epochs", "2", "--num-workers", "0",
        "--batch-size", "8", "--quiet", "--no-report"]


def parse(*argv):
    return build_training(build_parser().parse_args(["train", *argv]))


def test_embedded_default_is_a_local_cpu_run():
    training = parse()
    spec = training.spec
    assert training.metadata.name == "nsm-default"
    assert spec.data_loader.num_workers == 0 and not spec.optimization.amp
    assert default_training() == default_training() and default_training() is not default_training()


def test_flags_override_the_file_and_set_reaches_any_field(tmp_path):
    manifest = tmp_path / "t.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining", "metadata": {"name": "from-file"},
        "spec": {"domain": "kg", "epochs": 50, "batch_size": 16, "optimization": {"lr_schedule": "cosine"}},
        "status": {"phase": "Running"},
    }))
    spec = parse("-f", str(manifest), "--epochs", "7", "--batch-size", "4", "--learning-rate", "0.003",
                 "--no-amp", "--set", "earlyStopping.patience=3", "--set", "spec.optimization.gradient_clip=0",
                 "--set", "dataset.numEntities=50").spec
    assert (spec.epochs, spec.batch_size, spec.learning_rate) == (7, 4, 0.003)
    assert spec.early_stopping.patience == 3 and spec.optimization.gradient_clip == 0
    assert spec.optimization.lr_schedule.value == "cosine" and spec.dataset.num_entities == 50
    assert spec.cycle_weight == 0.05  # kg domain default still applies


def test_domain_without_file_uses_the_spec_defaults():
    spec = parse("--domain", "planning", "--amp", "--amp-dtype", "bfloat16").spec
    assert spec.dataset.num_problems == 2858 and spec.optimization.amp


def test_value_parsing_and_paths():
    assert _parse_value("1e-3") == 0.001 and _parse_value("true") is True and _parse_value("null") is None
    assert _parse_value("plateau") == "plateau" and _parse_value("3") == 3
    obj = {"spec": {}}
    set_path(obj, "metadata.name", "x")
    set_path(obj, "data_loader.num_workers", 2)
    assert obj == {"spec": {"dataLoader": {"numWorkers": 2}}, "metadata": {"name": "x"}}


@pytest.mark.parametrize(
    "argv, field",
    [
        (["--set", "poolRatio=2"], "spec.poolRatio"),
        (["--domain", "causal", "--set", "dataset.numProblems=100"], "dataset.numProblems"),
        (["--set", "optimization.lrSchedule=linear"], "spec.optimization.lrSchedule"),
        (["--set", "bogusField=1"], "spec.bogusField"),
        (["--set", "novalue"], "--set expects PATH=VALUE"),
    ],
)
def test_invalid_spec_exits_2_naming_the_field(argv, field, tmp_path, capsys):
    assert main(["train", "--output-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert "invalid spec" in err and field in err


def test_invalid_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: NSMTraining\nspec:\n  domain: causal\n  batchSize: 0\n")
    assert main(["train", "-f", str(bad), "--output-dir", str(tmp_path / "o")]) == 2
    assert "spec.batchSize" in capsys.readouterr().err
    assert main(["train", "-f", str(tmp_path / "missing.yaml")]) == 2


def test_fp16_on_cpu_trains_in_float32_and_says_so_once(tmp_path, capsys, tiny_model, data_cache):
    # Deliberate change (issue #13): this used to exit 2; now the YAML a GPU run uses also runs on
    # a laptop, at full float32 speed, and the log names what was ignored.
    loud = [a for a in TINY if a != "--quiet"]
    rc = main(["train", *loud, "--amp", "--amp-dtype", "float16", "--device", "cpu",
               "--output-dir", str(tmp_path), "--data-cache", str(data_cache)])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("optimization.amp ignored on cpu") == 1 and "float16" in out


def test_nan_loss_exits_3_with_diverged_results(tmp_path, monkeypatch, tiny_model, data_cache, capsys):
    monkeypatch.setattr(loop_module.F, "cross_entropy", lambda logits, y: logits.sum() * float("nan"))
    rc = main(["train", *TINY, "--output-dir", str(tmp_path), "--data-cache", str(data_cache)])
    assert rc == 3
    assert "diverged" in capsys.readouterr().err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "diverged" and results["epochs_run"] == 0


def test_train_end_to_end_with_report(tmp_path, tiny_model, data_cache, capsys):
    argv = [a for a in TINY if a != "--no-report"]
    assert main(["train", *argv, "--output-dir", str(tmp_path), "--data-cache", str(data_cache)]) == 0
    out = capsys.readouterr().out
    for name in ("results.json", "history.json", "last.pt", "best.pt", "curves.png"):
        assert (tmp_path / name).exists(), name
        assert name in out
    assert json.loads((tmp_path / "results.json").read_text())["epochs_run"] == 2
    # Re-running with --resume auto finds the finished run and does no more epochs.
    assert main(["train", *TINY, "--output-dir", str(tmp_path), "--data-cache", str(data_cache)]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["resumed_from_epoch"] == 2


def test_resuming_a_checkpoint_of_another_model_shape_exits_2(tmp_path, data_cache, capsys):
    # The real NSM model: a spec with another hiddenDim cannot load the checkpoint's weights.
    argv = [*TINY, "--epochs", "1", "--output-dir", str(tmp_path), "--data-cache", str(data_cache)]
    assert main(["train", *argv, "--set", "model.hiddenDim=16"]) == 0
    assert main(["train", *argv, "--set", "model.hiddenDim=24", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "spec.model.hiddenDim" in err and "cannot resume" in err and "hidden_dim=16" in err
