"""``nsm baselines``: what classifiers that do not reason get, per domain, on the trainer's test split.

Shortcuts that ignore the wiring: majority class, size-only (node and edge counts),
bag-of-relations (relation counts plus node-feature histograms). All should stay near 0.5: a high
value means the dataset leaks its label.

The typed-walk counter reads the wiring up to a fixed depth d: a logistic regression on the
counts of relation-typed directed walks between the role-marked nodes of length <= d. It is the
honest reference for a GNN: at the rule's depth (planning 4, causal 3, kg 2; marked ``*``) it
solves the standard tier, so a model scoring the same shows bounded-depth typed reachability and
nothing more. The deep tier (``--tier deep``) is built so that it cannot.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DOMAIN_NAMES = ("planning", "causal", "kg")
COLUMNS = ("majority", "size_only", "bag_of_relations")
WALK_DEPTHS = (1, 2, 3, 4)
# Hops the standard tier's rule needs: planning 2 moves = 4 hops, causal paths <= 3, kg 2-hop rules.
RULE_DEPTH = {"planning": 4, "causal": 3, "kg": 2}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("baselines", help="shortcut and typed-walk baseline accuracies per domain",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", dest="domains", action="append", choices=DOMAIN_NAMES,
                   help="only this domain (repeatable; default: all three)")
    p.add_argument("--tier", choices=("standard", "deep"), default="standard")
    p.add_argument("--validation-sizes", action="store_true",
                   help="use the small nsm validate sizes instead of the production defaults")
    p.add_argument("--seed", type=int, default=42, help="seed of data generation and splits (default: %(default)s)")
    p.add_argument("--data-cache", type=Path, help="dataset cache directory")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from nsm.data import DEFAULT_PARAMS, VALIDATION_PARAMS, load_dataset, split_dataset
    from nsm.data.baselines import run_baselines

    sizes = VALIDATION_PARAMS if args.validation_sizes else DEFAULT_PARAMS
    walks = tuple(f"walk_d{d}" for d in WALK_DEPTHS)
    header = ("domain", "graphs", *COLUMNS, *walks, "time")
    lines = [header]
    for domain in args.domains or DOMAIN_NAMES:
        start = time.perf_counter()
        params = {**sizes[domain], "tier": args.tier}
        dataset = load_dataset(domain, params, seed=args.seed, cache_dir=args.data_cache)
        train, _, test = split_dataset(dataset, seed=args.seed)
        scores = run_baselines(dataset, train, test, walk_depth=max(WALK_DEPTHS))
        walk_cells = tuple(f"{scores[f'typed_walk_d{d}']:.3f}" + ("*" if args.tier == "standard" and d == RULE_DEPTH[domain] else "")
                           for d in WALK_DEPTHS)
        lines.append((domain, str(len(dataset)), *(f"{scores[c]:.3f}" for c in COLUMNS), *walk_cells,
                      f"{time.perf_counter() - start:.1f}s"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines))
    print(f"\n{args.tier} tier; test-split accuracy (pair-grouped split); 0.5 is chance. walk_dN: "
          "logistic regression on typed-walk counts between the marked nodes up to N hops; "
          "* = the rule's depth")
    return 0
