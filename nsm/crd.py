"""Generate the NSMTraining CustomResourceDefinition from the pydantic spec.

``nsm crd`` writes ``charts/nsm-operator/crd/nsm.dev_nsmtrainings.yaml`` (the chart's
``templates/crd.yaml`` renders it, so ``helm upgrade`` updates it); a test fails when the
committed file differs from :func:`render_crd`. The pydantic JSON schema is turned into a
*structural* OpenAPI v3.0 schema: ``$ref`` inlined, ``anyOf [X, null]`` -> ``nullable: true``,
numeric ``exclusiveMinimum: x`` -> ``minimum: x, exclusiveMinimum: true``, quantities as
int-or-string, titles and ``additionalProperties: false`` dropped (the API server prunes and,
with kubectl's default strict field validation, rejects unknown fields).

The status is not part of the pydantic model (the operator and the trainer write it); its schema
is written out here.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from nsm.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    MAX_MULTI_NODE_NAME_LENGTH,
    MAX_NAME_LENGTH,
    MULTI_NODE_NAME_MESSAGE,
    MODAL_MAX_GPUS,
    MODAL_MAX_GPUS_PER_CONTAINER,
    MODAL_NODES_MESSAGE,
    PLURAL,
    SHORT_NAME,
    NSMTrainingSpec,
)

CRD_NAME = f"{PLURAL}.{API_GROUP}"
# JSON-pointer-ish paths (camelCase property names from the spec root) that hold a quantity.
QUANTITY_PATHS = frozenset({("resources", "cpu"), ("resources", "memory"), ("checkpoint", "storage", "size")})
# Fields that may not change once the training exists: a new domain is a new training, and a new
# target would start a second attempt elsewhere while the first keeps its GPU.
IMMUTABLE_PATHS = frozenset({("domain",), ("target",)})
# resources.nodes cannot change either: the checkpoint claim's access mode follows from it
# (ReadWriteMany for several pods) and a claim's access mode cannot change. Its rule sits on the
# spec, comparing defaults too: a rule on the field itself never runs when `resources` was unset
# (nothing to default into), so 1 -> 2 would pass.
_NODES = "(has({0}.resources) && has({0}.resources.nodes) ? {0}.resources.nodes : 1)"
_ON_MODAL = "has(self.target) && self.target == 'modal'"
_MODAL_GPU_LIMIT = " : ".join(
    [f"self.resources.gpu.product == '{p.value}' ? {n}" for p, n in MODAL_MAX_GPUS.items()]
    + [str(MODAL_MAX_GPUS_PER_CONTAINER)]
)
# CEL twins of the cross-field checks NSMTrainingSpec makes in pydantic (the models of
# nsm/placement.py carry their own in json_schema_extra). A field holding null counts as unset.
CROSS_FIELD_RULES: dict[tuple[str, ...], list[dict[str, str]]] = {
    ("retry",): [{
        "rule": "self.maxDelaySeconds >= self.initialDelaySeconds",
        "message": "retry.maxDelaySeconds must be >= retry.initialDelaySeconds",
        "fieldPath": ".maxDelaySeconds",
    }],
    (): [
        {"rule": f"!has(self.dataset) || !has(self.dataset.{field}) || self.domain in {list(domains)}",
         "message": f"dataset.{field} does not apply to this domain (only {', '.join(domains)})",
         "fieldPath": f".dataset.{field}"}
        for field, domains in (("numProblems", ("planning",)), ("numScenarios", ("causal",)),
                               ("numEntities", ("kg",)), ("numTriples", ("kg",)))
    ] + [
        {"rule": f"{_NODES.format('self')} == {_NODES.format('oldSelf')}",
         "message": "spec.resources.nodes is immutable", "fieldPath": ".resources.nodes"},
        {"rule": f"!({_ON_MODAL}) || !has(self.resources) || !has(self.resources.nodes) || self.resources.nodes == 1",
         "message": MODAL_NODES_MESSAGE, "fieldPath": ".resources.nodes"},
        {"rule": f"!({_ON_MODAL}) || !has(self.resources) || !has(self.resources.gpu) "
                 f"|| !has(self.resources.gpu.count) || !has(self.resources.gpu.product) "
                 f"|| self.resources.gpu.count <= ({_MODAL_GPU_LIMIT})",
         "message": f"resources.gpu.count: Modal attaches at most {MODAL_MAX_GPUS_PER_CONTAINER} GPUs to one "
                    "container (A10G: 4); use fewer, or target kubernetes",
         "fieldPath": ".resources.gpu.count"},
    ],
}  # fmt: skip

_DROP_KEYS = {"title", "additionalProperties"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Domain", "type": "string", "jsonPath": ".spec.domain"},
    {"name": "Epoch", "type": "string", "jsonPath": ".status.epochSummary", "description": "epoch/epochs"},
    {"name": "Val-Acc", "type": "string", "jsonPath": ".status.valAccuracySummary",
     "description": "Validation accuracy of the last epoch, 3 decimals"},
    {"name": "Attempts", "type": "integer", "jsonPath": ".status.attempts"},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1,
     "description": "Why the training is in its phase (-o wide)"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

PHASES = ["Pending", "Queued", "Running", "Retrying", "Succeeded", "Failed", "Suspended"]
CONDITION_TYPES = ["Ready", "Created", "Running", "Retrying", "Succeeded", "Failed", "Suspended", "Waiting"]


def _s(type_: str, description: str | None = None, **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"type": type_}
    if description:
        node["description"] = description
    node.update(extra)
    return node


def _ts(description: str) -> dict[str, Any]:
    return _s("string", description, format="date-time", nullable=True)


STATUS_SCHEMA: dict[str, Any] = _s(
    "object",
    "Observed state, written by the operator (and progress/lastCheckpoint by the trainer).",
    properties={
        "phase": _s("string", "Lifecycle phase.", enum=PHASES),
        "conditions": _s(
            "array",
            "Standard conditions; lastTransitionTime changes only when status changes. Ready is True "
            "once the training succeeded (kubectl wait --for=condition=Ready).",
            items=_s(
                "object",
                "One aspect of the training's state.",
                properties={
                    "type": _s("string", "Aspect: Created, Running, Retrying, Succeeded, Failed, Suspended, Waiting (why a pod has not started), Ready (summary).",
                               enum=CONDITION_TYPES),
                    "status": _s("string", "Whether the condition holds.", enum=["True", "False", "Unknown"]),
                    "reason": _s("string", "Machine-readable CamelCase reason of the last transition."),
                    "message": _s("string", "Human-readable details."),
                    "lastTransitionTime": _s("string", "When status last changed.", format="date-time"),
                    "observedGeneration": _s("integer", "metadata.generation this condition was set for.", minimum=0),
                },
                required=["type", "status"],
            ),
            **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        ),
        "attempts": _s("integer", "Attempts started so far.", minimum=0),
        "retries": _s("integer", "Failed attempts paid for with a retry (at most spec.retry.maxRetries).", minimum=0),
        "activeJob": _s("string", "Job of the current attempt (kubernetes target).", nullable=True),
        "epochSummary": _s("string", "epoch/epochs, for kubectl get."),
        "valAccuracySummary": _s("string", "progress.valAccuracy rounded to 3 decimals, for kubectl get."),
        "reason": _s("string", "Machine-readable reason of the current phase (e.g. OOMKilled while Retrying).",
                     nullable=True),
        "startTime": _ts("When the first attempt started."),
        "completionTime": _ts("When the training succeeded or finally failed."),
        "attemptStartTime": _ts("When the current attempt started."),
        "nextAttemptAt": _ts("When the next attempt starts (phase Retrying)."),
        "failureReason": _s("string", "Machine-readable reason of the last failure.", nullable=True),
        "reason": _s(
            "string",
            "What the current attempt waits for (Unschedulable, ImagePullBackOff, CreateContainerConfigError, "
            "UnboundPersistentVolumeClaim, PreviousAttemptTerminating, StartupTimeout …); null when it doesn't.",
            nullable=True,
        ),
        "message": _s("string", "Human-readable state.", nullable=True),
        "observedGeneration": _s("integer", "metadata.generation the operator last acted on."),
        "lastHandledConfiguration": _s(
            "string",
            "The operator's record of the last spec, labels and annotations it handled (JSON, kopf's "
            "diff base); a spec change is found by comparing with it. Internal: not for editing.",
        ),
        "lastCheckpoint": _s(
            "object",
            "Newest checkpoint written by the trainer.",
            properties={
                "epoch": _s("integer", "Epochs completed when it was written."),
                "path": _s("string", "Path on the checkpoint volume."),
                "time": _s("string", "When it was written.", format="date-time"),
            },
        ),
        "progress": _s(
            "object",
            "Per-epoch progress written by the trainer.",
            properties={
                "epoch": _s("integer", "Epochs completed."),
                "epochs": _s("integer", "Epochs planned."),
                "trainLoss": _s("number", "Training loss of the last epoch.", nullable=True),
                "valLoss": _s("number", "Validation loss of the last epoch.", nullable=True),
                "bestValLoss": _s("number", "Best validation loss so far (best.pt).", nullable=True),
                "valAccuracy": _s("number", "Validation accuracy of the last epoch (0-1).", nullable=True),
                "classAccuracy": _s("object", "Validation recall per class label (0-1).",
                                    additionalProperties=_s("number", "Recall of one class (0-1).")),
                "samplesPerSecond": _s("number", "Training throughput of the last epoch.", nullable=True),
                "updatedAt": _s("string", "When the trainer reported this epoch.", format="date-time"),
            },
        ),
        "result": _s("object", "The trainer's results.json summary.", **{"x-kubernetes-preserve-unknown-fields": True}),
        "costEstimate": _s(
            "object",
            "GPU-hours of all attempts and their price.",
            properties={
                "gpuHours": _s("number", "GPU-hours of all attempts so far."),
                "usd": _s("number", "gpuHours times the operator's price per GPU-hour."),
            },
        ),
        "gpuSeconds": _s("number", "GPU-seconds of finished attempts (basis of costEstimate)."),
        "modal": _s("object", "Modal call of the current attempt.", **{"x-kubernetes-preserve-unknown-fields": True}),
    },
)


def spec_schema() -> dict[str, Any]:
    """The structural openAPIV3Schema of ``spec``."""
    raw = NSMTrainingSpec.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, ())


def _convert(node: dict[str, Any], defs: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = copy.deepcopy(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**copy.deepcopy(target), **node}  # the field's description/default win
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"spec.{'.'.join(path)}: only Optional[X] unions are supported")
        inner = _convert(options[0], defs, path)
        node = {**inner, **node, "nullable": True}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS and not (key == "additionalProperties" and isinstance(value, dict)):
            continue  # a dict field's value schema stays: nodeSelector values are label values
        if key == "default" and value is None:
            continue
        if key == "properties":
            value = {k: _convert(v, defs, (*path, k)) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            value = _element(key, _convert(value, defs, path), path)
        elif key == "propertyNames":
            continue  # not in the CRD dialect; a key pattern arrives as patternProperties
        elif key == "patternProperties":
            # Not in the CRD dialect either: the value schema becomes additionalProperties and
            # the key pattern a CEL rule (map keys are label keys, at most 317 characters).
            ((pattern, inner),) = value.items()
            out["additionalProperties"] = _element("additionalProperties", _convert(inner, defs, path), path)
            rules = out.setdefault("x-kubernetes-validations", [])
            rules.append({"rule": f"self.all(k, k.matches({_cel_string(pattern)}))",
                          "message": "keys must be label keys ([prefix/]name)"})
            out["maxProperties"] = 64
            continue
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            value = True
        out[key] = value
    if path in QUANTITY_PATHS:
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        out["x-kubernetes-int-or-string"] = True
        out["minimum"] = 0  # the pattern checks strings only; `cpu: -4` is an integer
    rules = list(out.pop("x-kubernetes-validations", [])) + CROSS_FIELD_RULES.get(path, [])
    if path in IMMUTABLE_PATHS:
        rules.append({"rule": "self == oldSelf", "message": f"spec.{'.'.join(path)} is immutable"})
    if rules:
        out["x-kubernetes-validations"] = rules
    return _ordered(out)


def _element(key: str, node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """A list item's or map value's schema explains itself (`kubectl explain` shows it on its own)."""
    if "description" not in node:
        field = path[-1] if path else "spec"
        what = "One entry of" if key == "items" else "The value of one key of"
        node = _ordered({**node, "description": f"{what} {field}."})
    return node


def _cel_string(text: str) -> str:
    """``text`` as a CEL raw string literal."""
    if "'" in text:
        raise ValueError(f"pattern {text!r}: quotes are not supported in CEL raw strings here")
    return f"r'{text}'"


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    # Stable, readable key order: type first, then description, the rest sorted.
    head = [k for k in ("type", "description") if k in node]
    return {k: node[k] for k in head + sorted(k for k in node if k not in head)}


def crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object (a fresh copy: it embeds this module's schema
    constants, which a caller editing its CRD must not change for everyone else)."""
    return copy.deepcopy(_crd())


def _crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "nsm-operator", "app.kubernetes.io/part-of": "nsm-operator"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["nsm"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A training run of the Neural Symbolic Model.",
                            "properties": {
                                "apiVersion": _s("string", f"{API_GROUP}/{API_VERSION}."),
                                "kind": _s("string", f"{KIND}."),
                                # The API server rejects anything but the type here; kubectl
                                # explain shows ObjectMeta's own documentation.
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": STATUS_SCHEMA,
                            },
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                {
                                    "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                                    "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters "
                                    "(Job names are <name>-a<attempt>)",
                                },
                                {
                                    "rule": f"!has(self.spec.resources) || !has(self.spec.resources.nodes) "
                                    f"|| self.spec.resources.nodes == 1 || (size(self.metadata.name) <= "
                                    f"{MAX_MULTI_NODE_NAME_LENGTH} && self.metadata.name.matches('^[a-z]'))",
                                    "message": MULTI_NODE_NAME_MESSAGE,
                                },
                            ],
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated from nsm/spec.py by `nsm crd` (make crd). Do not edit by hand.\n"


def render_crd() -> str:
    """The CRD as the YAML text committed under charts/nsm-operator/crd/."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, default_flow_style=False, width=120)
