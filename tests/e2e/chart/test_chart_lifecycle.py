"""The chart's life on the local control plane: `helm upgrade` updates the CRD (from the previous
chart, whose CRD sat in crds/ where Helm never upgrades it, and between two templated versions),
`helm uninstall` keeps it, and a user bound to the namespace `edit` role (through the chart's
aggregated ClusterRoles) runs NSMTrainings but cannot touch the operator's Secrets."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.chart.helm_release import CHART, REPO, can_i as _can_i, release, run_helm  # noqa: F401 - fixture
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.e2e

# main before the CRD became a template: chart 0.1.0, CRD in crds/ (what users run today).
PREVIOUS_CHART_COMMIT = "94d309aa9c51eeda2318ada7558ce08de9dc6a7f"
CRD_NAME = "nsmtrainings.nsm.dev"
CRD_PATH = Path("crd") / "nsm.dev_nsmtrainings.yaml"


def _paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted property paths of an openAPIV3Schema, as `kubectl explain` takes them."""
    out = set()
    for name, child in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        out.add(path)
        out |= _paths(child.get("items") if child.get("type") == "array" and "items" in child else child, path)
    return out


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _previous_chart(dest: Path) -> Path:
    """charts/nsm-operator at PREVIOUS_CHART_COMMIT, extracted from the repository's history."""
    if not (REPO / ".git").exists():
        pytest.fail(f"{REPO} is not a git checkout: the previous chart comes from its history", pytrace=False)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", PREVIOUS_CHART_COMMIT, "charts/nsm-operator"],
                             capture_output=True, timeout=60)
    assert archive.returncode == 0, archive.stderr.decode()
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=60)
    return dest / "charts" / "nsm-operator"


def _explains(cluster, path: str) -> bool:
    proc = cluster.kubectl("explain", f"nsmtrainings.{path}", "--api-version=nsm.dev/v1alpha1")
    return proc.returncode == 0


def _wait_explains(cluster, path: str, present: bool) -> None:
    # The OpenAPI document the API server publishes follows a CRD change within seconds.
    wait_for(lambda: _explains(cluster, path) == present, 60,
             f"`kubectl explain nsmtrainings.{path}` to {'succeed' if present else 'fail'}")


def _cluster_crd(apiextensions_v1) -> dict[str, Any]:
    return apiextensions_v1.api_client.sanitize_for_serialization(
        apiextensions_v1.read_custom_resource_definition(CRD_NAME))


def _helm_owner(crd: dict[str, Any]) -> tuple[str | None, str | None]:
    meta = crd["metadata"]
    return (meta.get("annotations") or {}).get("meta.helm.sh/release-name"), \
        (meta.get("labels") or {}).get("app.kubernetes.io/managed-by")


