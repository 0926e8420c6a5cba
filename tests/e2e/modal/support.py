"""Constants and a wait helper shared by the Modal e2e conftest and tests (import it as
``tests.e2e.modal.support``)."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.waiting import wait_for  # noqa: F401 - re-exported for the modal tests

REPO = Path(__file__).resolve().parents[3]
CRD = REPO / "charts" / "nsm-operator" / "crd" / "nsm.dev_nsmtrainings.yaml"
TOKEN_ID, TOKEN_SECRET = "ak-E2eTokenId0123456", "as-E2eTokenSecret0123456789"
POLL_SECONDS = 0.5


