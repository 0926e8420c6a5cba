"""`helm install` of charts/nsm-operator into the local control plane: the CRD is established, the
objects exist and pass the restricted Pod Security admission, the ServiceAccount can do exactly
what OPERATOR_RULES grants (a `kubectl auth can-i` / SubjectAccessReview matrix), the real
operator reconciles an NSMTraining with only that identity, and the rendered chart passes
`kubectl apply --dry-run=server`."""

from __future__ import annotations


import pytest
import yaml
from tests.e2e.chart.helm_release import CHART, can_i as _can_i, kube_version, release, run_helm  # noqa: F401

from nsm_operator.rbac import OPERATOR_RULES
from tests.e2e.chart.operator_process import OperatorProcess, serviceaccount_kubeconfig, static_volume
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.e2e

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# (verb, resource[.group][/subresource], namespaced) the operator must NOT be able to do.
DENIED = [
    ("delete", "nodes", False),
    ("get", "nodes", False),
    ("create", "pods", True),
    ("delete", "pods", True),
    ("create", "pods/exec", True),
    ("list", "secrets", True),
    ("watch", "secrets", True),
    ("create", "secrets", True),
    ("create", "nsmtrainings.nsm.dev", True),
    ("delete", "nsmtrainings.nsm.dev", True),
    ("update", "jobs.batch", True),
    ("delete", "persistentvolumeclaims", True),
    ("delete", "configmaps", True),
    ("create", "serviceaccounts/token", True),
    ("create", "deployments.apps", True),
    ("create", "clusterroles.rbac.authorization.k8s.io", False),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", False),
    ("bind", "roles.rbac.authorization.k8s.io", True),
    ("escalate", "roles.rbac.authorization.k8s.io", True),
    ("impersonate", "serviceaccounts", True),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", False),
    ("delete", "namespaces", False),
    ("create", "persistentvolumes", False),
]


def _wait(predicate, timeout: float, what: str, interval: float = 0.5, log=lambda: ""):
    return wait_for(predicate, timeout, what, describe=log, interval=interval)


def _canonical(rules):
    return sorted((tuple(sorted(r.get("apiGroups") or r.get("api_groups") or [])), tuple(sorted(r["resources"])),
                   tuple(sorted(r["verbs"]))) for r in rules)


def test_install_creates_the_operator(cluster, release, apiextensions_v1, k8s_api):
    from kubernetes import client

    def established():
        # Set by the API server's CRD controller after `helm install` returned (the CI run's first
        # test once saw it still missing on a loaded machine).
        crd = apiextensions_v1.read_custom_resource_definition("nsmtrainings.nsm.dev")
        return crd if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []) else None

    crd = _wait(established, 30, "the NSMTraining CRD to be Established")
    assert crd.spec.names.short_names == ["nsmt"]

    ns = release.namespace
    apps, core, rbac = client.AppsV1Api(k8s_api), client.CoreV1Api(k8s_api), client.RbacAuthorizationV1Api(k8s_api)
    dep = apps.read_namespaced_deployment(release.fullname, ns)
    assert dep.spec.replicas == 1 and dep.spec.strategy.type == "Recreate"
    assert core.read_namespaced_service_account(release.serviceaccount, ns)
    svc = core.read_namespaced_service(release.fullname, ns)
    assert [(p.name, p.port) for p in svc.spec.ports] == [("metrics", 8080)]
    role = rbac.read_cluster_role(release.fullname)  # the operator's; -edit/-view are for users
    assert _canonical([r.to_dict() for r in role.rules]) == _canonical(OPERATOR_RULES)
    binding = rbac.read_cluster_role_binding(release.fullname)
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("ServiceAccount", release.serviceaccount, ns)]

    # The namespace enforces the restricted Pod Security Standard: the ReplicaSet can only create
    # the operator pod if its security context complies (kwok then marks it Running).
    def running_pod():
        pods = core.list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/instance={release.name}").items
        return [p for p in pods if p.status.phase == "Running"]

    (pod,) = _wait(running_pod, 90, "the operator pod to be admitted and Running")
    # ...and the namespace really enforces it: a pod without a restricted context is refused.
    bad = cluster.kubectl("run", "not-restricted", "--image=busybox", "--restart=Never", "-n", ns,
                          "--dry-run=server")
    assert bad.returncode != 0 and "PodSecurity" in bad.stderr, bad.stdout + bad.stderr
    assert pod.spec.service_account_name == release.serviceaccount
    events = core.list_namespaced_event(ns).items
    assert not [e.message for e in events if e.reason == "FailedCreate"], "pod creation was rejected"


