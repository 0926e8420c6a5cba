"""spec.scheduling / env / envFrom and the GPU product affinity render into the Job exactly."""

from __future__ import annotations

from nsm_operator.builders import build_job
from nsm_operator.builders.placement import gpu_node_affinity
from nsm_operator.settings import OperatorSettings, PodDefaults

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
SCHEDULING = {
    "nodeSelector": {"cloud.google.com/gke-nodepool": "a100-pool"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
                    {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
    "priorityClassName": "training-high",
    "imagePullSecrets": [{"name": "regcred"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                           "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "nsm-trainer"}}}},
    ]}},
}  # fmt: skip


def _pod(job):
    return job["spec"]["template"]["spec"]


def test_placement_renders_exactly_with_the_product_affinity(make_training, settings):
    pod = _pod(build_job(make_training(scheduling=SCHEDULING, resources={"gpu": {"product": "A100-80GB"}}), 1, settings))
    assert pod["nodeSelector"] == {"cloud.google.com/gke-nodepool": "a100-pool"}
    assert pod["tolerations"] == [GPU_TOLERATION, *SCHEDULING["tolerations"]]
    assert pod["priorityClassName"] == "training-high"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["affinity"] == {
        "podAntiAffinity": SCHEDULING["affinity"]["podAntiAffinity"],
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                   "values": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"]}]},
            {"matchExpressions": [{"key": "cloud.google.com/gke-accelerator", "operator": "In",
                                   "values": ["nvidia-a100-80gb"]}]},
        ]}},
    }  # fmt: skip


def test_own_node_affinity_replaces_the_product_term(make_training, settings):
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["mine"]}]}]}}}  # fmt: skip
    pod = _pod(build_job(make_training(scheduling={"affinity": own}), 1, settings))
    assert pod["affinity"] == own
    assert pod["tolerations"] == [GPU_TOLERATION]  # the GPU toleration is still a default


def test_env_and_env_from_by_reference(make_training, settings):
    env = [{"name": "WANDB_PROJECT", "value": "nsm"},
           {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}}]
    env_from = [{"configMapRef": {"name": "proxy-settings"}, "prefix": "PROXY_"}]
    c = _pod(build_job(make_training(env=env, envFrom=env_from), 3, settings))["containers"][0]
    assert [e["name"] for e in c["env"]] == ["NSM_TRAINING_NAME", "NSM_TRAINING_NAMESPACE", "NSM_ATTEMPT", "NSM_TRAINING_UID", "HOME",
                                             "WANDB_PROJECT", "WANDB_API_KEY"]  # fmt: skip
    assert c["env"][-2:] == env
    assert c["envFrom"] == [{"prefix": "PROXY_", "configMapRef": {"name": "proxy-settings"}}]
    assert "envFrom" not in _pod(build_job(make_training(), 1, settings))["containers"][0]


def test_operator_defaults_merge_under_the_training(make_training):
    defaults = PodDefaults.model_validate({
        "scheduling": {"nodeSelector": {"zone": "a", "pool": "gpu"}, "priorityClassName": "batch-low",
                       "tolerations": [{"key": "team", "operator": "Exists"}],
                       "imagePullSecrets": [{"name": "org-pull"}],
                       "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                           {"topologyKey": "zone"}]}}},
        "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}, {"name": "LOG", "value": "info"}],
        "envFrom": [{"secretRef": {"name": "org-env"}}],
        "gpuTolerations": [{"key": "gpu-pool", "operator": "Exists", "effect": "NoSchedule"}],
    })  # fmt: skip
    settings = OperatorSettings(pod_defaults=defaults)
    training = make_training(scheduling={"nodeSelector": {"zone": "b"}, "priorityClassName": "urgent",
                                         "imagePullSecrets": [{"name": "org-pull"}, {"name": "mine"}],
                                         "tolerations": [{"key": "team", "operator": "Exists"}]},
                             env=[{"name": "LOG", "value": "debug"}],
                             envFrom=[{"secretRef": {"name": "org-env"}}, {"configMapRef": {"name": "own"}}])  # fmt: skip
    pod = _pod(build_job(training, 1, settings))
    assert pod["nodeSelector"] == {"zone": "b", "pool": "gpu"}
    assert pod["priorityClassName"] == "urgent"
    assert pod["imagePullSecrets"] == [{"name": "org-pull"}, {"name": "mine"}]
    assert pod["tolerations"] == [{"key": "team", "operator": "Exists"},
                                  {"key": "gpu-pool", "operator": "Exists", "effect": "NoSchedule"}]  # fmt: skip
    assert pod["affinity"]["podAffinity"] == {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]}
    assert "nodeAffinity" in pod["affinity"]  # the product term still applies
    c = pod["containers"][0]
    assert c["env"][5:] == [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}, {"name": "LOG", "value": "debug"}]
    assert c["envFrom"] == [{"secretRef": {"name": "org-env"}}, {"configMapRef": {"name": "own"}}]
    # CPU pods get neither the GPU tolerations nor the product affinity.
    cpu = _pod(build_job(make_training(resources={"gpu": {"count": 0}}), 1, settings))
    assert cpu["tolerations"] == [{"key": "team", "operator": "Exists"}] and "nodeAffinity" not in cpu["affinity"]


def test_no_gpu_toleration_when_the_default_is_emptied(make_training):
    settings = OperatorSettings(pod_defaults=PodDefaults(gpu_tolerations=[]))
    assert "tolerations" not in _pod(build_job(make_training(), 1, settings))


def test_product_affinity_terms_and_unmapped_products():
    assert gpu_node_affinity({}) is None and gpu_node_affinity({"a": ()}) is None
    settings = OperatorSettings.from_env({"NSM_OPERATOR_GPU_NODE_LABELS": '{"B200": {}}'})
    assert settings.gpu_labels("B200") == {}


def test_ttl_and_no_ttl(make_training):
    assert build_job(make_training(), 1, OperatorSettings())["spec"]["ttlSecondsAfterFinished"] == 86400
    job = build_job(make_training(), 1, OperatorSettings(job_ttl_seconds_after_finished=0))
    assert "ttlSecondsAfterFinished" not in job["spec"]
