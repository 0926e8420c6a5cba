"""The dashboard's GPU panels join DCGM exporter series to trainings under both label schemes the
exporter's series arrive with: the trainer pod's own `namespace`/`pod` (the scrape honours the
exporter's labels), or `exported_namespace`/`exported_pod` with `namespace`/`pod` naming the
exporter's own pod (the GPU operator's default ServiceMonitor). Evaluated by promtool on synthetic
series (no GPU and no DCGM exporter can run here); Grafana's variables are set to "All"."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml
from tests.unit.chart.chart_fixtures import CHART

DASHBOARD = CHART / "dashboards" / "nsm-training.json"
PANELS = {"GPU utilisation": ("DCGM_FI_DEV_GPU_UTIL", 87), "GPU memory used": ("DCGM_FI_DEV_FB_USED", 30000)}
INFO = 'nsm_training_info{namespace="ml",pod="causal-a1-x",training="causal",domain="causal",attempt="1",device="cuda:0"}'


def _exprs() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]
    out = {p["title"]: p["targets"][0]["expr"] for p in panels if p["title"] in PANELS}
    assert set(out) == set(PANELS)
    return {title: e.replace("$namespace", ".*").replace("$training", ".*") for title, e in out.items()}


@pytest.mark.parametrize("scheme", ["pod-labels", "exported-labels"])
def test_gpu_panels_join_either_dcgm_label_scheme(tmp_path, scheme):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool not found: run `bash hack/test-deps.sh` (Debian package prometheus)", pytrace=False)
    series, expected = [], []
    for title, expr in _exprs().items():
        metric, value = PANELS[title]
        gpu = 'gpu="0",UUID="GPU-1",Hostname="node-1",container="trainer"'
        if scheme == "pod-labels":
            labels = f'namespace="ml",pod="causal-a1-x",{gpu}'
            out = f'{{namespace="ml",pod="causal-a1-x",{gpu},training="causal"}}'
        else:
            labels = f'namespace="gpu-operator",pod="dcgm-exporter-abc",exported_namespace="ml",exported_pod="causal-a1-x",{gpu}'
            out = (f'{{namespace="ml",pod="causal-a1-x",exported_namespace="ml",exported_pod="causal-a1-x",{gpu},'
                   f'training="causal"}}')
        series.append({"series": f"{metric}{{{labels}}}", "values": f"{value}x5"})
        # A GPU of a pod that is no trainer: never shown.
        series.append({"series": f'{metric}{{namespace="ml",pod="other-pod",gpu="1",UUID="GPU-2"}}', "values": "1x5"})
        expected.append({"expr": expr, "eval_time": "2m", "exp_samples": [{"labels": out, "value": value}]})
    series.append({"series": INFO, "values": "1x5"})
    tests = {"rule_files": [], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": expected}]}
    path = tmp_path / "gpu.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = subprocess.run([promtool, "test", "rules", path.name], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