def test_serviceaccount_can_do_exactly_the_operator_rules(cluster, release, namespace, k8s_api):
    """Every verb on every resource of OPERATOR_RULES: allowed iff the rule grants it, in the
    release namespace and in any other; plus the headline denials, via `kubectl auth can-i`."""
    from kubernetes import client

    user = f"system:serviceaccount:{namespace}:{release.serviceaccount}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    authz = client.AuthorizationV1Api(k8s_api)
    cluster_scoped = {"customresourcedefinitions", "namespaces"}

    def allowed(verb, group, resource, ns, name=None):
        res, _, sub = resource.partition("/")
        review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=user, groups=groups,
            resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=res, name=name,
                                                            subresource=sub or None, namespace=ns)))
        return authz.create_subject_access_review(review).status.allowed

    # (group, resource, name): None = any name; a rule with resourceNames grants only those names.
    granted: dict[tuple[str, str, str | None], set[str]] = {}
    for rule in OPERATOR_RULES:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for name in rule.get("resourceNames") or [None]:
                    granted.setdefault((group, resource, name), set()).update(rule["verbs"])
    mismatches = []
    for (group, resource, name), verbs in sorted(granted.items(), key=str):
        scopes = [None] if resource in cluster_scoped else [namespace, "some-other-namespace"]
        for ns in scopes:
            for verb in VERBS:
                if allowed(verb, group, resource, ns, name) != (verb in verbs):
                    mismatches.append((verb, group, resource, ns, name, verb in verbs))
                if name is not None and allowed(verb, group, resource, ns, "any-other-name"):
                    mismatches.append((verb, group, resource, ns, "any-other-name", False))
    assert not mismatches, f"(verb, group, resource, namespace, name, expected) mismatches: {mismatches}"

    # The same authorizer through kubectl's impersonation, for the checks a reviewer reads first.
    for group, resource in (("batch", "jobs.batch"), ("", "configmaps"), ("", "secrets/modal-credentials")):
        assert _can_i(cluster, user, "get", resource, "some-other-namespace")
    assert not _can_i(cluster, user, "get", "secrets/db-password", "some-other-namespace")
    assert _can_i(cluster, user, "patch", "nsmtrainings.nsm.dev/status", namespace)
    assert _can_i(cluster, user, "list", "customresourcedefinitions.apiextensions.k8s.io", None)
    denied = [(v, r) for v, r, namespaced in DENIED if _can_i(cluster, user, v, r, namespace if namespaced else None)]
    assert not denied, f"the operator's ServiceAccount may {denied}"


def test_operator_reconciles_with_only_its_serviceaccount(cluster, release, namespace, custom_objects,
                                                          batch_v1, tmp_path):
    """The real operator, as a local process authenticated as the chart's ServiceAccount (token
    from `kubectl create token`), takes an NSMTraining from creation to Succeeded: Job created,
    phase Pending -> Running -> Succeeded, with no Forbidden error on the way."""
    kubeconfig = serviceaccount_kubeconfig(cluster, namespace, release.serviceaccount, tmp_path / "sa.kubeconfig")
    name = "chart-e2e"
    pv = static_volume(cluster, namespace, f"{name}-checkpoints")
    training = {
        "apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
        "metadata": {"name": name, "namespace": namespace,
                     # kwok (tests/cluster/kwok-stages.yaml): Running for 5s, then exit 0.
                     "annotations": {"kwok.nsm.dev/run-seconds": "5s"}},
        "spec": {"domain": "causal", "epochs": 2, "dataset": {"numScenarios": 100},
                 "resources": {"gpu": {"count": 1, "product": "A100-40GB"}, "cpu": "1", "memory": "1Gi"},
                 "checkpoint": {"storage": {"size": "1Gi", "retain": False}},
                 "retry": {"maxRetries": 0}},
    }
    log = tmp_path / "operator.log"
    try:
        with OperatorProcess(kubeconfig=kubeconfig, namespaces=[namespace], log_path=log) as op:
            custom_objects.create_namespaced_custom_object("nsm.dev", "v1alpha1", namespace, "nsmtrainings", training)

            def job():
                jobs = batch_v1.list_namespaced_job(namespace, label_selector=f"nsm.dev/training={name}").items
                return jobs

            (created,) = _wait(job, 60, "the operator to create the attempt's Job", log=op.log)
            assert created.metadata.name == f"{name}-a1"
            assert created.metadata.owner_references[0].kind == "NSMTraining"
            phases = []

            def phase():
                obj = custom_objects.get_namespaced_custom_object("nsm.dev", "v1alpha1", namespace, "nsmtrainings", name)
                p = (obj.get("status") or {}).get("phase")
                if p and (not phases or phases[-1] != p):
                    phases.append(p)
                return p == "Succeeded" or p == "Failed"

            _wait(phase, 120, "the training to finish", interval=0.25, log=op.log)
            text = op.log()
            assert phases[-1] == "Succeeded", f"phases {phases}; operator log:\n{text[-4000:]}"
            assert "Running" in phases, phases
            assert "Forbidden" not in text and " 403" not in text, text[-4000:]
    finally:
        cluster.kubectl("delete", "nsmtrainings.nsm.dev", name, "-n", namespace, "--ignore-not-found", "--wait=false")
        cluster.kubectl("delete", "pv", pv, "--ignore-not-found", "--wait=false")


@pytest.mark.parametrize("values", [[], ["--set", "grafanaDashboard.enabled=true", "-f",
                                         str(CHART.parents[1] / "tests/unit/chart/values/custom-settings.yaml"),
                                         "--set", "podMonitor.enabled=false"]], ids=["defaults", "custom"])
def test_rendered_chart_passes_server_side_dry_run(cluster, namespace, values):
    """`helm template | kubectl apply --dry-run=server -f -`: the API server validates every object.
    ServiceMonitor/PodMonitor/PrometheusRule are left off: the test cluster has no Prometheus
    Operator CRDs (their shape is covered by tests/unit/chart)."""
    rendered = run_helm(cluster, "template", "dry", str(CHART), "--namespace", namespace,
                        "--kube-version", kube_version(), *values).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {"Deployment", "ClusterRole", "CustomResourceDefinition"} <= kinds
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == len([d for d in yaml.safe_load_all(rendered) if d])
