"""A tiny stand-in for ``nsm.model.NSMModel`` and a synthetic dataset, for trainer tests.

The trainer only relies on the model contract (``out.logits``, ``out.cycle_loss``,
``out.cycle_loss_l1``, ``out.cycle_loss_l2``, ``.config.to_dict()``), so its tests need not
depend on the real model's speed or on the data generators.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

import torch
from torch import nn

from nsm.data.graph import GraphStore


@dataclass
class TinyConfig:
    feature_vocab: list[int] = field(default_factory=lambda: [4])
    num_relations: int = 2
    num_classes: int = 2
    hidden_dim: int = 16
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class TinyModel(nn.Module):
    """Embed, two rounds of relation-typed sum aggregation, mean-pool, classify."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        h = config.hidden_dim
        self.embed = nn.ModuleList(nn.Embedding(v, h) for v in config.feature_vocab)
        self.rel = nn.Parameter(torch.randn(config.num_relations, h, h) * 0.1)
        self.self_loop = nn.Linear(h, h)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(h, config.num_classes)
        self.decode = nn.Linear(h, h)

    def forward(self, batch):
        x = sum(emb(batch.x[:, i]) for i, emb in enumerate(self.embed))
        x0 = x
        for _ in range(2):
            src, dst = batch.edge_index
            msg = torch.bmm(x[src].unsqueeze(1), self.rel[batch.edge_type]).squeeze(1)
            agg = msg.new_zeros(x.shape).index_add_(0, dst, msg)
            x = self.dropout(torch.relu(self.self_loop(x) + agg))
        pooled = torch.zeros(batch.num_graphs, x.size(1), dtype=x.dtype, device=x.device)
        pooled = pooled.index_add_(0, batch.batch, x)
        counts = torch.bincount(batch.batch, minlength=batch.num_graphs).clamp(min=1).unsqueeze(1)
        logits = self.head(pooled / counts)
        l1 = ((self.decode(x) - x0.detach()) ** 2).mean()
        l2 = l1 * 0.5
        return SimpleNamespace(logits=logits, cycle_loss=0.7 * l1 + 0.3 * l2, cycle_loss_l1=l1, cycle_loss_l2=l2)


def tiny_model_factory(dataset, spec) -> TinyModel:
    return TinyModel(TinyConfig(list(dataset.feature_vocab), dataset.num_relations, dataset.num_classes,
                                hidden_dim=16, dropout=spec.model.dropout))


def synthetic_dataset(num_graphs: int = 120, seed: int = 0) -> SimpleNamespace:
    """Chains (label 1) vs. stars (label 0) of 4–8 nodes: learnable in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    graphs, labels = [], []
    for i in range(num_graphs):
        n = int(torch.randint(4, 9, (1,), generator=g))
        label = i % 2
        if label:
            src, dst = torch.arange(n - 1), torch.arange(1, n)
        else:
            src, dst = torch.zeros(n - 1, dtype=torch.long), torch.arange(1, n)
        x = torch.randint(0, 4, (n, 1), generator=g)
        et = torch.randint(0, 2, (n - 1,), generator=g)
        graphs.append((x, torch.stack([src, dst]), et))
        labels.append(label)
    store = GraphStore.from_graphs(graphs, labels)
    return SimpleNamespace(store=store, feature_vocab=[4], num_relations=2, num_classes=2,
                           domain="causal", params={"num_graphs": num_graphs})
