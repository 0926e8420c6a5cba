"""Bounded polling for the e2e tiers: every wait names what it waited for and what it last saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    describe: Callable[[], str] = lambda: "",
    interval: float = 0.25,
) -> Any:
    """Call ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass.

    On timeout the AssertionError names ``what``, the last value seen and the tail of
    ``describe()`` (e.g. the operator's log).
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{describe()[-4000:]}")


def wait_crd_established(cluster: Any, name: str, timeout: float = 60) -> None:
    """Wait for CRD ``name``'s Established condition. ``kubectl wait --for=condition=Established``
    fails at once (instead of waiting) while the CRD has no status yet, which a large CRD with CEL
    rules (compiled by the API server first) makes likely right after ``kubectl apply``."""
    jsonpath = "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"
    wait_for(lambda: cluster.kubectl("get", "crd", name, "-o", jsonpath).stdout.strip() == "True",
             timeout, f"CRD {name} Established")  # fmt: skip
