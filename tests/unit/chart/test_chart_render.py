"""Rendered-template tests of charts/nsm-operator (``helm template`` with the values files under
tests/unit/chart/values/): RBAC equals the operator's OPERATOR_RULES, the Deployment is
restricted and wired to the settings, labels reach every object, optional objects toggle."""

from __future__ import annotations

import json

import pytest
import yaml
from tests.unit.chart.chart_fixtures import CHART, REPO, by_kind, helm, one, render  # noqa: F401 - fixtures

from nsm_operator.rbac import OPERATOR_RULES, operator_rules

OPTIONAL = {
    "ServiceMonitor": "serviceMonitor",
    "PodMonitor": "podMonitor",
    "PrometheusRule": "prometheusRule",
    "ConfigMap": "grafanaDashboard",
}


def _canonical(rules: list[dict]) -> list[tuple]:
    # Order of rules and of list entries carries no meaning in RBAC.
    return sorted(
        (tuple(sorted(r.get("apiGroups", []))), tuple(sorted(r.get("resources", []))),
         tuple(sorted(r.get("verbs", []))), tuple(sorted(r.get("resourceNames", []))),
         tuple(sorted(r.get("nonResourceURLs", []))))
        for r in rules
    )


def test_default_objects(render):
    kinds = sorted(o["kind"] for o in render())
    assert kinds == ["ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                     "Deployment", "Service", "ServiceAccount"]


def _operator_role(objs: list[dict]) -> dict:
    (role,) = [r for r in by_kind(objs, "ClusterRole") if not r["metadata"]["name"].endswith(("-edit", "-view"))]
    return role


def test_clusterrole_is_exactly_operator_rules(render):
    role = _operator_role(render())
    assert _canonical(role["rules"]) == _canonical(OPERATOR_RULES)
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in {key}: {rule}"
    assert len(_canonical(role["rules"])) == len(set(_canonical(role["rules"]))), "duplicate rules"


def test_rbac_binds_the_operator_serviceaccount(render):
    objs = render(namespace="ops")
    sa, binding, role = one(objs, "ServiceAccount"), one(objs, "ClusterRoleBinding"), _operator_role(objs)
    dep = one(objs, "Deployment")
    assert sa["metadata"]["namespace"] == "ops"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "ops"}]
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_existing_serviceaccount_and_no_rbac(render):
    objs = render("existing-serviceaccount.yaml")
    assert not by_kind(objs, "ServiceAccount") and not by_kind(objs, "ClusterRole")
    assert not by_kind(objs, "ClusterRoleBinding")
    spec = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "platform-nsm-operator"


