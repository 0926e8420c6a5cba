"""nsm/placement.py and the spec's new constraints: pydantic rejects every malformed spec of the
shared corpus naming the field, and accepts the Kubernetes shapes users copy from pod specs."""

from __future__ import annotations

import pytest

from nsm.crd import spec_schema
from nsm.spec import SpecError, parse_spec
from tests.invalid_trainings import CASES, spec_of


@pytest.mark.parametrize(("fields", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_spec_names_the_field(fields, field):
    with pytest.raises(SpecError) as err:
        parse_spec(spec_of(fields))
    assert field in str(err.value)


def test_corpus_is_large_and_covers_the_issue():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
    ids = {c[0] for c in CASES}
    assert {"memory-double-dot", "cpu-negative-string", "queue-name-space", "storage-class-bad"} <= ids


def test_valid_placement_parses():
    spec = parse_spec(spec_of({
        "image": "registry.example.com:5000/ml/nsm-trainer:0.1.0-cu128",
        "queueName": "team-a.gpu_queue",
        "checkpoint": {"storage": {"storageClassName": "premium-rwo", "existingClaim": "ckpt.v1"}},
        "scheduling": {
            "nodeSelector": {"cloud.google.com/gke-nodepool": "a100", "zone": ""},
            "tolerations": [{"operator": "Exists"}, {"key": "spot", "operator": "Exists", "effect": "NoExecute",
                                                     "tolerationSeconds": 0}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "gpu-mem", "operator": "Gt", "values": ["40"]}]}]}}},
            "priorityClassName": "high", "imagePullSecrets": [{"name": "regcred"}],
        },
        "env": [{"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}}],
        "envFrom": [{"configMapRef": {"name": "proxy", "optional": True}, "prefix": "P_"}],
    }))  # fmt: skip
    assert spec.scheduling.tolerations[1].toleration_seconds == 0
    assert spec.env[0].value_from.secret_key_ref.key == "api-key"
    assert spec.to_wire()["scheduling"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_crd_carries_the_cel_rules_and_patterns():
    p = spec_schema()["properties"]
    assert p["target"]["x-kubernetes-validations"] == [{"rule": "self == oldSelf", "message": "spec.target is immutable"}]
    assert p["retry"]["x-kubernetes-validations"][0]["rule"] == "self.maxDelaySeconds >= self.initialDelaySeconds"
    assert p["queueName"]["pattern"] and p["checkpoint"]["properties"]["storage"]["properties"]["storageClassName"]["pattern"]
    tol = p["scheduling"]["properties"]["tolerations"]["items"]
    assert len(tol["x-kubernetes-validations"]) == 3 and tol["properties"]["key"]["pattern"]
    node_selector = p["scheduling"]["properties"]["nodeSelector"]
    assert node_selector["additionalProperties"]["pattern"] and "patternProperties" not in node_selector
    assert p["env"]["x-kubernetes-list-type"] == "map" and p["env"]["x-kubernetes-list-map-keys"] == ["name"]
