"""Shared by the e2e tier (tests/e2e/*): the CRD applied from charts/, once per session.

The control-plane fixtures themselves (cluster, namespace, API clients) come from
tests/cluster/fixtures.py (see docs/testing.md); everything here builds on them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cluster.waiting import wait_crd_established

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "charts" / "nsm-operator" / "crd" / "nsm.dev_nsmtrainings.yaml"


@pytest.fixture(scope="session")
def nsm_crd(cluster) -> str:
    """The generated NSMTraining CRD, applied and Established; returns its name."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE), check=True)
    wait_crd_established(cluster, "nsmtrainings.nsm.dev")
    # Discovery of the new group can lag the Established condition by a moment.
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "nsmt", "-A").returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError("nsmtrainings not served 30s after Established")
        time.sleep(0.5)
    return "nsmtrainings.nsm.dev"