def test_deployment_shape_and_restricted_security(render):
    dep = one(render(), "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["image"] == "ghcr.io/nsm-dev/nsm-operator:0.1.0"  # appVersion
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # The read-only root filesystem gets a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_liveness_probe_matches_the_operator_flag(render):
    for values in ((), ("custom-settings.yaml",)):
        c = one(render(*values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        probe = c["livenessProbe"]
        assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
        assert c["args"][0] == f"--liveness=http://0.0.0.0:{ports['health']}/healthz"
        assert probe["periodSeconds"] > 0 and probe["failureThreshold"] >= 1
    assert ports == {"metrics": 9090, "health": 9091}


def _env(dep: dict) -> dict[str, str]:
    c = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in c["env"]}


def test_default_settings_env_parses(render):
    from nsm_operator.settings import OperatorSettings

    env = _env(one(render(), "Deployment"))
    settings = OperatorSettings.from_env({k: v for k, v in env.items() if k.startswith("NSM_OPERATOR_")})
    assert settings.default_image == "ghcr.io/nsm-dev/nsm-trainer:0.1.0"
    assert settings.namespaces == ()
    assert settings.metrics_port == 8080
    assert settings.trainer_metrics_port == 9400
    assert settings.modal_secret == "modal-credentials"
    assert [t.to_wire() for t in settings.pod_defaults.gpu_tolerations] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (settings.job_ttl_seconds_after_finished, settings.job_history_limit) == (86400, 3)


def test_custom_settings_reach_the_operator(render):
    from nsm_operator.settings import OperatorSettings

    objs = render("custom-settings.yaml")
    dep = one(objs, "Deployment")
    env = _env(dep)
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    s = OperatorSettings.from_env({k: v for k, v in env.items() if k.startswith("NSM_OPERATOR_")})
    assert s.default_image == "registry.example.com/nsm/trainer:0.1.0-cu128"
    assert s.namespaces == ("ml-research", "ml-prod")
    assert s.price_per_gpu_hour == 3.5
    assert s.gpu_labels("A100-40GB") == {"cloud.google.com/gke-accelerator": ("nvidia-tesla-a100",),
                                         "node.kubernetes.io/instance-type": ("a2-highgpu-1g", "a2-highgpu-2g")}
    assert s.gpu_labels("H100")["nvidia.com/gpu.product"] == ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe")  # defaults kept
    assert s.pod_defaults.scheduling.priority_class_name == "ml-batch"
    assert [t.key for t in s.pod_defaults.gpu_tolerations] == ["gpu-pool"]
    assert (s.job_ttl_seconds_after_finished, s.job_history_limit) == (3600, 1)
    assert (s.metrics_port, s.trainer_metrics_port) == (9090, 9500)
    assert s.modal_secret == "modal-prod"
    assert (s.modal_poll_seconds, s.watch_timeout_seconds, s.request_timeout_seconds) == (30, 120, 10.5)
    pod = dep["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    c = pod["containers"][0]
    assert c["image"] == "registry.example.com/nsm/operator:0.1.0-rc1"
    assert c["imagePullPolicy"] == "Always"
    assert c["args"][1:] == ["--verbose"]
    # The trainer PodMonitor follows the watched namespaces.
    pm = one(objs, "PodMonitor")
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["ml-research", "ml-prod"]}
    # The Service targets the named port, whatever its number.
    svc = one(objs, "Service")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    cm = one(objs, "ConfigMap")
    assert cm["metadata"]["labels"]["my_dashboards"] == "yes"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]


def test_image_digest_pins_the_image(render):
    digest = "sha256:" + "ab" * 32
    c = one(render(set=[f"image.digest={digest}"]), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == f"ghcr.io/nsm-dev/nsm-operator:0.1.0@{digest}"


def test_service_exposes_metrics(render):
    svc = one(render(), "Service")
    dep = one(render(), "Deployment")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())


@pytest.mark.parametrize("kind", sorted(OPTIONAL))
def test_optional_objects_toggle(render, kind):
    key = OPTIONAL[kind]
    assert not by_kind(render(), kind)
    assert len(by_kind(render(set=[f"{key}.enabled=true"]), kind)) == 1
    assert not by_kind(render("all-enabled.yaml", set=[f"{key}.enabled=false"]), kind)


def test_common_labels_on_every_object(render):
    objs = render("all-enabled.yaml")
    assert len(objs) == 12
    for o in objs:
        labels = o["metadata"]["labels"]
        assert labels["team"] == "ml-platform", o["kind"]
        assert labels["app.kubernetes.io/name"] == "nsm-operator"
        assert labels["app.kubernetes.io/instance"] == "nsm-operator"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "nsm-operator-0.2.0"
    pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["team"] == "ml-platform"


def test_monitors_carry_additional_labels_and_select_the_right_targets(render):
    objs = render("all-enabled.yaml")
    sm, pm, rule = one(objs, "ServiceMonitor"), one(objs, "PodMonitor"), one(objs, "PrometheusRule")
    for o in (sm, pm, rule):
        assert o["metadata"]["labels"]["release"] == "kube-prometheus-stack", o["kind"]
    svc = one(objs, "Service")
    assert sm["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["nsm-system"]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "metrics" and ep["path"] == "/metrics" and ep["honorLabels"] is True
    assert pm["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "nsm-trainer"}}
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    (pep,) = pm["spec"]["podMetricsEndpoints"]
    assert pep["port"] == "metrics" and pep["path"] == "/metrics"


def test_trainer_pods_are_what_the_podmonitor_selects(render):
    """A Job the operator builds has pods the chart's PodMonitor selects, on a port it scrapes."""
    from nsm_operator.builders.job import build_job
    from nsm_operator.resource import Training
    from nsm_operator.settings import OperatorSettings

    training = Training.from_body({"metadata": {"name": "causal", "namespace": "ml", "uid": "u1"},
                                   "spec": {"domain": "causal"}})
    pod = build_job(training, 1, OperatorSettings.from_env({}))["spec"]["template"]
    pm = one(render(set=["podMonitor.enabled=true"]), "PodMonitor")
    selector = pm["spec"]["selector"]["matchLabels"]
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items())
    assert pod["metadata"]["labels"]["nsm.dev/training"] == "causal"
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    ports = [p for c in pod["spec"]["containers"] for p in c.get("ports", [])]
    assert {"name": endpoint["port"], "containerPort": 9400, "protocol": "TCP"} in ports


def test_dashboard_configmap(render):
    cm = one(render("all-enabled.yaml"), "ConfigMap")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "NSM"}
    shipped = json.loads((CHART / "dashboards" / "nsm-training.json").read_text())
    assert json.loads(cm["data"]["nsm-training.json"]) == shipped


def test_prometheusrule_renders_the_rule_file(render):
    rule = one(render(set=["prometheusRule.enabled=true"]), "PrometheusRule")
    plain = yaml.safe_load((CHART / "rules" / "nsm-alerts.yaml").read_text())
    assert rule["spec"] == plain
    # Alert templating reaches Prometheus verbatim (not eaten by helm).
    text = yaml.safe_dump(rule["spec"])
    assert "{{ $labels.training }}" in text


def test_names_follow_release_and_overrides(render):
    assert one(render(release="nsm-operator"), "Deployment")["metadata"]["name"] == "nsm-operator"
    assert one(render(release="prod"), "Deployment")["metadata"]["name"] == "prod-nsm-operator"
    assert one(render(set=["fullnameOverride=nsm-operator-x"]), "Deployment")["metadata"]["name"] == "nsm-operator-x"


def test_replica_zero_pauses(render):
    assert one(render(set=["replicaCount=0"]), "Deployment")["spec"]["replicas"] == 0


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.29.0-0"
    assert chart["appVersion"] == "0.1.0"
    # Not crds/: Helm installs those once and never upgrades them (templates/crd.yaml does).
    assert not (CHART / "crds").exists()


def test_modal_secret_is_the_only_secret_the_operator_may_read(render):
    role = _operator_role(render(set=["operator.modalSecret=modal-prod"]))
    assert _canonical(role["rules"]) == _canonical(operator_rules("modal-prod"))
    (rule,) = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert rule["resourceNames"] == ["modal-prod"] and rule["verbs"] == ["get"]


def test_metrics_listen_on_the_pod_ip_unless_set(render):
    env = {e["name"]: e for e in one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["NSM_OPERATOR_METRICS_ADDRESS"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    env = {e["name"]: e for e in one(render(set=["metrics.address=127.0.0.1"]), "Deployment")
           ["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
    assert env["NSM_OPERATOR_METRICS_ADDRESS"] == {"name": "NSM_OPERATOR_METRICS_ADDRESS", "value": "127.0.0.1"}


def test_network_policies_are_optional_and_admit_only_metrics(render):
    assert not by_kind(render(), "NetworkPolicy")
    peer = "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring"
    objs = render(set=["networkPolicy.enabled=true", peer, "networkPolicy.trainerNamespaces={ml,research}"],
                  namespace="ops")  # fmt: skip
    policies = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in by_kind(objs, "NetworkPolicy")}
    assert set(policies) == {("ops", "nsm-operator"), ("ml", "nsm-operator-trainers"), ("research", "nsm-operator-trainers")}
    trainer = policies[("ml", "nsm-operator-trainers")]["spec"]
    assert trainer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "nsm-trainer"}}
    for p in policies.values():
        assert p["spec"]["policyTypes"] == ["Ingress"]
        (rule,) = p["spec"]["ingress"]
        assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]
    closed = render(set=["networkPolicy.enabled=true"])
    assert one(closed, "NetworkPolicy")["spec"]["ingress"] == []


def test_trainer_peers_let_a_multi_node_trainings_pods_meet(render):
    """resources.nodes > 1: rendezvous on 29500, then NCCL/gloo on ports of their own."""
    peer = "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring"
    objs = render(set=["networkPolicy.enabled=true", peer, "networkPolicy.trainerNamespaces={ml}",
                       "networkPolicy.trainerPeers=true"])  # fmt: skip
    trainer = next(p for p in by_kind(objs, "NetworkPolicy") if p["metadata"]["name"] == "nsm-operator-trainers")
    assert trainer["spec"]["ingress"] == [
        {"ports": [{"port": "metrics", "protocol": "TCP"}],
         "from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]},
        {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nsm-trainer"}}}]},
    ]  # fmt: skip
    alone = render(set=["networkPolicy.enabled=true", "networkPolicy.trainerNamespaces={ml}",
                        "networkPolicy.trainerPeers=true"])  # fmt: skip
    trainer = next(p for p in by_kind(alone, "NetworkPolicy") if p["metadata"]["name"] == "nsm-operator-trainers")
    assert trainer["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nsm-trainer"}}}]}]


