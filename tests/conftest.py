"""Top-level pytest configuration shared by every test tier.

The e2e control-plane fixtures (cluster, namespace, kubeconfig, k8s_api, core_v1, batch_v1,
custom_objects, apiextensions_v1, rbac_v1) live in tests/cluster/fixtures.py; see
docs/testing.md. Tier-specific fixtures belong in tests/<tier>/conftest.py.
"""

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)  # makes `tests.cluster` importable however pytest is invoked

pytest_plugins = ["tests.cluster.fixtures"]
