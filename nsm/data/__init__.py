"""Synthetic reasoning datasets (planning, causal, kg) as packed typed graphs."""

from nsm.data.base import GENERATOR_VERSION, TIERS, GeneratedDataset
from nsm.data.causal import generate_causal
from nsm.data.dataset import (
    DEFAULT_PARAMS,
    DOMAINS,
    VALIDATION_PARAMS,
    BatchedGraphDataset,
    NSMDataset,
    cache_key,
    cache_path,
    default_cache_dir,
    generate_dataset,
    load_dataset,
    split_dataset,
    split_indices,
)
from nsm.data.graph import GraphBatch, GraphStore
from nsm.data.kg import generate_kg
from nsm.data.planning import generate_planning

__all__ = [
    "DEFAULT_PARAMS",
    "DOMAINS",
    "GENERATOR_VERSION",
    "TIERS",
    "VALIDATION_PARAMS",
    "BatchedGraphDataset",
    "GeneratedDataset",
    "GraphBatch",
    "GraphStore",
    "NSMDataset",
    "cache_key",
    "cache_path",
    "default_cache_dir",
    "generate_causal",
    "generate_dataset",
    "generate_kg",
    "generate_planning",
    "load_dataset",
    "split_dataset",
    "split_indices",
]
