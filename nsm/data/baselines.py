"""Shortcut baselines: what a classifier gets *without* reading the graph's wiring.

If any of these is far above chance the dataset leaks its label through size or through the bag
of relations / node features, and a GNN's accuracy means nothing. All are written with
torch/numpy (full-batch logistic regression with LBFGS; an exhaustive depth-2 decision tree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import Tensor

from nsm.data.graph import GraphStore

# Every domain keeps its role marker (start/goal, treatment/outcome, head/tail) in column 1.
ROLE_COLUMN = 1

if TYPE_CHECKING:  # avoid an import cycle at runtime
    from nsm.data.dataset import NSMDataset


def size_features(store: GraphStore) -> Tensor:
    """``[G, 2]`` float: node count and edge count of each graph."""
    return torch.stack([store.num_nodes(), store.num_edges()], dim=1).double()


def bag_features(store: GraphStore, num_relations: int, feature_vocab: Sequence[int]) -> Tensor:
    """``[G, num_relations + sum(feature_vocab)]``: per-relation edge counts and node-feature histograms."""
    g = len(store)
    edge_graph = torch.repeat_interleave(torch.arange(g), store.num_edges())
    rel = torch.zeros(g, num_relations, dtype=torch.float64)
    ones = torch.ones(edge_graph.numel(), dtype=torch.float64)
    rel.index_put_((edge_graph, store.edge_type), ones, accumulate=True)
    node_graph = torch.repeat_interleave(torch.arange(g), store.num_nodes())
    offsets = torch.tensor([0, *np.cumsum(feature_vocab)[:-1].tolist()], dtype=torch.long)
    hist = torch.zeros(g, int(sum(feature_vocab)), dtype=torch.float64)
    cols = store.x + offsets  # [N, F] global histogram bins
    hist.index_put_(
        (node_graph.repeat_interleave(cols.size(1)), cols.reshape(-1)),
        torch.ones(cols.numel(), dtype=torch.float64),
        accumulate=True,
    )
    return torch.cat([rel, hist], dim=1)


def marked_degree_features(
    store: GraphStore, num_relations: int, num_roles: int, role_column: int = 1
) -> Tensor:
    """``[G, (num_roles - 1) * 2 * num_relations]``: in/out degree per relation of the marked nodes.

    Summed over the nodes of each role ``1..num_roles-1`` (start/goal, treatment/outcome,
    head/tail). A dataset whose label follows from how many edges of which type touch the special
    nodes, rather than from where the edges lead, fails this baseline.
    """
    g = len(store)
    node_graph = torch.repeat_interleave(torch.arange(g), store.num_nodes())
    shift = torch.repeat_interleave(store.node_ptr[:-1], store.num_edges())
    role = store.x[:, role_column]
    out = torch.zeros(g, num_roles, 2, num_relations, dtype=torch.float64)
    for direction in (0, 1):
        node = store.edge_index[direction] + shift  # global node of the edge's source / target
        ones = torch.ones(node.numel(), dtype=torch.float64)
        where = (node_graph[node], role[node], torch.full_like(node, direction), store.edge_type)
        out.index_put_(where, ones, accumulate=True)
    return out[:, 1:].reshape(g, -1)


def typed_walk_features(
    store: GraphStore, num_relations: int, depth: int, role_column: int = ROLE_COLUMN
) -> tuple[Tensor, list[tuple[int, ...]]]:
    """Counts of relation-typed walks of length ``1..depth`` from the role-1 to the role-2 nodes.

    A step follows one edge of relation ``r`` either forwards (step id ``r``) or backwards (step
    id ``num_relations + r``), so ``colleague_of``'s ``h -works_for-> y <-works_for- t`` is the
    walk ``(works_for, ~works_for)``. Walks are propagated for all graphs at once (one
    ``index_add`` per step on the block-diagonal adjacency); a prefix that reaches no node in any
    graph is not extended. Returns ``([G, M] float64 counts, the M step sequences)``, keeping
    only sequences that end on a role-2 node in at least one graph.
    """
    g = len(store)
    node_graph = torch.repeat_interleave(torch.arange(g), store.num_nodes())
    shift = torch.repeat_interleave(store.node_ptr[:-1], store.num_edges())
    src, dst = store.edge_index[0] + shift, store.edge_index[1] + shift
    role = store.x[:, role_column]
    steps = []
    for r in range(num_relations):
        keep = store.edge_type == r
        steps.append((src[keep], dst[keep]))
    steps += [(d, s) for s, d in steps]  # backwards steps
    end = (role == 2).double()
    frontier: list[tuple[tuple[int, ...], Tensor]] = [((), (role == 1).double())]
    columns: list[Tensor] = []
    names: list[tuple[int, ...]] = []
    for _ in range(depth):
        grown = []
        for seq, vec in frontier:
            for k, (a, b) in enumerate(steps):
                out = torch.zeros_like(vec).index_add_(0, b, vec[a])
                if not bool(out.any()):
                    continue
                grown.append((seq + (k,), out))
                count = torch.zeros(g, dtype=torch.float64).index_add_(0, node_graph, out * end)
                if bool(count.any()):
                    columns.append(count)
                    names.append(seq + (k,))
        frontier = grown
    feats = torch.stack(columns, 1) if columns else torch.zeros(g, 0, dtype=torch.float64)
    return feats, names


def typed_walk_accuracies(
    store: GraphStore, num_relations: int, train_idx: Tensor, test_idx: Tensor, max_depth: int = 4
) -> dict[int, float]:
    """Test accuracy of a logistic regression on log(1 + typed-walk counts), per depth ``1..max_depth``.

    The strongest "no reasoning beyond depth d" reader: it sees every typed path between the
    marked nodes up to length d. It solves a task whose label is bounded-depth typed
    reachability at that depth, so a GNN scoring like it shows nothing beyond that.
    """
    feats, names = typed_walk_features(store, num_relations, max_depth)
    lengths = torch.tensor([len(n) for n in names], dtype=torch.long)
    y = store.y
    out = {}
    for d in range(1, max_depth + 1):
        x = torch.log1p(feats[:, lengths <= d])
        if x.size(1) == 0:
            x = torch.zeros(len(store), 1, dtype=torch.float64)
        out[d] = logistic_regression_accuracy(x[train_idx], y[train_idx], x[test_idx], y[test_idx])
    return out


def logistic_regression_accuracy(
    x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, l2: float = 1e-3, max_iter: int = 100
) -> float:
    """Fit a (multinomial) logistic regression with LBFGS on standardised features; test accuracy."""
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    xtr, xte = (x_train - mean) / std, (x_test - mean) / std
    k = int(max(int(y_train.max()), int(y_test.max())) + 1)
    w = torch.zeros(xtr.size(1), k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, max_eval=max_iter * 2, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, y_train) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ w + b).argmax(1) == y_test).double().mean())


def _best_stump(x: np.ndarray, y: np.ndarray) -> tuple[int, float, int, int, int]:
    """Best single-threshold split ``x[:, f] <= t`` by training accuracy: (correct, t, f, left, right)."""
    best = (int(max(np.sum(y == 0), np.sum(y == 1))), np.inf, 0, int(np.mean(y) > 0.5), int(np.mean(y) > 0.5))
    for f in range(x.shape[1]):
        order = np.argsort(x[:, f], kind="stable")
        xs, ys = x[order, f], y[order]
        pos_left = np.cumsum(ys)
        n_left = np.arange(1, len(ys) + 1)
        pos_total = int(ys.sum())
        # Valid cut positions: after the last occurrence of each distinct value.
        cut = np.flatnonzero(np.r_[xs[1:] != xs[:-1], True])
        pl, nl = pos_left[cut], n_left[cut]
        pr, nr = pos_total - pl, len(ys) - nl
        correct = np.maximum(pl, nl - pl) + np.maximum(pr, nr - pr)
        i = int(np.argmax(correct))
        if correct[i] > best[0]:
            best = (int(correct[i]), float(xs[cut[i]]), f, int(pl[i] * 2 > nl[i]), int(pr[i] * 2 > nr[i]))
    return best


def tree_accuracy(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor) -> float:
    """An exhaustive depth-2 decision tree: every root split, then the best stump in each child.

    (Greedy growth would miss concepts such as ``lo < size <= hi`` whose root split alone gains
    nothing.) Returns the test accuracy of the tree with the best training accuracy.
    """
    xtr, ytr = x_train.numpy(), y_train.numpy()
    xte, yte = x_test.numpy(), y_test.numpy()
    best: tuple[int, int, float, tuple, tuple] | None = None
    for f in range(xtr.shape[1]):
        for t in np.unique(xtr[:, f]):
            left = xtr[:, f] <= t
            children = []
            correct = 0
            for side in (left, ~left):
                if side.sum() == 0:
                    children.append((np.inf, 0, int(ytr.mean() > 0.5), int(ytr.mean() > 0.5)))
                    continue
                c, t2, f2, lo, hi = _best_stump(xtr[side], ytr[side])
                correct += c
                children.append((t2, f2, lo, hi))
            if best is None or correct > best[0]:
                best = (correct, f, float(t), children[0], children[1])
    assert best is not None
    _, f, t, left_child, right_child = best
    go_left = xte[:, f] <= t
    pred = np.empty(len(yte), dtype=np.int64)
    for side, (t2, f2, lo, hi) in ((go_left, left_child), (~go_left, right_child)):
        pred[side] = np.where(xte[side, f2] <= t2, lo, hi)
    return float(np.mean(pred == yte))


def run_baselines(
    dataset: "NSMDataset", train_idx: Tensor, test_idx: Tensor, walk_depth: int = 0
) -> dict[str, float]:
    """Test accuracies of the shortcut classifiers (all should stay near 0.5), and the typed-walk counter.

    With ``walk_depth > 0`` it also returns ``typed_walk_d1 .. typed_walk_d{walk_depth}``
    (:func:`typed_walk_accuracies`), which is *not* a shortcut: it reads the wiring up to depth d.

    Returns:
        ``majority``; ``size_logreg`` and ``size_tree`` on ``[num_nodes, num_edges]`` and
        ``size_only`` = the better of the two; ``bag_of_relations`` (logistic regression on
        per-relation edge counts plus node-feature histograms); ``marked_degree`` (logistic
        regression on the per-relation in/out degrees of the role-marked nodes).
    """
    store = dataset.store
    tr, te = torch.as_tensor(train_idx, dtype=torch.long), torch.as_tensor(test_idx, dtype=torch.long)
    y = store.y
    majority = int(torch.bincount(y[tr], minlength=2).argmax())
    out = {"majority": float((y[te] == majority).double().mean())}
    size = size_features(store)
    out["size_logreg"] = logistic_regression_accuracy(size[tr], y[tr], size[te], y[te])
    out["size_tree"] = tree_accuracy(size[tr], y[tr], size[te], y[te])
    out["size_only"] = max(out["size_logreg"], out["size_tree"])
    bag = bag_features(store, dataset.num_relations, dataset.feature_vocab)
    out["bag_of_relations"] = logistic_regression_accuracy(bag[tr], y[tr], bag[te], y[te])
    if len(dataset.feature_vocab) > ROLE_COLUMN:  # datasets without a role column skip it
        deg = marked_degree_features(store, dataset.num_relations, dataset.feature_vocab[ROLE_COLUMN])
        out["marked_degree"] = logistic_regression_accuracy(deg[tr], y[tr], deg[te], y[te])
        if walk_depth > 0:
            walks = typed_walk_accuracies(store, dataset.num_relations, tr, te, walk_depth)
            out.update({f"typed_walk_d{d}": acc for d, acc in walks.items()})
    return out
