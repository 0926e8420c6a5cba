"""Dataset loading: generate once, cache as plain tensors, split, and batch for a DataLoader."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from nsm.data.base import GENERATOR_VERSION, TIERS, GeneratedDataset
from nsm.data.causal import generate_causal
from nsm.data.graph import GraphBatch, GraphStore
from nsm.data.kg import generate_kg
from nsm.data.planning import generate_planning

DOMAINS: tuple[str, ...] = ("planning", "causal", "kg")

# The seed's production sizes.
DEFAULT_PARAMS: dict[str, dict[str, int]] = {
    "planning": {"num_problems": 2858},
    "causal": {"num_scenarios": 1000},
    "kg": {"num_entities": 200, "num_triples": 2500},
}

# Sizes for `nsm validate`: 10 epochs on each domain must fit in a few CPU minutes.
# Sizes of `nsm validate` (10 epochs). The NSM model's L1 needs enough optimiser steps to leave
# the majority-class plateau on planning's 4-hop task: at a third of these sizes planning
# collapsed in 10 epochs; at these, all three domains reach >= 0.99 in about 3 minutes on 2 cores.
VALIDATION_PARAMS: dict[str, dict[str, int]] = {
    "planning": {"num_problems": 3000},
    "causal": {"num_scenarios": 1800},
    "kg": {"num_entities": 360, "num_triples": 3000},
}

_GENERATORS: dict[str, Callable[..., GeneratedDataset]] = {
    "planning": generate_planning,
    "causal": generate_causal,
    "kg": generate_kg,
}


@dataclass
class NSMDataset:
    """One domain's graphs plus everything a model and a trainer need to know about them."""

    domain: str
    store: GraphStore
    feature_vocab: list[int]
    num_relations: int
    relation_names: tuple[str, ...]
    num_classes: int = 2
    params: dict[str, Any] = field(default_factory=dict)
    # See GeneratedDataset: split groups, the deep tier's test-only graphs, kg's triples.
    groups: Tensor | None = None
    test_only: Tensor | None = None
    info: Tensor | None = None

    def __len__(self) -> int:
        return len(self.store)

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors, lists, ints and strings only (loadable with ``weights_only=True``)."""
        return {
            "domain": self.domain,
            "store": self.store.state_dict(),
            "feature_vocab": list(self.feature_vocab),
            "num_relations": self.num_relations,
            "relation_names": list(self.relation_names),
            "num_classes": self.num_classes,
            "params": dict(self.params),
            **{k: getattr(self, k) for k in _OPTIONAL if getattr(self, k) is not None},
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "NSMDataset":
        return cls(
            domain=state["domain"],
            store=GraphStore.from_state_dict(state["store"]),
            feature_vocab=list(state["feature_vocab"]),
            num_relations=int(state["num_relations"]),
            relation_names=tuple(state["relation_names"]),
            num_classes=int(state["num_classes"]),
            params=dict(state["params"]),
            **{k: state[k] for k in _OPTIONAL if k in state},
        )


_OPTIONAL = ("groups", "test_only", "info")


def default_cache_dir() -> Path:
    """``$NSM_DATA_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/nsm/datasets``."""
    if os.environ.get("NSM_DATA_CACHE"):
        return Path(os.environ["NSM_DATA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nsm" / "datasets"


def _check_params(domain: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validated generation parameters: the domain's size fields plus an optional ``tier``.

    ``tier`` stays out of the result when it is ``standard``, so standard-tier cache keys and
    ``params`` look exactly as before the tier existed.
    """
    if domain not in DOMAINS:
        raise ValueError(f"load_dataset: unknown domain {domain!r}; expected one of {DOMAINS}")
    expected = set(DEFAULT_PARAMS[domain])
    sizes = {k: v for k, v in params.items() if k != "tier"}
    if set(sizes) != expected:
        raise ValueError(
            f"load_dataset: {domain} params must be exactly {sorted(expected)} (and optionally tier), "
            f"got {sorted(params)}"
        )
    clean: dict[str, Any] = {k: int(sizes[k]) for k in sorted(expected)}
    tier = str(params.get("tier", "standard"))
    if tier not in TIERS:
        raise ValueError(f"load_dataset: tier must be one of {TIERS}, got {tier!r}")
    if tier != "standard":
        clean["tier"] = tier
    return clean