def test_podmonitor_scrapes_only_rank_zero_of_a_multi_node_job(render):
    """Every pod of an Indexed Job declares the metrics port but only index 0 (rank 0) serves it.

    Prometheus anchors relabel regexes (^(?:…)$), as ``re.fullmatch`` does; the annotation is the
    one the Job controller puts on every pod of an Indexed Job, absent on one-node Jobs.
    """
    import re

    from nsm_operator.builders.job import build_job
    from nsm_operator.resource import Training
    from nsm_operator.settings import OperatorSettings

    (pep,) = one(render(set=["podMonitor.enabled=true",
                             "podMonitor.relabelings[0].targetLabel=team",
                             "podMonitor.relabelings[0].replacement=ml"]), "PodMonitor")["spec"]["podMetricsEndpoints"]
    keep, user = pep["relabelings"]
    assert user == {"targetLabel": "team", "replacement": "ml"}
    assert keep["action"] == "keep"
    assert keep["sourceLabels"] == ["__meta_kubernetes_pod_annotation_batch_kubernetes_io_job_completion_index"]
    kept = {index for index in ("", "0", "1", "10") if re.fullmatch(keep["regex"], index)}
    assert kept == {"", "0"}
    training = Training.from_body({"metadata": {"name": "ddp", "namespace": "ml", "uid": "u1"},
                                   "spec": {"domain": "causal", "resources": {"nodes": 2, "gpu": {"count": 2}}}})
    assert build_job(training, 1, OperatorSettings.from_env({}))["spec"]["completionMode"] == "Indexed"
