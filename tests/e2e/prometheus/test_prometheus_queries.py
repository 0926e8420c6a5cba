"""Every PromQL expression of the Grafana dashboard and of the alerts, evaluated by a real
Prometheus (the Debian `prometheus` binary) that scrapes, every second:

- a real `nsm train` run (small causal model on CPU) serving the trainer metrics, which also
  reports its progress to an NSMTraining in the local control plane (as a trainer pod would);
- the real operator process reconciling that NSMTraining (kwok keeps its pod Running) and
  serving the operator metrics.

The scrape configs mimic the chart's monitors: the trainer target gets the `namespace`/`pod`
labels a PodMonitor adds, and the operator job keeps its own `namespace` labels (honorLabels,
like the ServiceMonitor). Queries must be valid and return data, except the ones listed in
MAY_BE_EMPTY with the reason their series cannot exist here. No query may read a metric the
project does not export (DCGM series excepted).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.cluster.waiting import wait_crd_established
from tests.e2e.chart.operator_process import OperatorProcess, free_port, static_volume
from tests.unit.alerts.promql import EXTERNAL_METRICS, metric_names

pytestmark = [pytest.mark.prometheus, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "charts" / "nsm-operator" / "dashboards" / "nsm-training.json"
RULES = REPO / "charts" / "nsm-operator" / "rules" / "nsm-alerts.yaml"
CRD = REPO / "charts" / "nsm-operator" / "crd" / "nsm.dev_nsmtrainings.yaml"
TRAINING = "prom-causal"
RATE_INTERVAL = "30s"

# Panel title -> why its query may return an empty vector in this test.
MAY_BE_EMPTY = {
    "GPU utilisation": "DCGM_FI_DEV_GPU_UTIL: no NVIDIA DCGM exporter (and no GPU) here",
    "GPU memory used": "DCGM_FI_DEV_FB_USED: no NVIDIA DCGM exporter (and no GPU) here",
    "Retries and failures (1h)": "nsm_operator_{retries,failures}_total have series only after a retry/failure; "
                                 "the training here succeeds on its first attempt",
    "Reconcile errors (1h)": "nsm_operator_reconcile_errors_total has series only after a handler error",
    "Reconcile errors": "nsm_operator_reconcile_errors_total has series only after a handler error",
}


def _get(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class Prometheus:
    def __init__(self, base: str):
        self.base = base

    def query(self, expr: str) -> list[dict]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = _get(url)
        except urllib.error.HTTPError as exc:  # 400 bad_data: the expression does not parse
            raise AssertionError(f"{expr!r}: {exc.read().decode()}") from None
        assert body["status"] == "success", body
        assert body["data"]["resultType"] in ("vector", "scalar"), body
        return body["data"]["result"] if body["data"]["resultType"] == "vector" else [body["data"]["result"]]

    def label_values(self, label: str, match: str) -> list[str]:
        return _get(f"{self.base}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": match}))["data"]

    def names(self) -> set[str]:
        return set(_get(f"{self.base}/api/v1/label/__name__/values")["data"])


def _wait(predicate, timeout: float, what: str, logs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}:\n{Path(p).read_text()[-3000:]}" for p in logs if Path(p).exists())
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # a session of our own: only what we started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if not path:
        pytest.fail("prometheus not found: run `bash hack/test-deps.sh` (Debian package prometheus)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def stack(cluster, core_v1, custom_objects, prometheus_binary, tmp_path_factory):
    """Operator + NSMTraining + `nsm train` + Prometheus; yields (Prometheus, namespace)."""
    work = tmp_path_factory.mktemp("prom")
    ns = f"prom-{uuid.uuid4().hex[:6]}"
    core_v1.create_namespace({"metadata": {"name": ns, "labels": {"nsm.dev/e2e": "true"}}})
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD), check=True)
    wait_crd_established(cluster, "nsmtrainings.nsm.dev")
    pv = static_volume(cluster, ns, f"{TRAINING}-checkpoints")
    procs: list[subprocess.Popen] = []
    op = OperatorProcess(kubeconfig=Path(cluster.kubeconfig), namespaces=[ns], log_path=work / "operator.log")
    try:
        op.start()
        custom_objects.create_namespaced_custom_object("nsm.dev", "v1alpha1", ns, "nsmtrainings", {
            "apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
            # kwok keeps the (fake) trainer pod Running; the real trainer runs below, on this machine.
            "metadata": {"name": TRAINING, "annotations": {"kwok.nsm.dev/run-seconds": "30m"}},
            "spec": {"domain": "causal", "epochs": 300, "dataset": {"numScenarios": 100},
                     "resources": {"gpu": {"count": 1, "product": "A100-40GB"}, "cpu": "1", "memory": "1Gi"},
                     "checkpoint": {"everyEpochs": 1, "storage": {"size": "1Gi", "retain": False}}},
        })

        def running():
            obj = custom_objects.get_namespaced_custom_object("nsm.dev", "v1alpha1", ns, "nsmtrainings", TRAINING)
            return (obj.get("status") or {}).get("phase") == "Running"

        _wait(running, 90, "the NSMTraining to be Running", logs=[op.log_path])

        trainer_port = free_port()
        env = {**os.environ, "NSM_TRAINING_NAME": TRAINING, "NSM_TRAINING_NAMESPACE": ns, "NSM_ATTEMPT": "1",
               "KUBECONFIG": str(cluster.kubeconfig), "PYTHONUNBUFFERED": "1"}
        nsm = Path(sys.executable).parent / "nsm"
        trainer_log = work / "trainer.log"
        procs.append(subprocess.Popen(
            [str(nsm), "train", "--domain", "causal", "--epochs", "300", "--set", "dataset.numScenarios=100",
             "--set", "dataLoader.numWorkers=0", "--set", "checkpoint.everyEpochs=1",
             "--set", "earlyStopping.patience=300", "--output-dir", str(work / "run"),
             "--metrics-port", str(trainer_port), "--no-report", "-q"],
            stdout=open(trainer_log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True))  # noqa: SIM115

        prom_port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "nsm-trainer",
                 "static_configs": [{"targets": [f"127.0.0.1:{trainer_port}"],
                                     "labels": {"namespace": ns, "pod": f"{TRAINING}-a1-local", "container": "trainer"}}]},
                {"job_name": "nsm-operator", "honor_labels": True,
                 "static_configs": [{"targets": [f"127.0.0.1:{op.metrics_port}"]}]},
            ],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        prom_log = work / "prometheus.log"
        procs.append(subprocess.Popen(
            [prometheus_binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=open(prom_log, "w"), stderr=subprocess.STDOUT, start_new_session=True))  # noqa: SIM115
        prom = Prometheus(f"http://127.0.0.1:{prom_port}")
        logs = [op.log_path, trainer_log, prom_log]

        def ready():
            try:
                return (prom.query(f'nsm_training_epoch{{training="{TRAINING}"}} >= 3')
                        and prom.query(f'nsm_operator_training_epoch{{name="{TRAINING}"}} >= 2')
                        and prom.query("nsm_training_last_checkpoint_timestamp_seconds"))
            except (OSError, AssertionError):
                return False

        _wait(ready, 240, "three epochs scraped from the trainer and two reported through the operator", logs=logs)
        time.sleep(3)  # a few more scrapes, so rate()/increase() windows hold two samples
        yield prom, ns
    finally:
        for p in reversed(procs):
            _stop(p)
        op.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        cluster.kubectl("delete", "pv", pv, "--ignore-not-found", "--wait=false")


def _substitute(expr: str, ns: str) -> str:
    for var, value in (("$__rate_interval", RATE_INTERVAL), ("$namespace", ns), ("$training", TRAINING)):
        expr = expr.replace(var, value)
    # Every Grafana variable is substituted; `$1` is label_replace's capture group, not a variable.
    assert not re.search(r"\$\{?[A-Za-z_]", expr), expr
    return expr


def _dashboard_queries() -> list[tuple[str, str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            out.append((panel["title"], t["refId"], t["expr"]))
    return out


def test_prometheus_version(prometheus_binary):
    proc = subprocess.run([prometheus_binary, "--version"], capture_output=True, text=True, timeout=30)
    version = (proc.stdout + proc.stderr).split("\n")[0]
    print(version)
    assert version.startswith("prometheus, version 2.") or version.startswith("prometheus, version 3.")


def test_every_dashboard_query_returns_data(stack):
    prom, ns = stack
    empty, failures = [], []
    for title, ref, expr in _dashboard_queries():
        result = prom.query(_substitute(expr, ns))
        if not result:
            (empty if title in MAY_BE_EMPTY else failures).append(f"{title} [{ref}]: {expr}")
    print("empty (allowed):\n  " + "\n  ".join(empty))
    assert not failures, "queries without data:\n" + "\n".join(failures)
    for title in MAY_BE_EMPTY:
        assert any(t == title for t, _, _ in _dashboard_queries()), f"MAY_BE_EMPTY names no panel: {title}"


def test_dashboard_reads_only_exported_metrics(stack):
    prom, _ = stack
    scraped = prom.names()
    for title, ref, expr in _dashboard_queries():
        unknown = metric_names(expr) - scraped - EXTERNAL_METRICS
        # Counters that only exist after an event are exported but may not be scraped yet.
        unknown -= {"nsm_operator_retries_total", "nsm_operator_failures_total", "nsm_operator_reconcile_errors_total"}
        assert not unknown, f"{title} [{ref}] reads {unknown}, which nothing exports"


def test_template_variables_resolve(stack):
    prom, ns = stack
    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    assert ns in prom.label_values("namespace", "nsm_operator_training_phase")
    training_q = variables["training"]["query"]["query"]
    assert training_q == 'label_values(nsm_operator_training_phase{namespace=~"$namespace"}, name)'
    assert prom.label_values("name", f'nsm_operator_training_phase{{namespace=~"{ns}"}}') == [TRAINING]


def test_alert_expressions_evaluate(stack):
    prom, ns = stack
    groups = yaml.safe_load(RULES.read_text())["groups"]
    scraped = prom.names()
    for rule in (r for g in groups for r in g["rules"]):
        prom.query(rule["expr"])  # valid PromQL against real data
        names = metric_names(rule["expr"]) - {"nsm_operator_retries_total"}  # exists only after a retry
        assert names <= scraped, f"{rule['alert']} reads {names - scraped}, not scraped here"
    # The operator is scraped under a job the NSMOperatorDown selector matches.
    (rule,) = [r for g in groups for r in g["rules"] if r["alert"] == "NSMOperatorDown"]
    assert prom.query(rule["expr"]) == []
    # A healthy, progressing Running training is neither failed nor stalled.
    for name in ("NSMTrainingFailed", "NSMTrainingStalled"):
        (rule,) = [r for g in groups for r in g["rules"] if r["alert"] == name]
        assert prom.query(rule["expr"]) == [], name


def test_rules_load_and_evaluate_without_errors(stack):
    prom, _ = stack
    rules = _get(f"{prom.base}/api/v1/rules")["data"]["groups"]
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    assert set(loaded) == {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    for name, r in loaded.items():
        assert r["health"] in ("ok", "unknown"), (name, r.get("lastError"))
        assert not r.get("lastError"), (name, r["lastError"])
