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


def test_spec_yaml_bytes_match_the_pure_python_dumper(make_training, monkeypatch):
    # The ConfigMap is emitted with libyaml when available (CPU under a burst); the trainer must
    # read exactly what the pure-Python SafeDumper would have written.
    from nsm_operator.builders import config

    assert config._DUMPER is yaml.CSafeDumper, "PyYAML without libyaml: the C dumper is not in use"
    training = make_training(epochs=3, labels={"team": "x"}, image="reg.example/t:1",
                             env=[{"name": "A", "value": "ünï: 'q' \"x\"\n2 #"}, {"name": "B", "value": "010"}])  # fmt: skip
    fast = config.training_yaml(training)
    monkeypatch.setattr(config, "_DUMPER", yaml.SafeDumper)
    assert fast.encode() == config.training_yaml(training).encode()
