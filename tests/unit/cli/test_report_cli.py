import json

from nsm.cli import main


def test_report_writes_curves(tmp_path, capsys):
    rows = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_accuracy": 0.5 + e / 20,
         "val_accuracy": 0.5 + e / 25, "val_balanced_accuracy": 0.5 + e / 25,
         "val_per_class_accuracy": [0.5 + e / 30, None if e == 2 else 0.6], "lr": 1e-3 / e}
        for e in range(1, 5)
    ]
    (tmp_path / "history.json").write_text(json.dumps(rows))
    assert main(["report", str(tmp_path)]) == 0
    png = tmp_path / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in capsys.readouterr().out


def test_report_without_history_fails_cleanly(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "history.json" in capsys.readouterr().err
