import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from nsm.train import checkpoint as ckpt


def test_atomic_write_replaces_content(tmp_path):
    path = tmp_path / "f.bin"
    ckpt.atomic_write_bytes(path, b"old")
    ckpt.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_crash_between_tmp_write_and_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.atomic_write_bytes(path, b"old")

    def crash(*args):
        raise KeyboardInterrupt("killed before rename")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_write_bytes(path, b"new content")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the temporary file is cleaned up


def test_hard_kill_after_tmp_write_keeps_old_file(tmp_path):
    # A process that dies without any cleanup (os._exit, like SIGKILL) right before the rename.
    path = tmp_path / "last.pt"
    ckpt.atomic_write_bytes(path, b"old")
    code = (
        "import os, sys\n"
        "from nsm.train import checkpoint as c\n"
        "c.os.replace = lambda *a: os._exit(9)\n"
        f"c.atomic_write_bytes({str(path)!r}, b'x' * 100000)\n"
    )
    rc = subprocess.run([sys.executable, "-c", code]).returncode
    assert rc == 9
    assert path.read_bytes() == b"old"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert all(n.startswith(".last.pt.tmp-") for n in leftovers)  # never the target's name


def test_json_is_strict(tmp_path):
    ckpt.atomic_write_json(tmp_path / "h.json", {"a": float("nan"), "b": [float("inf"), 1.5]})
    assert json.loads((tmp_path / "h.json").read_text()) == {"a": None, "b": [None, 1.5]}


def test_manager_writes_last_best_epoch_and_prunes(tmp_path):
    m = ckpt.CheckpointManager(tmp_path, every_epochs=2, keep=2)
    for epoch in range(1, 11):
        m.save({"epoch": epoch}, epoch, is_best=epoch in (1, 3))
    assert [e for e, _ in m.epoch_files()] == [8, 10]
    assert ckpt.load_checkpoint(m.last_path)["epoch"] == 10
    assert ckpt.load_checkpoint(m.best_path)["epoch"] == 3


def test_prune_keeps_newest_n(tmp_path):
    m = ckpt.CheckpointManager(tmp_path, every_epochs=1, keep=3)
    for e in (1, 2, 5, 12, 40):
        (tmp_path / f"epoch-{e:04d}.pt").write_bytes(b"")
    deleted = m.prune()
    assert sorted(p.name for p in deleted) == ["epoch-0001.pt", "epoch-0002.pt"]
    assert [e for e, _ in m.epoch_files()] == [5, 12, 40]


def test_load_rejects_foreign_files(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an nsm checkpoint"):
        ckpt.load_checkpoint(tmp_path / "x.pt")


def test_rng_state_round_trips_through_weights_only_load(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.normal(), torch.rand(1)  # leave a cached gaussian in numpy
    state = ckpt.capture_rng_state()
    m = ckpt.CheckpointManager(tmp_path)
    m.save({"rng": state}, 1, is_best=False)
    expected = (random.random(), float(np.random.normal()), torch.rand(3))
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    ckpt.restore_rng_state(ckpt.load_checkpoint(m.last_path)["rng"])
    got = (random.random(), float(np.random.normal()), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2])
