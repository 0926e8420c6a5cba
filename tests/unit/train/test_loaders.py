"""DataLoader workers default to what the machine offers (spec.dataLoader.numWorkers: null)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from nsm.spec import parse_spec
from nsm.train import loaders
from nsm.train.loaders import EpochBatchSampler, default_num_workers, make_loader


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 2), (3, 3), (64, 4)])
def test_default_is_one_per_available_cpu_at_most_4(monkeypatch, cpus, expected):
    monkeypatch.setattr(loaders.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_num_workers() == expected


def test_null_workers_run_without_torch_warning_and_explicit_values_win():
    """The spec default on this machine: no "suggested max number of worker" warning."""
    ds = torch.utils.data.TensorDataset(torch.arange(8.0))
    sampler = EpochBatchSampler(torch.arange(8), 4, shuffle=False, seed=0)
    spec = parse_spec({"domain": "causal"})
    assert spec.data_loader.num_workers is None
    loader = make_loader(ds, sampler, spec.data_loader, torch.device("cpu"), seed=0)
    assert loader.num_workers == min(4, len(os.sched_getaffinity(0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's check runs when the workers start
        batches = list(loader)
    assert len(batches) == 2
    explicit = parse_spec({"domain": "causal", "dataLoader": {"numWorkers": 0}}).data_loader
    assert make_loader(ds, sampler, explicit, torch.device("cpu"), seed=0).num_workers == 0
