"""The ConfigMap holding the NSMTraining YAML the trainer reads (``nsm train -f``)."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's emitter when PyYAML was built with it: the same bytes as the pure-Python SafeDumper
# (tests/unit/operator/builders) at a quarter of the CPU, which counts under a burst of creates.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

from nsm.spec import API_GROUP, API_VERSION, KIND

from nsm_operator.builders.meta import child_metadata
from nsm_operator.builders.names import SPEC_KEY, configmap_name
from nsm_operator.resource import Training


def training_yaml(training: Training) -> str:
    """The normalised NSMTraining document (defaults filled in), as the trainer parses it."""
    doc = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": training.name, "namespace": training.namespace},
        "spec": training.spec.to_wire(),
    }
    return yaml.dump(doc, Dumper=_DUMPER, sort_keys=False)


def build_configmap(training: Training) -> dict[str, Any]:
    """ConfigMap ``<name>-spec`` with key ``training.yaml``; rewritten when an attempt starts."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(training, configmap_name(training.name)),
        "data": {SPEC_KEY: training_yaml(training)},
    }
