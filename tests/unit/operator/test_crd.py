"""The committed CRD is what nsm/spec.py generates, and its schema is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from nsm.cli import main as nsm_main
from nsm.crd import CRD_NAME, crd, render_crd, spec_schema

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "charts/nsm-operator/crd/nsm.dev_nsmtrainings.yaml"


def test_committed_crd_matches_the_model():
    assert COMMITTED.read_text() == render_crd(), "CRD drifted from nsm/spec.py: run `make crd`"


def test_nsm_crd_writes_the_file(tmp_path, capsys):
    out = tmp_path / "crds" / "x.yaml"
    assert nsm_main(["crd", "--output", str(out)]) == 0
    assert out.read_text() == render_crd()
    assert nsm_main(["crd"]) == 0
    assert capsys.readouterr().out == render_crd()


def _walk(node: dict[str, Any], path: str):
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_schema_is_structural():
    for path, node in _walk(_schema(), ""):
        typed = "type" in node
        escape = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        assert typed or escape, f"{path or '<root>'} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "$ref" not in node and "title" not in node, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{path}: anyOf only for int-or-string"
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in node:
                assert node[key] is True, f"{path}.{key} must be an OpenAPI v3.0 boolean"


def test_crd_identity_and_columns():
    obj = crd()
    assert obj["metadata"]["name"] == CRD_NAME == "nsmtrainings.nsm.dev"
    names = obj["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("NSMTraining", "nsmtrainings", ["nsmt"])
    version = obj["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Domain": ".spec.domain",
        "Epoch": ".status.epochSummary",
        "Val-Acc": ".status.valAccuracySummary",
        "Attempts": ".status.attempts",
        "Reason": ".status.reason",
        "Age": ".metadata.creationTimestamp",
    }
    by_name = {c["name"]: c for c in version["additionalPrinterColumns"]}
    # kubectl prints a number column unrounded; the operator writes the rounded string.
    assert by_name["Val-Acc"]["type"] == "string"
    assert by_name["Reason"]["priority"] == 1  # -o wide: the default view stays narrow
    assert all(c.get("priority", 0) == 0 for n, c in by_name.items() if n != "Reason")


def test_every_property_has_a_description():
    """`kubectl explain nsmt.<path>` explains every field, nested groups and status included."""
    # .metadata is the exception the API server enforces: "must not specify anything other than
    # name and generateName" (kubectl explain shows ObjectMeta's documentation instead).
    assert _schema()["properties"]["metadata"] == {"type": "object"}
    missing = [path for path, node in _walk(_schema(), "") if path not in ("", ".metadata")
               and not node.get("description")]
    assert len(list(_walk(_schema(), ""))) > 100
    assert missing == [], f"{len(missing)} properties without a description: {missing}"


def test_spec_constraints_are_emitted():
    s = spec_schema()
    p = s["properties"]
    assert s["required"] == ["domain"]
    assert p["domain"]["enum"] == ["planning", "causal", "kg"]
    assert p["domain"]["x-kubernetes-validations"] == [
        {"rule": "self == oldSelf", "message": "spec.domain is immutable"}
    ]
    assert p["epochs"] == {
        "type": "integer", "description": "Maximum number of epochs.", "default": 100, "maximum": 100000, "minimum": 1
    }  # fmt: skip
    assert p["poolRatio"]["nullable"] is True
    assert (p["poolRatio"]["minimum"], p["poolRatio"]["exclusiveMinimum"]) == (0.0, True)
    assert (p["poolRatio"]["maximum"], p["poolRatio"]["exclusiveMaximum"]) == (1.0, True)
    assert p["resources"]["properties"]["gpu"]["properties"]["product"]["enum"][4] == "A100-40GB"
    for node in (p["resources"]["properties"]["cpu"], p["checkpoint"]["properties"]["storage"]["properties"]["size"]):
        assert node["x-kubernetes-int-or-string"] is True and "type" not in node and "pattern" in node


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("poolRatio", 1.5), ("domain", "chess"), ("learningRate", 0.0)],
)
def test_crd_schema_rejects_what_pydantic_rejects(field, value):
    """The API server and pydantic agree on bad values (checked with an OpenAPI-3.0-ish validator)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = _draft4(spec_schema())
    spec = {"domain": "causal", field: value}
    with pytest.raises(jsonschema.ValidationError) as info:
        jsonschema.Draft4Validator(schema).validate(spec)
    assert field in list(info.value.absolute_path) or field == "domain"


def _draft4(node: Any) -> Any:
    # OpenAPI v3.0 `nullable` and int-or-string in JSON-Schema draft 4 terms.
    if isinstance(node, list):
        return [_draft4(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _draft4(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def test_committed_crd_is_valid_yaml():
    assert yaml.safe_load(COMMITTED.read_text())["kind"] == "CustomResourceDefinition"


def test_crd_returns_a_fresh_document():
    from nsm.crd import STATUS_SCHEMA

    first = crd()
    first["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"].clear()
    assert crd() != first and STATUS_SCHEMA["properties"]
    assert render_crd() == COMMITTED.read_text()