def cache_key(domain: str, params: dict[str, Any], seed: int) -> str:
    """sha256 over every generation parameter, the seed and :data:`GENERATOR_VERSION`."""
    payload = {"domain": domain, "params": params, "seed": int(seed), "generator_version": GENERATOR_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(domain: str, params: dict[str, Any], seed: int, cache_dir: Path | None = None) -> Path:
    clean = _check_params(domain, params)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"{domain}-{cache_key(domain, clean, seed)[:32]}.pt"


def generate_dataset(domain: str, params: dict[str, Any], seed: int) -> NSMDataset:
    """Run the domain's generator (no cache)."""
    clean = _check_params(domain, params)
    gen = _GENERATORS[domain](**clean, seed=int(seed))
    return NSMDataset(
        domain=domain,
        store=gen.store,
        feature_vocab=list(gen.feature_vocab),
        num_relations=gen.num_relations,
        relation_names=tuple(gen.relation_names),
        num_classes=2,
        params={**clean, "seed": int(seed), "generator_version": GENERATOR_VERSION},
        groups=gen.groups,
        test_only=gen.test_only,
        info=gen.info,
    )


def load_dataset(domain: str, params: dict[str, Any], seed: int, cache_dir: Path | None = None) -> NSMDataset:
    """Load ``domain``'s dataset from the cache, generating and caching it on a miss.

    The file name is keyed by a sha256 of the domain, every size parameter, the seed and the
    generator version; the file is written atomically (temporary file + ``os.replace``) so
    concurrent workers never read a torn file.
    """
    path = cache_path(domain, params, seed, cache_dir)
    if path.exists():
        try:
            return NSMDataset.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:  # unreadable or foreign file: regenerate and overwrite it
            warnings.warn(f"load_dataset: ignoring unreadable cache file {path}: {exc}", stacklevel=2)
    dataset = generate_dataset(domain, params, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(dataset.state_dict(), fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dataset


def split_indices(
    y: Tensor,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    groups: Tensor | None = None,
    test_only: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Deterministic split into sorted ``(train, val, test)`` index tensors.

    Without ``groups``: stratified per class. With ``groups``: whole groups are assigned to one
    side (a matched pair's two graphs, or kg's pairs about one (rule, head)), so a test graph's
    pair-mate is never in training; pairs are balanced, so the classes stay balanced too.
    ``test_only`` (the deep tier's larger graphs) *is* the test split; the other graphs are split
    into train and validation, validation getting ``val_fraction`` of all graphs.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"split_indices: bad fractions val={val_fraction} test={test_fraction}")
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    labels = np.asarray(torch.as_tensor(y).cpu().numpy())
    if groups is None:
        if test_only is not None:
            raise ValueError("split_indices: test_only needs groups")
        parts: list[list[np.ndarray]] = [[], [], []]
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            idx = idx[rng.permutation(idx.size)]
            n_val = int(round(val_fraction * idx.size))
            n_test = int(round(test_fraction * idx.size))
            parts[1].append(idx[:n_val])
            parts[2].append(idx[n_val : n_val + n_test])
            parts[0].append(idx[n_val + n_test :])
        train, val, test = (torch.from_numpy(np.sort(np.concatenate(p))).long() for p in parts)
        return train, val, test
    return _group_split(labels.size, np.asarray(groups), val_fraction, test_fraction, rng, test_only)


def _group_split(
    n: int, groups: np.ndarray, val_fraction: float, test_fraction: float,
    rng: np.random.Generator, test_only: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    reserved = np.zeros(n, dtype=bool) if test_only is None else np.asarray(test_only, dtype=bool)
    if np.any(np.isin(groups[reserved], groups[~reserved])):
        raise ValueError("split_indices: a group has both test-only and other graphs")
    side = np.zeros(n, dtype=np.int64)  # 0 train, 1 val, 2 test
    side[reserved] = 2
    free = np.unique(groups[~reserved])
    free = free[rng.permutation(free.size)]
    size = np.bincount(groups[~reserved], minlength=int(groups.max()) + 1)[free]
    filled = np.cumsum(size) - size  # graphs placed before each group
    quota_test = 0 if test_only is not None else int(round(test_fraction * n))
    quota_val = int(round(val_fraction * n))
    to_side = np.where(filled < quota_test, 2, np.where(filled < quota_test + quota_val, 1, 0))
    lookup = np.zeros(int(groups.max()) + 1, dtype=np.int64)
    lookup[free] = to_side
    side[~reserved] = lookup[groups[~reserved]]
    return tuple(torch.from_numpy(np.flatnonzero(side == s)).long() for s in (0, 1, 2))  # type: ignore[return-value]


def split_dataset(
    dataset: "NSMDataset", val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`split_indices` with the dataset's own groups and test-only graphs (if any)."""
    groups = getattr(dataset, "groups", None)
    test_only = getattr(dataset, "test_only", None)
    return split_indices(dataset.store.y, val_fraction, test_fraction, seed, groups=groups, test_only=test_only)


class BatchedGraphDataset(torch.utils.data.Dataset):
    """Map-style dataset whose items are whole batches.

    Use with ``DataLoader(ds, sampler=BatchSampler(RandomSampler(ds), batch_size, False),
    batch_size=None)``: the sampler yields lists of positions into ``indices`` and each worker
    collates a whole batch with one vectorised :meth:`GraphStore.collate`.
    """

    def __init__(self, store: GraphStore, indices: Tensor | Sequence[int] | None = None) -> None:
        self.store = store
        self.indices = (
            torch.arange(len(store)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        )

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, positions: int | Sequence[int] | Tensor) -> GraphBatch:
        pos = torch.as_tensor(positions, dtype=torch.long).reshape(-1)
        return self.store.collate(self.indices[pos])
