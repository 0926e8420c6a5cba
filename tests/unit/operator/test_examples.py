"""Every example parses with the same model the CLI and the operator use."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nsm.spec import load_training, parse_training

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))


def test_the_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert {"nsmtraining-planning.yaml", "nsmtraining-causal.yaml", "nsmtraining-kg.yaml",
            "validate-3level.yaml", "nsmtraining-local.yaml"} <= names  # fmt: skip


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses(path):
    load_training(path)
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        training = parse_training(doc)
        assert training.metadata.name and training.spec.domain


def test_validate_3level_is_three_short_runs():
    path = next(p for p in EXAMPLES if p.name == "validate-3level.yaml")
    docs = [parse_training(d) for d in yaml.safe_load_all(path.read_text()) if d]
    assert sorted(d.spec.domain.value for d in docs) == ["causal", "kg", "planning"]
    assert all(d.spec.epochs == 10 for d in docs)


def test_local_example_is_cpu_only():
    path = next(p for p in EXAMPLES if p.name == "nsmtraining-local.yaml")
    assert load_training(path).spec.resources.gpu.count == 0


def test_local_example_is_the_embedded_default_run():
    """`nsm train -f examples/nsmtraining-local.yaml` trains what `make run` trains."""
    from nsm.spec import parse_training as parse
    from nsm.train.defaults import default_training

    path = next(p for p in EXAMPLES if p.name == "nsmtraining-local.yaml")
    local = load_training(path).spec.model_dump(exclude={"checkpoint", "retry", "timeout_seconds"})
    default = parse(default_training()).spec.model_dump(exclude={"checkpoint", "retry", "timeout_seconds"})
    assert local == default
