"""``nsm baselines``: shortcut classifiers that ignore the graph's wiring, per domain.

majority class, size-only (node and edge counts) and bag-of-relations (relation counts plus
node-feature histograms), scored on the same stratified test split the trainer uses. All should
stay near 0.5: a high value means the dataset leaks its label.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DOMAIN_NAMES = ("planning", "causal", "kg")
COLUMNS = ("majority", "size_only", "bag_of_relations")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("baselines", help="shortcut-baseline accuracies per domain",
                              description=__doc__)
    p.add_argument("--domain", dest="domains", action="append", choices=DOMAIN_NAMES,
                   help="only this domain (repeatable; default: all three)")
    p.add_argument("--validation-sizes", action="store_true",
                   help="use the small nsm validate sizes instead of the production defaults")
    p.add_argument("--seed", type=int, default=42, help="seed of data generation and splits (default: %(default)s)")
    p.add_argument("--data-cache", type=Path, help="dataset cache directory")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from nsm.data import DEFAULT_PARAMS, VALIDATION_PARAMS, load_dataset, split_indices
    from nsm.data.baselines import run_baselines

    sizes = VALIDATION_PARAMS if args.validation_sizes else DEFAULT_PARAMS
    header = ("domain", "graphs", *COLUMNS, "time")
    lines = [header]
    for domain in args.domains or DOMAIN_NAMES:
        start = time.perf_counter()
        dataset = load_dataset(domain, dict(sizes[domain]), seed=args.seed, cache_dir=args.data_cache)
        train, _, test = split_indices(dataset.store.y, seed=args.seed)
        scores = run_baselines(dataset, train, test)
        lines.append((domain, str(len(dataset)), *(f"{scores[c]:.3f}" for c in COLUMNS),
                      f"{time.perf_counter() - start:.1f}s"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines))
    print("\ntest-split accuracy; 0.5 is chance on these balanced datasets")
    return 0
