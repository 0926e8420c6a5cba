"""A corpus of malformed NSMTraining specs, shared by the unit tier (pydantic rejects each, naming
the field) and the e2e tier (``kubectl apply`` rejects each naming the field, or the operator fails
it naming the field; tests/e2e/operator/test_op_invalid_specs.py).

Each case: (id, spec fields over ``{domain: causal, epochs: 3}``, a string both the API server's
and pydantic's message contain — the field's path).
"""

from __future__ import annotations

from typing import Any

_SECRET = {"secretKeyRef": {"name": "wandb", "key": "api-key"}}
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"

CASES: list[tuple[str, dict[str, Any], str]] = [
    # The four values of issue #10.
    ("memory-double-dot", {"resources": {"memory": "1..2"}}, "spec.resources.memory"),
    ("cpu-negative-string", {"resources": {"cpu": "-4"}}, "spec.resources.cpu"),
    ("queue-name-space", {"queueName": "team a"}, "spec.queueName"),
    ("storage-class-bad", {"checkpoint": {"storage": {"storageClassName": "Bad_Class!"}}},
     "spec.checkpoint.storage.storageClassName"),
    # Quantities, names, patterns.
    ("cpu-negative-int", {"resources": {"cpu": -4}}, "spec.resources.cpu"),
    ("pvc-size-unit", {"checkpoint": {"storage": {"size": "10GB"}}}, "spec.checkpoint.storage.size"),
    ("existing-claim-bad", {"checkpoint": {"storage": {"existingClaim": "My Claim"}}},
     "spec.checkpoint.storage.existingClaim"),
    ("queue-name-too-long", {"queueName": "q" * 64}, "spec.queueName"),
    ("image-bad-chars", {"image": "Bad_Image!"}, "spec.image"),
    ("image-space-in-tag", {"image": "ghcr.io/nsm/trainer:v 1"}, "spec.image"),
    # Enums, bounds, types.
    ("domain-unknown", {"domain": "vision"}, "spec.domain"),
    ("target-unknown", {"target": "aws"}, "spec.target"),
    ("epochs-zero", {"epochs": 0}, "spec.epochs"),
    ("epochs-string", {"epochs": "ten"}, "spec.epochs"),
    ("batch-size-huge", {"batchSize": 1_000_000}, "spec.batchSize"),
    ("learning-rate-zero", {"learningRate": 0}, "spec.learningRate"),
    ("pool-ratio-above-one", {"poolRatio": 1.5}, "spec.poolRatio"),
    ("suspend-string", {"suspend": "maybe"}, "spec.suspend"),
    ("timeout-zero", {"timeoutSeconds": 0}, "spec.timeoutSeconds"),
    ("unknown-field", {"epochz": 3}, "epochz"),
    ("lr-schedule-unknown", {"optimization": {"lrSchedule": "linear"}}, "spec.optimization.lrSchedule"),
    ("workers-negative", {"dataLoader": {"numWorkers": -1}}, "spec.dataLoader.numWorkers"),
    ("gpu-product-unknown", {"resources": {"gpu": {"product": "A100"}}}, "spec.resources.gpu.product"),
    ("gpu-count-17", {"resources": {"gpu": {"count": 17}}}, "spec.resources.gpu.count"),
    ("nodes-zero", {"resources": {"nodes": 0}}, "spec.resources.nodes"),
    ("nodes-65", {"resources": {"nodes": 65}}, "spec.resources.nodes"),
    ("dropout-one", {"model": {"dropout": 1.0}}, "spec.model.dropout"),
    ("modal-app-empty", {"modal": {"app": ""}}, "spec.modal.app"),
    ("max-retries-21", {"retry": {"maxRetries": 21}}, "spec.retry.maxRetries"),
    ("scenarios-too-few", {"dataset": {"numScenarios": 5}}, "spec.dataset.numScenarios"),
    # Cross-field rules (CEL in the CRD, a model validator in pydantic).
    ("retry-max-below-initial", {"retry": {"initialDelaySeconds": 120, "maxDelaySeconds": 60}},
     "retry.maxDelaySeconds"),
    ("dataset-other-domain", {"dataset": {"numProblems": 100}}, "dataset.numProblems"),
    ("modal-several-nodes", {"target": "modal", "resources": {"nodes": 2}}, "resources.nodes"),
    ("modal-gpus-over-8", {"target": "modal", "resources": {"gpu": {"count": 9}}}, "resources.gpu.count"),
    ("modal-a10g-over-4", {"target": "modal", "resources": {"gpu": {"count": 5, "product": "A10G"}}},
     "resources.gpu.count"),
    ("toleration-exists-with-value", {"scheduling": {"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}},
     "spec.scheduling.tolerations[0]"),
    ("toleration-seconds-without-noexecute",
     {"scheduling": {"tolerations": [{"key": "a", "effect": "NoSchedule", "tolerationSeconds": 5}]}},
     "spec.scheduling.tolerations[0]"),
    ("node-affinity-exists-with-values", {"scheduling": {"affinity": {"nodeAffinity": {_REQUIRED: {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "Exists", "values": ["a"]}]}]}}}}},
     "spec.scheduling.affinity.nodeAffinity"),
    ("env-reserved-name", {"env": [{"name": "NSM_ATTEMPT", "value": "9"}]}, "spec.env[0]"),
    ("env-rendezvous-name", {"env": [{"name": "A", "value": "1"}, {"name": "MASTER_ADDR", "value": "evil"}]},
     "spec.env[1]"),
    ("env-value-and-value-from", {"env": [{"name": "KEY", "value": "x", "valueFrom": _SECRET}]}, "spec.env[0]"),
    ("env-duplicate-name", {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "spec.env"),
    ("env-from-two-sources", {"envFrom": [{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}]},
     "spec.envFrom[0]"),
    # Placement fields: patterns and types.
    ("node-selector-bad-key", {"scheduling": {"nodeSelector": {"bad key!": "x"}}}, "spec.scheduling.nodeSelector"),
    ("node-selector-bad-value", {"scheduling": {"nodeSelector": {"pool": "bad value!"}}},
     "spec.scheduling.nodeSelector"),
    ("tolerations-not-a-list", {"scheduling": {"tolerations": {"key": "a"}}}, "spec.scheduling.tolerations"),
    ("toleration-operator-unknown", {"scheduling": {"tolerations": [{"key": "a", "operator": "Sometimes"}]}},
     "spec.scheduling.tolerations[0].operator"),
    ("priority-class-bad", {"scheduling": {"priorityClassName": "High_Priority"}},
     "spec.scheduling.priorityClassName"),
    ("pull-secret-bad-name", {"scheduling": {"imagePullSecrets": [{"name": "Reg Cred"}]}},
     "spec.scheduling.imagePullSecrets[0].name"),
    ("pod-anti-affinity-no-topology", {"scheduling": {"affinity": {"podAntiAffinity": {_REQUIRED: [
        {"labelSelector": {"matchLabels": {"app": "x"}}}]}}}}, "topologyKey"),
    ("env-bad-name", {"env": [{"name": "1=A", "value": "x"}]}, "spec.env[0].name"),
    ("env-secret-bad-name", {"env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "Bad Secret", "key": "k"}}}]},
     "spec.env[0].valueFrom.secretKeyRef.name"),
    ("env-literal-secret-field", {"env": [{"name": "KEY", "secret": "hunter2"}]}, "secret"),
]  # fmt: skip


def spec_of(fields: dict[str, Any]) -> dict[str, Any]:
    return {"domain": "causal", "epochs": 3, **fields}
