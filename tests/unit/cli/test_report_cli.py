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


def test_one_epoch_curves_are_readable(tmp_path, monkeypatch):
    """After 1 epoch every series is a single point: drawn with a marker, on an integer axis."""
    from matplotlib.figure import Figure

    from nsm.train.curves import write_curves

    figures = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), original(self, *a, **k)))
    rows = [{"epoch": 1, "train_loss": 0.9, "val_loss": 0.95, "train_accuracy": 0.6, "val_accuracy": 0.55,
             "val_balanced_accuracy": 0.5, "val_per_class_accuracy": [0.7, 0.3], "lr": 1e-3}]
    (tmp_path / "history.json").write_text(json.dumps(rows))
    write_curves(tmp_path)
    (fig,) = figures
    series = [line for ax in fig.axes for line in ax.get_lines() if line.get_label() != "collapse threshold"]
    assert len(series) == 8  # 2 loss, 3 accuracy, 2 classes, 1 learning rate
    for line in series:
        assert list(line.get_xdata()) == [1] and line.get_marker() not in (None, "None", "", " "), line
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert lo < 1 < hi
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks == [1.0], ticks  # one integer tick, no 0.96/1.04 fractions
