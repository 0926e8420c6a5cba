"""The NSM model: R-GCN levels, WHY pooling, WHAT unpooling, cycle losses and a classifier."""

from nsm.model.nsm import NSMConfig, NSMModel, NSMOutput
from nsm.model.pool import PoolOutput, WhyPool, topk_per_graph
from nsm.model.readout import MeanMaxReadout, segment_max
from nsm.model.rgcn import EdgePlan, RGCNLayer, build_edge_plan
from nsm.model.unpool import WhatUnpool, cycle_loss

__all__ = [
    "EdgePlan",
    "MeanMaxReadout",
    "NSMConfig",
    "NSMModel",
    "NSMOutput",
    "PoolOutput",
    "RGCNLayer",
    "WhatUnpool",
    "WhyPool",
    "build_edge_plan",
    "cycle_loss",
    "segment_max",
    "topk_per_graph",
]
