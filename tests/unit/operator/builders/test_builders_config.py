from __future__ import annotations

import yaml

from nsm.spec import parse_training
from nsm_operator.builders import build_configmap


def test_configmap_holds_a_parseable_training(make_training):
    cm = build_configmap(make_training(epochs=7, labels={"team": "x"}))
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == "causal-prod-spec"
    assert cm["metadata"]["labels"]["team"] == "x"
    assert cm["metadata"]["ownerReferences"][0]["name"] == "causal-prod"
    assert list(cm["data"]) == ["training.yaml"]
    doc = yaml.safe_load(cm["data"]["training.yaml"])
    assert doc["metadata"] == {"name": "causal-prod", "namespace": "ml"}
    parsed = parse_training(doc)
    assert parsed.spec.epochs == 7 and parsed.spec.dataset.num_scenarios == 1000
