"""Plain-dict NSMTraining bodies for the operator's unit tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nsm_operator.resource import Training
from nsm_operator.settings import OperatorSettings


def body(name: str = "causal-prod", namespace: str = "ml", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nsm.dev/v1alpha1",
        "kind": "NSMTraining",
        "metadata": {"name": name, "namespace": namespace, "uid": "uid-1", "generation": 1},
        "spec": {"domain": "causal", **spec},
    }


@pytest.fixture
def make_training():
    def make(*, labels=None, annotations=None, name="causal-prod", **spec: Any) -> Training:
        b = body(name=name, **spec)
        if labels:
            b["metadata"]["labels"] = copy.deepcopy(labels)
        if annotations:
            b["metadata"]["annotations"] = copy.deepcopy(annotations)
        return Training.from_body(b)

    return make


@pytest.fixture
def settings() -> OperatorSettings:
    return OperatorSettings()
