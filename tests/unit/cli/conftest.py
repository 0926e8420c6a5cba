from __future__ import annotations

import pytest

import nsm.train.trainer as trainer_module
from tests.unit.train.standin import tiny_model_factory


@pytest.fixture
def tiny_model(monkeypatch):
    """Make ``nsm train`` build the small stand-in model (the CLI tests exercise the CLI, not the model)."""
    monkeypatch.setattr(trainer_module, "default_model_factory", tiny_model_factory)


@pytest.fixture
def data_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "nsm-data-cache"
