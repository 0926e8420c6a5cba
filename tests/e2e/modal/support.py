"""Constants and a wait helper shared by the Modal e2e conftest and tests (import it as
``tests.e2e.modal.support``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
CRD = REPO / "charts" / "nsm-operator" / "crds" / "nsm.dev_nsmtrainings.yaml"
TOKEN_ID, TOKEN_SECRET = "ak-E2eTokenId0123456", "as-E2eTokenSecret0123456789"
POLL_SECONDS = 0.5


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
