"""The chart across a release's life: the CRD is a template (so `helm upgrade` updates it) that
`helm uninstall` keeps, users of the default `admin`/`edit`/`view` roles get NSMTraining rights
by aggregation, images can be moved to another registry, and NOTES.txt's example is a valid
NSMTraining on its own. Rendered with `helm template`; tests/e2e/chart runs them on a cluster."""

from __future__ import annotations

import re

import yaml
from tests.unit.chart.chart_fixtures import CHART, by_kind, helm, one, render  # noqa: F401 - fixtures

from nsm.crd import crd
from nsm.spec import parse_training

CRD_FILE = CHART / "crd" / "nsm.dev_nsmtrainings.yaml"


def _roles(objs: list[dict]) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in by_kind(objs, "ClusterRole")}


def test_crd_is_rendered_from_the_generated_file(render):
    rendered = one(render(), "CustomResourceDefinition")
    generated = yaml.safe_load(CRD_FILE.read_text())
    assert rendered["spec"] == generated["spec"] == crd()["spec"]
    assert rendered["metadata"]["name"] == "nsmtrainings.nsm.dev"
    # Kept by `helm uninstall` (and by an upgrade with crds.install=false): deleting a CRD deletes
    # every NSMTraining in the cluster.
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    labels = rendered["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert labels["app.kubernetes.io/part-of"] == "nsm-operator"
    assert labels["helm.sh/chart"] == "nsm-operator-0.2.0"


def test_crd_install_switch(render):
    assert not by_kind(render(set=["crds.install=false"]), "CustomResourceDefinition")
    assert one(render(set=["crds.install=true"]), "CustomResourceDefinition")


def test_crd_carries_common_labels(render):
    rendered = one(render("all-enabled.yaml"), "CustomResourceDefinition")
    assert rendered["metadata"]["labels"]["team"] == "ml-platform"


def test_aggregated_roles(render):
    roles = _roles(render(release="prod"))
    edit, view = roles["prod-nsm-operator-edit"], roles["prod-nsm-operator-view"]
    agg = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k: v for k, v in edit["metadata"]["labels"].items() if k.startswith(agg)} == {
        f"{agg}admin": "true", f"{agg}edit": "true"}
    assert {k: v for k, v in view["metadata"]["labels"].items() if k.startswith(agg)} == {f"{agg}view": "true"}
    assert edit["rules"] == [{"apiGroups": ["nsm.dev"], "resources": ["nsmtrainings"],
                              "verbs": ["get", "list", "watch", "create", "update", "patch", "delete",
                                        "deletecollection"]}]
    assert view["rules"] == [{"apiGroups": ["nsm.dev"], "resources": ["nsmtrainings", "nsmtrainings/status"],
                              "verbs": ["get", "list", "watch"]}]


def test_aggregated_roles_toggle(render):
    assert set(_roles(render(set=["rbac.aggregateToDefaultRoles=false"]))) == {"nsm-operator"}
    assert not by_kind(render("existing-serviceaccount.yaml"), "ClusterRole")  # rbac.create=false


def _images(objs: list[dict]) -> tuple[str, str]:
    c = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    return c["image"], env["NSM_OPERATOR_DEFAULT_IMAGE"]


def test_image_registry(render):
    assert _images(render()) == ("ghcr.io/nsm-dev/nsm-operator:0.1.0", "ghcr.io/nsm-dev/nsm-trainer:0.1.0")
    # One switch moves both images to a mirror; the trainer may have its own registry.
    assert _images(render(set=["image.registry=mirror.example.com:5000/ml"])) == (
        "mirror.example.com:5000/ml/nsm-dev/nsm-operator:0.1.0", "mirror.example.com:5000/ml/nsm-dev/nsm-trainer:0.1.0")
    assert _images(render(set=["operator.trainerImage.registry=gpu.example.com"])) == (
        "ghcr.io/nsm-dev/nsm-operator:0.1.0", "gpu.example.com/nsm-dev/nsm-trainer:0.1.0")
    # An empty registry: the repository is the whole name (e.g. a Docker Hub image).
    assert _images(render(set=["image.registry=", "image.repository=acme/op"]))[0] == "acme/op:0.1.0"


def _notes_example() -> str:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    match = re.search(r"<<'YAML'\n(.*?)\nYAML\n", notes, re.S)
    assert match, "NOTES.txt has no `kubectl apply -f - <<'YAML'` example"
    return match.group(1)


def test_notes_example_is_a_complete_training():
    """The example is self-contained (no file of the git checkout) and a valid NSMTraining."""
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "examples/" not in notes
    text = _notes_example()
    assert "{{" not in text
    training = parse_training(yaml.safe_load(text))
    assert training.spec.domain.value == "causal"
    assert f"kubectl get nsmt {training.metadata.name}" in notes
