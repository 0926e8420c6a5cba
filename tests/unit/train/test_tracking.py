"""spec.tracking.tensorboard: the event files parse back with TensorBoard's own reader and hold
every epoch of every history.json field, once — also across a resume."""

from __future__ import annotations

import json
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nsm.train.tracking import TENSORBOARD_DIR, scalars

from .conftest import Crash, crash_after_epoch, without_timing


def _read(run_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for row in history:
        for tag, value in scalars(row).items():
            out.setdefault(tag, []).append((row["epoch"], value))
    return out


def _assert_same(events, history):
    expected = _expected(history)
    assert set(events) == set(expected)
    for tag, points in expected.items():
        assert [s for s, _ in events[tag]] == [s for s, _ in points], tag
        assert [v for _, v in events[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag


def test_every_history_field_every_epoch(run_tiny):
    _, out = run_tiny(epochs=3, tracking={"tensorboard": True})
    history = json.loads((out / "history.json").read_text())
    events = _read(out)
    _assert_same(events, history)
    # One scalar per field: per-class accuracy per class, nothing for `epoch` itself.
    fields = {k for k in history[0] if k != "epoch" and not isinstance(history[0][k], list)}
    assert fields <= set(events) and "epoch" not in events
    assert {"val_per_class_accuracy/0", "val_per_class_accuracy/1"} <= set(events)
    assert len(events["val_loss"]) == 3


def test_off_by_default_and_history_unchanged(run_tiny, tmp_path):
    _, plain = run_tiny(tmp_path / "plain", epochs=2)
    _, tracked = run_tiny(tmp_path / "tracked", epochs=2, tracking={"tensorboard": True})
    assert not (plain / TENSORBOARD_DIR).exists()
    assert without_timing(json.loads((plain / "history.json").read_text())) == \
        without_timing(json.loads((tracked / "history.json").read_text()))


def test_resume_keeps_each_epoch_once(run_tiny, tmp_path):
    """An attempt that logged epoch 3 but died before its checkpoint counted: the next attempt
    resumes from epoch 2 and rewrites epoch 3; readers see epoch 3 once (purge_step)."""
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_tiny(out, log=crash_after_epoch(3), epochs=4, tracking={"tensorboard": True})
    assert [s for s, _ in _read(out)["val_loss"]] == [1, 2, 3]
    shutil.copy(out / "epoch-0002.pt", out / "last.pt")  # the epoch-3 checkpoint never committed
    results, _ = run_tiny(out, epochs=4, tracking={"tensorboard": True})
    assert results["resumed_from_epoch"] == 2
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    _assert_same(_read(out), history)


def test_missing_tracking_package_is_a_usage_error(monkeypatch):
    import importlib.util

    from nsm.cli.preflight import UsageError, check_tracking

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name))
    from nsm.spec import TrackingSpec

    with pytest.raises(UsageError, match="spec.tracking.tensorboard needs the tensorboard package"):
        check_tracking(TrackingSpec(tensorboard=True))
    check_tracking(TrackingSpec())


# --- W&B, offline (no API key; Modal's and W&B's servers are not reachable from tests) --------


def _wandb_history(run_dir) -> tuple[set[str], list[dict[str, float]]]:
    """(run ids, history rows) of every offline run under ``run_dir/wandb``, read from W&B's
    transaction log (``run-<id>.wandb``: a LevelDB-style log of ``Record`` protobufs)."""
    from wandb.proto import wandb_internal_pb2 as pb

    ids, rows = set(), []
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        ids.add(path.stem.removeprefix("run-"))
        for raw in _log_records(path.read_bytes()):
            record = pb.Record()
            record.ParseFromString(raw)
            if record.WhichOneof("record_type") == "history":
                row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
                rows.append({k: v for k, v in row.items() if not k.startswith("_") or k == "_step"})
    return ids, rows


def _log_records(data: bytes):
    import struct

    block = 32768
    assert data[:4] == b":W&B", data[:7]
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if (length, kind) == (0, 0):
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            yield chunk
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            yield pending + chunk


@pytest.fixture
def wandb_offline(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")


def _by_step(rows: list[dict]) -> dict[int, dict[str, float]]:
    return {int(r["_step"]): {k: v for k, v in r.items() if k != "_step"} for r in rows}


def test_wandb_offline_history_matches_history_json(run_tiny, wandb_offline):
    _, out = run_tiny(epochs=3, tracking={"wandb": {"project": "nsm-test"}})
    history = json.loads((out / "history.json").read_text())
    ids, rows = _wandb_history(out)
    assert ids == {(out / "wandb-run-id").read_text().strip()}
    logged = _by_step(rows)
    assert sorted(logged) == [1, 2, 3]
    for row in history:
        expected = scalars(row)
        assert set(logged[row["epoch"]]) == set(expected)
        assert logged[row["epoch"]] == pytest.approx(expected, rel=1e-9)


def test_wandb_resume_continues_the_same_run(run_tiny, tmp_path, wandb_offline):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_tiny(out, log=crash_after_epoch(2), epochs=4, tracking={"wandb": {"project": "nsm-test"}})
    first_id = (out / "wandb-run-id").read_text().strip()
    results, _ = run_tiny(out, epochs=4, tracking={"wandb": {"project": "nsm-test"}})
    assert results["resumed_from_epoch"] == 2
    ids, rows = _wandb_history(out)
    assert ids == {first_id}  # both attempts wrote to the same W&B run
    assert len(list((out / "wandb").glob("offline-run-*"))) == 2
    history = json.loads((out / "history.json").read_text())
    logged = _by_step(rows)
    assert sorted(logged) == [1, 2, 3, 4]
    for row in history:
        assert logged[row["epoch"]] == pytest.approx(scalars(row), rel=1e-9)
    # A run that starts over (not resumed) is a new W&B run.
    _, fresh = run_tiny(tmp_path / "fresh", epochs=1, tracking={"wandb": {"project": "nsm-test"}})
    assert (fresh / "wandb-run-id").read_text().strip() != first_id
