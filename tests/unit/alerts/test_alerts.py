"""The alert rules (charts/nsm-operator/rules/nsm-alerts.yaml): promtool checks them and runs their
unit tests (nsm-alerts.test.yaml, every alert fires and stays quiet), they use only exported
metric names, and every runbook_url points at an existing section of docs/operations.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.unit.alerts.promql import known_metrics, metric_names

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
RULES = REPO / "charts" / "nsm-operator" / "rules" / "nsm-alerts.yaml"
UNIT_TESTS = HERE / "nsm-alerts.test.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
ALERTS = {"NSMClassCollapse", "NSMTrainingFailed", "NSMTrainingStalled", "NSMTrainingPendingTooLong",
          "NSMRetriesBurningFast", "NSMOperatorDown"}
RUNBOOK_BASE = "https://github.com/nsm-dev/nsm-operator/blob/main/docs/operations.md#"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: run `bash hack/test-deps.sh` (Debian package prometheus)", pytrace=False)
    return path


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_check_rules(promtool):
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


def test_promtool_unit_tests(promtool):
    proc = subprocess.run([promtool, "test", "rules", UNIT_TESTS.name], cwd=HERE,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_fires_and_stays_quiet_in_a_unit_test():
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fired == ALERTS, f"never expected to fire: {ALERTS - fired}"
    assert quiet == ALERTS, f"never expected to stay quiet: {ALERTS - quiet}"


def test_alerts_are_the_documented_set():
    rules = _rules()
    assert {r["alert"] for r in rules} == ALERTS
    for r in rules:
        assert r["labels"]["severity"] in {"warning", "critical"}, r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def _github_anchor(heading: str) -> str:
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def test_runbook_urls_point_at_operations_md_sections():
    anchors = {_github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", OPERATIONS.read_text(), re.M)}
    for r in _rules():
        url = r["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), url
        anchor = url.removeprefix(RUNBOOK_BASE)
        assert anchor == r["alert"].lower(), url
        assert anchor in anchors, f"docs/operations.md has no section #{anchor}"


def test_rules_use_only_exported_metrics():
    known = known_metrics()
    for r in _rules():
        names = metric_names(r["expr"])
        assert names, r["alert"]
        assert names <= known, f"{r['alert']} reads unknown metrics {names - known}"


def test_metric_name_lexer():
    expr = ('time() - max by (namespace, name) (nsm_operator_training_progress_timestamp_seconds{name=~"$training"}) '
            '> 1800 and on (namespace) rate(foo_total[$__rate_interval] offset 5m) * 1e3 '
            '* on (pod) group_left (training) bar{a="b{c}"}')
    assert metric_names(expr) == {"nsm_operator_training_progress_timestamp_seconds", "foo_total", "bar"}
    assert metric_names('absent(up{job=~".*nsm-operator.*"} == 1)') == {"up"}


def test_operations_md_documents_every_metric_and_alert():
    text = OPERATIONS.read_text()
    for name in known_metrics() - {"up"}:
        if name.endswith(("_bucket", "_sum", "_count")):
            continue
        assert f"`{name}`" in text, f"docs/operations.md does not document {name}"
    for alert in ALERTS:
        assert f"### {alert}" in text
