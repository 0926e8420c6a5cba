"""Learnability check of the synthetic datasets: a plain R-GCN next to the shortcut baselines.

Trains a small R-GCN (embedding of each categorical node-feature column, summed; ``--layers``
``RGCNConv`` layers; global mean + max pooling; MLP head) on each domain and prints validation
balanced accuracy beside the baselines of :mod:`nsm.data.baselines`. A dataset is useful when the
R-GCN is far above the baselines and the baselines stay near 0.5.

    python bench/learnability.py                    # VALIDATION_PARAMS, 10 epochs
    python bench/learnability.py --sizes default    # production sizes
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler
from torch_geometric.nn import RGCNConv, global_max_pool, global_mean_pool

from nsm.data import DEFAULT_PARAMS, DOMAINS, VALIDATION_PARAMS, BatchedGraphDataset, GraphBatch, generate_dataset, split_indices
from nsm.data.baselines import run_baselines


class RGCNClassifier(nn.Module):
    def __init__(self, feature_vocab: list[int], num_relations: int, hidden: int, layers: int, num_bases: int) -> None:
        super().__init__()
        self.embeds = nn.ModuleList(nn.Embedding(v, hidden) for v in feature_vocab)
        self.convs = nn.ModuleList(
            RGCNConv(hidden, hidden, num_relations, num_bases=min(num_bases, num_relations)) for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, b: GraphBatch) -> torch.Tensor:
        h = sum(emb(b.x[:, i]) for i, emb in enumerate(self.embeds))
        for conv, norm in zip(self.convs, self.norms):
            h = h + torch.relu(norm(conv(h, b.edge_index, b.edge_type)))
        pooled = torch.cat([global_mean_pool(h, b.batch, b.num_graphs), global_max_pool(h, b.batch, b.num_graphs)], 1)
        return self.head(pooled)


def balanced_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    recalls = [float((pred[y == c] == c).float().mean()) for c in y.unique()]
    return sum(recalls) / len(recalls)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    preds, ys = [], []
    for b in loader:
        preds.append(model(b).argmax(1))
        ys.append(b.y)
    return balanced_accuracy(torch.cat(preds), torch.cat(ys))


def run_domain(domain: str, params: dict, args: argparse.Namespace) -> dict[str, float]:
    t0 = time.perf_counter()
    ds = generate_dataset(domain, params, args.seed)
    gen_s = time.perf_counter() - t0
    train, val, test = split_indices(ds.store.y, seed=args.seed)
    base = run_baselines(ds, train, val)
    torch.manual_seed(args.seed)
    model = RGCNClassifier(ds.feature_vocab, ds.num_relations, args.hidden, args.layers, args.num_bases)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    tr_ds, va_ds = BatchedGraphDataset(ds.store, train), BatchedGraphDataset(ds.store, val)
    gen = torch.Generator().manual_seed(args.seed)
    tr_loader = DataLoader(tr_ds, sampler=BatchSampler(RandomSampler(tr_ds, generator=gen), args.batch_size, False), batch_size=None)
    va_loader = DataLoader(va_ds, sampler=BatchSampler(SequentialSampler(va_ds), 256, False), batch_size=None)
    t1 = time.perf_counter()
    best = 0.0
    for epoch in range(args.epochs):
        model.train()
        for b in tr_loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(b), b.y)
            loss.backward()
            opt.step()
        acc = evaluate(model, va_loader)
        best = max(best, acc)
        if args.verbose:
            print(f"  {domain} epoch {epoch + 1}: loss {loss.item():.3f} val_bal_acc {acc:.3f}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "graphs": len(ds),
        "gen_s": gen_s,
        "train_s": time.perf_counter() - t1,
        "params": n_params,
        "rgcn_val_bal_acc": acc,
        "rgcn_best": best,
        **{k: base[k] for k in ("majority", "size_only", "bag_of_relations", "marked_degree")},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", choices=["validation", "default"], default="validation")
    p.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--num-bases", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (1 is fastest on a shared 2-core box)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sizes = VALIDATION_PARAMS if args.sizes == "validation" else DEFAULT_PARAMS
    print(f"{'domain':9} {'graphs':>6} {'gen_s':>6} {'train_s':>7} {'rgcn_val':>8} {'best':>6} {'majority':>8} {'size':>6} {'bag':>6} {'marked':>6}")
    for domain in args.domains:
        r = run_domain(domain, sizes[domain], args)
        print(
            f"{domain:9} {r['graphs']:6d} {r['gen_s']:6.2f} {r['train_s']:7.1f} {r['rgcn_val_bal_acc']:8.3f} "
            f"{r['rgcn_best']:6.3f} {r['majority']:8.3f} {r['size_only']:6.3f} {r['bag_of_relations']:6.3f} "
            f"{r['marked_degree']:6.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
