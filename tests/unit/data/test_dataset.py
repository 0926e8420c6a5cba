import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

import nsm.data.dataset as dataset_mod
from nsm.data import (
    DEFAULT_PARAMS,
    DOMAINS,
    VALIDATION_PARAMS,
    BatchedGraphDataset,
    GraphBatch,
    NSMDataset,
    cache_key,
    cache_path,
    load_dataset,
    split_indices,
)

from .helpers import assert_same_store, store_digest

SMALL = {
    "planning": {"num_problems": 40},
    "causal": {"num_scenarios": 40},
    "kg": {"num_entities": 60, "num_triples": 200},
}


def test_param_tables():
    assert DOMAINS == ("planning", "causal", "kg")
    assert DEFAULT_PARAMS == {
        "planning": {"num_problems": 2858},
        "causal": {"num_scenarios": 1000},
        "kg": {"num_entities": 200, "num_triples": 2500},
    }
    assert set(VALIDATION_PARAMS) == set(DOMAINS)
    for d in DOMAINS:
        assert set(VALIDATION_PARAMS[d]) == set(DEFAULT_PARAMS[d])


@pytest.mark.parametrize("domain", DOMAINS)
def test_cache_round_trip(domain, tmp_path, monkeypatch):
    first = load_dataset(domain, SMALL[domain], seed=1, cache_dir=tmp_path)
    assert isinstance(first, NSMDataset) and first.domain == domain and first.num_classes == 2
    assert first.num_relations == len(first.relation_names)
    assert first.params == {**SMALL[domain], "seed": 1, "generator_version": dataset_mod.GENERATOR_VERSION}
    files = list(tmp_path.iterdir())
    assert files == [cache_path(domain, SMALL[domain], 1, tmp_path)]  # no temporary file left
    # The file is plain data: loadable with weights_only=True.
    state = torch.load(files[0], weights_only=True)
    assert state["domain"] == domain

    def boom(*a, **k):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(dataset_mod, "generate_dataset", boom)
    second = load_dataset(domain, SMALL[domain], seed=1, cache_dir=tmp_path)
    assert_same_store(first.store, second.store)
    assert second.feature_vocab == first.feature_vocab and second.relation_names == first.relation_names
    assert second.params == first.params


def test_corrupt_cache_file_is_regenerated(tmp_path):
    path = cache_path("causal", SMALL["causal"], 0, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable cache file"):
        ds = load_dataset("causal", SMALL["causal"], seed=0, cache_dir=tmp_path)
    assert len(ds) == 40
    assert torch.load(path, weights_only=True)["domain"] == "causal"


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NSM_DATA_CACHE", str(tmp_path / "a"))
    assert dataset_mod.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("NSM_DATA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert dataset_mod.default_cache_dir() == tmp_path / "x" / "nsm" / "datasets"
    load_dataset("causal", SMALL["causal"], seed=0)
    assert len(list((tmp_path / "x" / "nsm" / "datasets").iterdir())) == 1


def test_cache_key_covers_every_parameter(monkeypatch):
    base = cache_key("kg", {"num_entities": 60, "num_triples": 200}, 1)
    keys = {
        base,
        cache_key("kg", {"num_entities": 61, "num_triples": 200}, 1),
        cache_key("kg", {"num_entities": 60, "num_triples": 201}, 1),
        cache_key("kg", {"num_entities": 60, "num_triples": 200}, 2),
        cache_key("planning", {"num_entities": 60, "num_triples": 200}, 1),
    }
    assert len(keys) == 5
    assert cache_key("kg", {"num_triples": 200, "num_entities": 60}, 1) == base  # order-free
    monkeypatch.setattr(dataset_mod, "GENERATOR_VERSION", dataset_mod.GENERATOR_VERSION + 1)
    assert cache_key("kg", {"num_entities": 60, "num_triples": 200}, 1) != base


def test_bad_params_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown domain"):
        load_dataset("chess", {}, 0, tmp_path)
    with pytest.raises(ValueError, match="num_scenarios"):
        load_dataset("causal", {"num_problems": 10}, 0, tmp_path)


def test_split_indices():
    y = torch.tensor([0, 1] * 50 + [1] * 20)
    tr, va, te = split_indices(y, 0.15, 0.15, seed=3)
    again = split_indices(y, 0.15, 0.15, seed=3)
    assert all(torch.equal(a, b) for a, b in zip((tr, va, te), again))
    allidx = torch.cat([tr, va, te])
    assert sorted(allidx.tolist()) == list(range(len(y)))
    for part, frac in ((va, 0.15), (te, 0.15)):
        for c in (0, 1):
            n_c = int((y == c).sum())
            assert int((y[part] == c).sum()) == round(frac * n_c)
    assert not torch.equal(split_indices(y, seed=4)[1], va)
    with pytest.raises(ValueError):
        split_indices(y, 0.6, 0.5)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_batched_dataset_with_dataloader(num_workers):
    ds = load_dataset_uncached("planning")
    idx = torch.arange(5, 25)
    bds = BatchedGraphDataset(ds.store, idx)
    assert len(bds) == 20
    loader = DataLoader(
        bds, sampler=BatchSampler(SequentialSampler(bds), 8, drop_last=False), batch_size=None, num_workers=num_workers
    )
    batches = list(loader)
    assert [b.num_graphs for b in batches] == [8, 8, 4]
    assert all(isinstance(b, GraphBatch) for b in batches)
    ref = ds.store.collate(idx[:8])
    assert torch.equal(batches[0].x, ref.x) and torch.equal(batches[0].edge_index, ref.edge_index)
    assert torch.cat([b.y for b in batches]).tolist() == ds.store.y[idx].tolist()
    shuffled = DataLoader(bds, sampler=BatchSampler(RandomSampler(bds), 6, False), batch_size=None)
    assert sum(b.num_graphs for b in shuffled) == 20


def load_dataset_uncached(domain):
    return dataset_mod.generate_dataset(domain, SMALL[domain], seed=0)


def test_independent_of_pythonhashseed():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from nsm.data.dataset import generate_dataset\n"
        "import hashlib\n"
        "def store_digest(s):\n"
        "    h = hashlib.sha256()\n"
        "    for k, t in sorted(s.state_dict().items()): h.update(k.encode()); h.update(t.contiguous().numpy().tobytes())\n"
        "    return h.hexdigest()\n"
        f"S = {SMALL!r}\n"
        "print(*[store_digest(generate_dataset(d, S[d], 11).store) for d in S])"
    )
    root = str(Path(__file__).resolve().parents[3])
    here = " ".join(store_digest(dataset_mod.generate_dataset(d, SMALL[d], 11).store) for d in SMALL)
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONWARNINGS": "ignore"}
        out = subprocess.run(
            [sys.executable, "-c", code, root], env=env, capture_output=True, text=True, check=True, timeout=300
        )
        assert out.stdout.strip() == here
