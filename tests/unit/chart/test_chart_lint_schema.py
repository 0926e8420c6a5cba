"""`helm lint --strict` and values.schema.json: good values pass, bad ones are rejected by helm
with a message naming the key (and by the schema itself, checked without helm)."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from tests.unit.chart.chart_fixtures import CHART, VALUES, helm, kube_version, run_helm  # noqa: F401 - fixture

GOOD = ["all-enabled.yaml", "custom-settings.yaml", "existing-serviceaccount.yaml"]
# values file -> text helm's error must contain
BAD = {
    "bad-replicacount-string.yaml": "replicaCount",
    "bad-replicacount-two.yaml": "replicaCount",
    "bad-unknown-key.yaml": "enabld",
    "bad-unknown-top-level.yaml": "replicas",
    "bad-price.yaml": "pricePerGpuHour",
    "bad-namespace-name.yaml": "watchNamespaces",
    "bad-gpu-product.yaml": "A100",
    "bad-interval.yaml": "interval",
}


def _schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


@pytest.mark.parametrize("values", [None, *GOOD])
def test_helm_lint_strict(helm, values):
    args = ["lint", "--strict", str(CHART), "--kube-version", kube_version()]
    if values:
        args += ["-f", str(VALUES / values)]
    proc = run_helm(helm, *args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("values,needle", sorted(BAD.items()))
def test_helm_rejects_bad_values(helm, values, needle):
    proc = run_helm(helm, "template", "x", str(CHART), "--kube-version", kube_version(),
                    "-f", str(VALUES / values), check=False)
    assert proc.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert needle in proc.stderr, proc.stderr


def test_schema_is_valid_and_accepts_the_defaults():
    schema = _schema()
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, schema)
    for good in GOOD:
        merged = _merge(defaults, yaml.safe_load((VALUES / good).read_text()))
        jsonschema.validate(merged, schema)


@pytest.mark.parametrize("values", sorted(BAD))
def test_schema_rejects_bad_values(values):
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_merge(defaults, yaml.safe_load((VALUES / values).read_text())), _schema())


def _strict_objects(schema: dict, path: str = "$"):
    """Every object level the schema spells out (has `properties`)."""
    if schema.get("type") == "object" and "properties" in schema:
        yield path, schema
        for key, sub in schema["properties"].items():
            yield from _strict_objects(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from _strict_objects(schema["items"], f"{path}[]")


def test_every_defined_object_level_is_closed():
    levels = list(_strict_objects(_schema()))
    assert len(levels) > 10
    for path, sub in levels:
        assert sub.get("additionalProperties") is False, f"{path} allows unknown keys"


def test_every_value_is_documented_and_in_the_schema():
    """Each key of values.yaml has a comment right above it (or above its block) and a schema entry."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    schema = _schema()

    def walk(node, sub, path):
        for key, value in node.items():
            assert key in sub.get("properties", {}), f"{path}{key} missing from values.schema.json"
            if isinstance(value, dict) and value and "properties" in sub["properties"][key]:
                walk(value, sub["properties"][key], f"{path}{key}.")

    walk(yaml.safe_load("\n".join(lines)), schema, "")
    # Children of these blocks are Kubernetes API fields documented by the block's comment.
    k8s_blocks = ("podSecurityContext:", "securityContext:", "resources:")
    block = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-") or ":" not in stripped:
            continue
        if not line.startswith(" "):
            block = stripped if stripped in k8s_blocks else None
        elif block:
            continue
        prev = lines[i - 1].strip() if i else ""
        assert prev.startswith("#"), f"values.yaml line {i + 1} has no comment: {line!r}"


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_pinned_helm_renders_the_chart_without_kube_version(helm):
    """The pinned helm is stamped with the Kubernetes version of its client-go (as helm's own
    release build is), so a user's offline `helm template` / `helm lint` accepts the chart's
    `kubeVersion` without `--kube-version` (an unstamped source build assumes v1.20 and refuses)."""
    for args in (["template", "nsm", str(CHART)], ["lint", "--strict", str(CHART)]):
        proc = run_helm(helm, *args, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
