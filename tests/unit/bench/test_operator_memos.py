"""bench/operator_memos.py runs and prints its five figures (a smoke test: no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_prints_every_figure():
    out = subprocess.run([sys.executable, str(ROOT / "bench/operator_memos.py"), "--number", "5"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout  # fmt: skip
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 5 and all(" us" in line for line in lines), out
    assert "memo hit" in out and "Training.from_body" in out
