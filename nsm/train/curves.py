"""Training curves from ``history.json`` as one PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from nsm.contract import CURVES_FILE, HISTORY_FILE

# Series of at most this many epochs get a marker per epoch.
MARKERS_UP_TO = 50


def _series(history: list[dict[str, Any]], key: str) -> list[float]:
    return [math.nan if row.get(key) is None else float(row[key]) for row in history]


def write_curves(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Plot loss, accuracy, per-class accuracy and learning rate; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    run_dir = Path(run_dir)
    history_path = run_dir / HISTORY_FILE
    if not history_path.exists():
        raise FileNotFoundError(f"{history_path} not found (is {run_dir} a run directory?)")
    history = json.loads(history_path.read_text())
    if not history:
        raise ValueError(f"{history_path} has no epochs yet")
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    (ax_loss, ax_acc), (ax_cls, ax_lr) = axes

    ax_loss.plot(epochs, _series(history, "train_loss"), label="train")
    ax_loss.plot(epochs, _series(history, "val_loss"), label="val")
    ax_loss.set_title("loss (cross-entropy + cycle)")

    ax_acc.plot(epochs, _series(history, "train_accuracy"), label="train")
    ax_acc.plot(epochs, _series(history, "val_accuracy"), label="val")
    ax_acc.plot(epochs, _series(history, "val_balanced_accuracy"), label="val balanced", linestyle="--")
    ax_acc.set_title("accuracy")
    ax_acc.set_ylim(0, 1.02)

    num_classes = max(len(row.get("val_per_class_accuracy") or []) for row in history)
    for c in range(num_classes):
        ax_cls.plot(epochs, [(row["val_per_class_accuracy"][c] if row["val_per_class_accuracy"][c] is not None
                              else math.nan) for row in history], label=f"class {c}")
    threshold = ax_cls.axhline(0.05, color="red", linewidth=0.8, linestyle=":", label="collapse threshold")
    ax_cls.set_title("validation accuracy per class")
    ax_cls.set_ylim(0, 1.02)

    ax_lr.plot(epochs, _series(history, "lr"))
    ax_lr.set_yscale("log")
    ax_lr.set_title("learning rate")

    for ax in axes.flat:
        if len(epochs) <= MARKERS_UP_TO:  # one epoch is one point: a line without markers is blank
            for line in ax.get_lines():
                if line is not threshold:
                    line.set_marker("o")
                    line.set_markersize(4)
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # 1 epoch: one tick, "1"
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"{run_dir.name}: {len(history)} epochs")
    path = Path(output) if output is not None else run_dir / CURVES_FILE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