def test_upgrade_from_the_previous_chart_updates_the_crd(cluster, namespace, apiextensions_v1, tmp_path):
    """0.1.0 (CRD in crds/, never upgraded by Helm) -> this chart: the documented
    `helm upgrade --take-ownership` adopts the CRD and replaces its schema with the new one."""
    old_chart = _previous_chart(tmp_path)
    old_crd = yaml.safe_load((old_chart / "crds" / CRD_PATH.name).read_text())
    new_crd = yaml.safe_load((CHART / CRD_PATH).read_text())
    added = sorted(_paths(_schema(new_crd)) - _paths(_schema(old_crd)))
    assert added, "the CRD gained no field since the previous chart: nothing to show an upgrade with"
    probe = added[0]
    # The session's CRD may be newer already (other tests applied it); Helm would skip crds/ then,
    # so put the old one in place as a fresh 0.1.0 install leaves it.
    cluster.kubectl("replace", "-f", str(old_chart / "crds" / CRD_PATH.name), check=True)
    name = f"up-{uuid.uuid4().hex[:5]}"
    run_helm(cluster, "install", name, str(old_chart), "--namespace", namespace,
             "--set", "replicaCount=0")
    _wait_explains(cluster, probe, present=False)
    # Without adoption Helm refuses: the CRD exists and no release owns it.
    refused = run_helm(cluster, "upgrade", name, str(CHART), "--namespace", namespace, "--set", "replicaCount=0",
                       check=False)
    assert refused.returncode != 0 and CRD_NAME in refused.stderr, refused.stdout + refused.stderr
    try:
        run_helm(cluster, "upgrade", name, str(CHART), "--namespace", namespace, "--set", "replicaCount=0",
                 "--take-ownership")
        for path in added:
            _wait_explains(cluster, path, present=True)
        live = _cluster_crd(apiextensions_v1)
        assert _schema(live) == _schema(new_crd)
        assert live["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert _helm_owner(live) == (name, "Helm")
    finally:
        run_helm(cluster, "uninstall", name, "--namespace", namespace, "--wait", check=False)
    # keep: the CRD (and so every NSMTraining of the cluster) outlives the release.
    assert _cluster_crd(apiextensions_v1)["metadata"]["name"] == CRD_NAME


def test_upgrade_between_templated_versions_updates_the_crd(cluster, namespace, apiextensions_v1, tmp_path):
    """Steady state from here on: chart N (a copy of this chart without one property) installed,
    `helm upgrade` to N+1 (this chart) adds the property; no adoption step."""
    old_chart = tmp_path / "nsm-operator"
    shutil.copytree(CHART, old_chart)
    crd = yaml.safe_load((old_chart / CRD_PATH).read_text())
    del _schema(crd)["properties"]["spec"]["properties"]["model"]
    (old_chart / CRD_PATH).write_text(yaml.safe_dump(crd, sort_keys=False))
    name = f"tpl-{uuid.uuid4().hex[:5]}"
    try:
        run_helm(cluster, "install", name, str(old_chart), "--namespace", namespace, "--set", "replicaCount=0",
                 "--take-ownership")  # the session's CRD may belong to another test's release
        _wait_explains(cluster, "spec.model", present=False)
        run_helm(cluster, "upgrade", name, str(CHART), "--namespace", namespace, "--set", "replicaCount=0")
        _wait_explains(cluster, "spec.model.hiddenDim", present=True)
        assert _helm_owner(_cluster_crd(apiextensions_v1)) == (name, "Helm")
    finally:
        run_helm(cluster, "uninstall", name, "--namespace", namespace, "--wait", check=False)
    assert _cluster_crd(apiextensions_v1)["metadata"]["name"] == CRD_NAME


# (verb, resource, namespace: "team" | "operator" | None for cluster scope, allowed)
EDIT_MATRIX = [
    *[(verb, "nsmtrainings.nsm.dev", "team", True)
      for verb in ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")],
    ("get", "nsmtrainings.nsm.dev/status", "team", True),
    ("patch", "nsmtrainings.nsm.dev/status", "team", False),  # status is the operator's
    ("update", "nsmtrainings.nsm.dev/status", "team", False),
    ("create", "nsmtrainings.nsm.dev", "operator", False),  # only where the binding is
    ("list", "nsmtrainings.nsm.dev", None, False),
    ("get", "secrets", "operator", False),
    ("list", "secrets", "operator", False),
    ("watch", "secrets", "operator", False),
    ("update", "secrets", "operator", False),
    ("delete", "secrets", "operator", False),
    ("list", "secrets", None, False),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", None, False),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", None, False),
]
VIEW_MATRIX = [
    ("get", "nsmtrainings.nsm.dev", "team", True),
    ("list", "nsmtrainings.nsm.dev", "team", True),
    ("create", "nsmtrainings.nsm.dev", "team", False),
    ("delete", "nsmtrainings.nsm.dev", "team", False),
    ("patch", "nsmtrainings.nsm.dev/status", "team", False),
]


def test_namespace_edit_and_view_users(cluster, release, core_v1):
    """RoleBindings to the *default* `edit` and `view` ClusterRoles in a team namespace: the
    aggregation controller folds the chart's rules into them."""
    team = f"team-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace({"metadata": {"name": team}})
    alice, bob = f"alice-{team}", f"bob-{team}"
    try:
        for user, role in ((alice, "edit"), (bob, "view")):
            cluster.kubectl("create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}",
                            "-n", team, check=True)
        # The operator's Secret (Modal credentials, in its own namespace).
        cluster.kubectl("create", "secret", "generic", "modal-credentials", "--from-literal=MODAL_TOKEN_ID=x",
                        "-n", release.namespace, check=True)
        scopes = {"team": team, "operator": release.namespace, None: None}

        def mismatches(user, matrix):
            return [(v, r, ns, want) for v, r, ns, want in matrix if _can_i(cluster, user, v, r, scopes[ns]) != want]

        # Aggregation is asynchronous (kube-controller-manager's clusterrole-aggregation controller).
        wait_for(lambda: not mismatches(alice, EDIT_MATRIX[:1]), 60, "edit to aggregate the chart's rules")
        assert not mismatches(alice, EDIT_MATRIX), "(verb, resource, scope, expected) for the edit user"
        assert not mismatches(bob, VIEW_MATRIX), "(verb, resource, scope, expected) for the view user"

        # And for real, through impersonation: create, read, delete; Secrets of the operator refused.
        training = ("apiVersion: nsm.dev/v1alpha1\nkind: NSMTraining\nmetadata: {name: by-alice}\n"
                    "spec: {domain: causal, epochs: 1, suspend: true}\n")
        as_alice = (f"--as={alice}", "-n", team)
        cluster.kubectl("create", "-f", "-", *as_alice, input=training, check=True)
        assert cluster.kubectl("get", "nsmt", "by-alice", *as_alice).returncode == 0
        denied = cluster.kubectl("get", "secret", "modal-credentials", f"--as={alice}", "-n", release.namespace)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
        refused = cluster.kubectl("delete", "nsmt", "by-alice", f"--as={bob}", "-n", team)
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
        cluster.kubectl("delete", "nsmt", "by-alice", *as_alice, "--wait=false", check=True)
    finally:
        cluster.kubectl("delete", "namespace", team, "--wait=false")


def test_notes_example_applies(cluster, namespace, release):
    """The example NOTES.txt prints is accepted by the API server as it stands."""
    notes = run_helm(cluster, "get", "notes", release.name, "--namespace", release.namespace).stdout
    example = notes.split("<<'YAML'\n", 1)[1].split("\nYAML\n", 1)[0]
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=example)
    assert proc.returncode == 0, proc.stderr
    assert "nsmtraining.nsm.dev/causal-quickstart created (server dry run)" in proc.stdout
