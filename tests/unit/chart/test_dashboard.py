"""Shape of the Grafana dashboard (charts/nsm-operator/dashboards/nsm-training.json): valid for its
declared schemaVersion, every panel queryable, template variables defined and used, the docs copy
identical. Its PromQL is evaluated against a real Prometheus in tests/e2e/prometheus/."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from tests.unit.chart.chart_fixtures import CHART, REPO

DASHBOARD = CHART / "dashboards" / "nsm-training.json"
DOCS_COPY = REPO / "docs" / "grafana" / "nsm-training.json"
VARIABLES = {"datasource", "namespace", "training"}
GRID_WIDTH = 24


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows nest their panels
    return out


def _queries(dashboard: dict) -> list[dict]:
    return [p for p in _panels(dashboard) if p["type"] != "row"]


def test_docs_copy_is_identical():
    assert DOCS_COPY.read_bytes() == DASHBOARD.read_bytes(), (
        "docs/grafana/nsm-training.json differs from the chart's dashboard; copy it over"
    )


def test_top_level(dashboard):
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] == "nsm-training" and dashboard["title"]
    assert isinstance(dashboard["panels"], list) and dashboard["panels"]
    assert "__inputs" not in dashboard  # provisioned by the sidecar, not imported by hand
    assert dashboard["time"]["from"].startswith("now-")


def test_panel_ids_unique(dashboard):
    ids = Counter(p["id"] for p in _panels(dashboard))
    assert all(isinstance(i, int) for i in ids)
    assert not [i for i, n in ids.items() if n > 1], f"duplicate panel ids: {ids}"


def test_every_panel_is_complete(dashboard):
    for p in _panels(dashboard):
        where = f"panel {p.get('id')} {p.get('title')!r}"
        assert p.get("type") and p.get("title"), where
        gp = p["gridPos"]
        assert set(gp) == {"h", "w", "x", "y"}, where
        assert gp["w"] >= 1 and gp["h"] >= 1 and gp["x"] + gp["w"] <= GRID_WIDTH, where
        if p["type"] == "row":
            assert gp["w"] == GRID_WIDTH and "targets" not in p, where
            continue
        assert p["type"] in {"timeseries", "stat", "table", "bargauge", "gauge"}, where
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert p.get("description"), where
        assert p["targets"], where
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), where
        for t in p["targets"]:
            assert t["refId"] and t["expr"].strip(), where
            assert t.get("datasource", p["datasource"]) == p["datasource"], where


def test_panels_do_not_overlap(dashboard):
    taken: set[tuple[int, int]] = set()
    for p in _panels(dashboard):
        gp = p["gridPos"]
        cells = {(x, y) for x in range(gp["x"], gp["x"] + gp["w"]) for y in range(gp["y"], gp["y"] + gp["h"])}
        assert not cells & taken, f"panel {p['id']} {p['title']!r} overlaps another"
        taken |= cells


def test_template_variables_defined_and_used(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == VARIABLES
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "training"):
        v = variables[name]
        assert v["type"] == "query" and v["datasource"]["uid"] == "${datasource}"
        assert v["query"]["query"].startswith("label_values(") and v["definition"] == v["query"]["query"]
        assert v["includeAll"] and v["multi"] and v["allValue"] == ".*"
    assert "$namespace" in variables["training"]["query"]["query"]  # training follows namespace
    exprs = "\n".join(t["expr"] for p in _queries(dashboard) for t in p["targets"])
    for name in ("namespace", "training"):
        assert f"${name}" in exprs, f"${name} is never used"
        # Multi-value variables must be matched with a regex matcher.
        assert not re.search(rf'[^=!]=\s*"\${name}"', exprs), f"${name} used with = instead of =~"
    used = re.findall(r"\$\{?(\w+)", exprs + json.dumps(dashboard["panels"]))
    # `$1` is label_replace's capture group; Grafana leaves references to no variable untouched.
    backrefs = {u for u in used if u.isdigit()}
    unknown = set(used) - VARIABLES - {"__rate_interval", "__interval", "__range"} - backrefs
    assert not unknown, f"undefined variables: {unknown}"


def test_required_views_are_present(dashboard):
    exprs = "\n".join(t["expr"] for p in _queries(dashboard) for t in p["targets"])
    for needle in ("nsm_operator_training_phase", "nsm_training_epoch", "nsm_training_train_loss", "nsm_training_val_loss",
                   "nsm_training_val_accuracy", "nsm_training_class_accuracy", "nsm_training_class_collapse",
                   "nsm_training_samples_per_second", "nsm_operator_training_attempts", "nsm_operator_retries_total",
                   "nsm_training_checkpoint_age_seconds", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED",
                   "nsm_operator_training_cost_usd"):
        assert needle in exprs, f"no panel queries {needle}"


def test_class_collapse_is_highlighted(dashboard):
    (panel,) = [p for p in _queries(dashboard) if "nsm_training_class_accuracy" in p["targets"][0]["expr"]]
    defaults = panel["fieldConfig"]["defaults"]
    steps = defaults["thresholds"]["steps"]
    assert steps[0]["color"] == "red" and steps[1]["value"] == 0.05
    assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"
    (override,) = panel["fieldConfig"]["overrides"]
    assert override["matcher"]["id"] == "byValue"
    assert override["matcher"]["options"]["value"] == 0.05
    assert {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}} in override["properties"]


def test_queries_use_only_exported_metrics(dashboard):
    """Every metric name a query reads is exported by the trainer or the operator, or is one of the
    listed external series (DCGM exporter). tests/e2e/prometheus checks the same against a live
    scrape."""
    from tests.unit.alerts.promql import EXTERNAL_METRICS, known_metrics, metric_names

    allowed = known_metrics() | EXTERNAL_METRICS
    queries = [t["expr"] for p in _queries(dashboard) for t in p["targets"]]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    for expr in queries:
        if expr.startswith("label_values("):
            expr = expr[len("label_values("):].rsplit(",", 1)[0]
        names = metric_names(expr)
        assert names, expr
        assert names <= allowed, f"unknown metrics {names - allowed} in {expr!r}"


def test_trainings_by_phase_follows_the_namespace_variable(dashboard):
    (panel,) = [p for p in _queries(dashboard) if p["title"] == "Trainings by phase"]
    (target,) = panel["targets"]
    assert target["expr"] == 'sum by (phase) (nsm_operator_training_phase{namespace=~"$namespace"})'
