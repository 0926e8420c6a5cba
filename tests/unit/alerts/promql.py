"""Metric names in a PromQL expression, for checking dashboards and alerts against the metrics the
project exports (no PromQL parser exists for Python; this lexes what the project's queries use:
selectors, label matchers, ranges, aggregations with by/without, vector matching with on/ignoring
and group_left/group_right, function calls, numbers and durations)."""

from __future__ import annotations

import re

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "atan2", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (``up``, ``nsm_training_epoch``, …)."""
    s = _STRING.sub('""', expr)
    s = _MATCHERS.sub(" ", s)
    s = _RANGE.sub(" ", s)
    s = _LABEL_LIST.sub(" ", s)
    names = set()
    for m in _IDENT.finditer(s):
        token, before = m.group(0), s[m.start() - 1] if m.start() else " "
        if before.isdigit() or before in ".$":  # 1e3, 30m, $var
            continue
        if s[m.end():].lstrip().startswith("("):  # a function call
            continue
        if token.lower() in KEYWORDS:
            continue
        names.add(token)
    return names


def known_metrics() -> set[str]:
    """Every series name the trainer and the operator export (counters with their _total,
    histograms with _bucket/_sum/_count), plus Prometheus' own ``up``."""
    from nsm.train.prometheus import GAUGES
    from nsm_operator import metrics

    names = set(GAUGES) | {"up"}
    for name in metrics.METRIC_NAMES:
        names.add(name)
        if name.endswith("_seconds"):  # the histograms
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


# Series of other exporters that the dashboard reads (NVIDIA DCGM exporter).
EXTERNAL_METRICS = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"}
