"""Where a training's pod runs and what it sees: ``spec.scheduling``, ``spec.env``, ``spec.envFrom``.

The models have the shapes of the Kubernetes API types they stand for (``core/v1`` Toleration,
Affinity, EnvVar, EnvFromSource, LocalObjectReference), camelCase on the wire, so a user copies
them from a pod spec unchanged. Every name and label field carries the API server's own pattern,
and every cross-field rule is written twice: as a pydantic check (CLI, operator) and as a CEL
``x-kubernetes-validations`` rule in the model's JSON schema, which ``nsm crd`` copies into the
CRD. So a bad value is rejected at ``kubectl apply``, naming the field, instead of by the API
server when the operator creates the Job.

Two deliberate restrictions:

- Secrets reach the trainer by reference only (``valueFrom.secretKeyRef``, ``envFrom.secretRef``);
  ``value`` is for plain settings. ``NSM_*`` names are the operator's (the trainer contract) and
  are rejected.
- ``affinity`` is fully typed except ``podAffinityTerm.labelSelector``/``namespaceSelector``,
  which are LabelSelectors (typed too, ``matchLabels`` + ``matchExpressions``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from nsm.contract import MASTER_ADDR_ENV, MASTER_PORT_ENV, NODE_RANK_ENV

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_KEY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
RESERVED_ENV_PREFIX = "NSM_"
"""Environment names the operator sets itself (the trainer contract); users may not."""
RESERVED_ENV_NAMES = (MASTER_ADDR_ENV, MASTER_PORT_ENV, NODE_RANK_ENV)
"""The distributed rendezvous and node rank: set by the operator and the Job controller; a user's
value would point the ranks elsewhere."""

# An OCI image reference (distribution's grammar): [registry[:port]/]path[:tag][@digest].
_HOST = r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*(:[0-9]+)?"
_PATH = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = rf"^({_HOST}/)?{_PATH}(/{_PATH})*(:{_TAG})?(@{_DIGEST})?$"

Dns1123Subdomain = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=317, pattern=LABEL_KEY)]
ImageReference = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=IMAGE_REFERENCE)]
EnvName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=ENV_NAME)]


def _cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules into the CRD (``rule``, ``message``)."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


class KubeModel(BaseModel):
    """A Kubernetes-shaped model: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The API object as a pod spec carries it (unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _given(model: BaseModel, *names: str) -> list[str]:
    return [to_camel(n) for n in names if getattr(model, n) is not None]


class Toleration(KubeModel):
    """core/v1 Toleration."""

    model_config = ConfigDict(json_schema_extra=_cel(
        ("self.operator != 'Exists' || !has(self.value) || self.value == ''",
         "value must be empty when operator is Exists"),
        ("has(self.key) && self.key != '' || self.operator == 'Exists'",
         "operator must be Exists when key is empty"),
        ("!has(self.tolerationSeconds) || has(self.effect) && self.effect == 'NoExecute'",
         "tolerationSeconds applies only to effect NoExecute"),
    ))  # fmt: skip

    key: LabelKey | None = Field(None, description="Taint key; empty with operator Exists tolerates every taint.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: LabelValue | None = Field(None, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches every effect."
    )
    toleration_seconds: int | None = Field(
        None, ge=0, description="NoExecute only: seconds the pod stays bound after the taint appears."
    )

    @model_validator(mode="after")
    def _rules(self) -> "Toleration":
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        if not self.key and self.operator != "Exists":
            raise ValueError("operator must be Exists when key is empty")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies only to effect NoExecute")
        return self


class _Requirement(KubeModel):
    """A requirement whose operator decides whether ``values`` may be empty."""

    key: LabelKey = Field(description="Label key the requirement applies to.")
    values: list[LabelValue] | None = Field(None, max_length=256, description="Values (In, NotIn; one integer for Gt, Lt).")

    @model_validator(mode="after")
    def _values_match_operator(self) -> "_Requirement":
        needs = self.operator in ("In", "NotIn", "Gt", "Lt")  # type: ignore[attr-defined]
        if needs and not self.values:
            raise ValueError(f"values must be non-empty for operator {self.operator}")  # type: ignore[attr-defined]
        if not needs and self.values:
            raise ValueError(f"values must be empty for operator {self.operator}")  # type: ignore[attr-defined]
        if self.operator in ("Gt", "Lt") and (len(self.values or []) != 1 or not self.values[0].isdigit()):  # type: ignore[attr-defined,index]
            raise ValueError(f"operator {self.operator} needs exactly one integer value")  # type: ignore[attr-defined]
        return self


_VALUES_RULES = (
    ("self.operator in ['Exists', 'DoesNotExist'] ? (!has(self.values) || size(self.values) == 0)"
     " : (has(self.values) && size(self.values) > 0)",
     "values must be non-empty for In/NotIn/Gt/Lt and empty for Exists/DoesNotExist"),
)  # fmt: skip


class NodeSelectorRequirement(_Requirement):
    """core/v1 NodeSelectorRequirement."""

    model_config = ConfigDict(json_schema_extra=_cel(*_VALUES_RULES, (
        "!(self.operator in ['Gt', 'Lt']) || size(self.values) == 1 && self.values[0].matches('^[0-9]+$')",
        "operator Gt/Lt needs exactly one integer value")))  # fmt: skip

    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(description="Set operator.")


class LabelSelectorRequirement(_Requirement):
    """meta/v1 LabelSelectorRequirement."""

    model_config = ConfigDict(json_schema_extra=_cel(*_VALUES_RULES))

    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="Set operator.")


class NodeSelectorTerm(KubeModel):
    """core/v1 NodeSelectorTerm (its requirements are ANDed)."""

    match_expressions: list[NodeSelectorRequirement] | None = Field(
        None, max_length=64, description="Requirements on node labels."
    )
    match_fields: list[NodeSelectorRequirement] | None = Field(
        None, max_length=64, description="Requirements on node fields."
    )


class NodeSelector(KubeModel):
    """core/v1 NodeSelector (its terms are ORed)."""

    node_selector_terms: list[NodeSelectorTerm] = Field(min_length=1, max_length=64, description="Terms; any one must match.")


class PreferredSchedulingTerm(KubeModel):
    weight: int = Field(ge=1, le=100, description="Weight of this preference, 1-100.")
    preference: NodeSelectorTerm = Field(description="Nodes the scheduler prefers.")


class NodeAffinity(KubeModel):
    """core/v1 NodeAffinity."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        None, description="Nodes the pod may run on."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = Field(
        None, max_length=64, description="Nodes the pod prefers."
    )


class LabelSelector(KubeModel):
    """meta/v1 LabelSelector."""

    match_labels: dict[LabelKey, LabelValue] | None = Field(None, description="Labels that must all match.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(None, max_length=64, description="Requirements, ANDed.")


class PodAffinityTerm(KubeModel):
    """core/v1 PodAffinityTerm."""

    label_selector: LabelSelector | None = Field(None, description="Pods this term is about.")
    namespaces: list[Dns1123Subdomain] | None = Field(None, max_length=64, description="Namespaces of those pods.")
    namespace_selector: LabelSelector | None = Field(None, description="Namespaces of those pods, by label.")
    topology_key: LabelKey = Field(description="Node label whose value defines 'the same place'.")


class WeightedPodAffinityTerm(KubeModel):
    weight: int = Field(ge=1, le=100, description="Weight of this preference, 1-100.")
    pod_affinity_term: PodAffinityTerm = Field(description="The term.")


class PodAffinity(KubeModel):
    """core/v1 PodAffinity (and PodAntiAffinity: the same shape)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        None, max_length=64, description="Terms that must hold."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = Field(
        None, max_length=64, description="Terms the scheduler prefers."
    )


class Affinity(KubeModel):
    """core/v1 Affinity. A ``nodeAffinity`` here replaces the operator's GPU product affinity."""

    node_affinity: NodeAffinity | None = Field(None, description="Node affinity (replaces the GPU product term).")
    pod_affinity: PodAffinity | None = Field(None, description="Pod affinity.")
    pod_anti_affinity: PodAffinity | None = Field(None, description="Pod anti-affinity.")


class LocalObjectReference(KubeModel):
    name: Dns1123Subdomain = Field(description="Name of the object in the training's namespace.")


class SchedulingSpec(KubeModel):
    """Placement of the trainer pod, merged over the operator's defaults (settings/chart)."""

    node_selector: dict[LabelKey, LabelValue] | None = Field(None, description="Node labels the pod requires.")
    tolerations: list[Toleration] | None = Field(
        None, max_length=64, description="Taints the pod tolerates (added to the defaults)."
    )
    affinity: Affinity | None = Field(None, description="Affinity; nodeAffinity replaces the GPU product affinity.")
    priority_class_name: Dns1123Subdomain | None = Field(None, description="PriorityClass of the pod.")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        None, max_length=16, description="Secrets (names) to pull the trainer image with."
    )


class KeyRef(KubeModel):
    """core/v1 SecretKeySelector / ConfigMapKeySelector."""

    name: Dns1123Subdomain = Field(description="Name of the Secret or ConfigMap.")
    key: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = Field(
        description="Key in it."
    )
    optional: bool | None = Field(None, description="Start the pod even if the object or key is missing.")


class EnvVarSource(KubeModel):
    """core/v1 EnvVarSource, restricted to Secret and ConfigMap keys."""

    model_config = ConfigDict(json_schema_extra=_cel(
        ("has(self.secretKeyRef) != has(self.configMapKeyRef)",
         "exactly one of secretKeyRef, configMapKeyRef"),
    ))  # fmt: skip

    secret_key_ref: KeyRef | None = Field(None, description="A key of a Secret.")
    config_map_key_ref: KeyRef | None = Field(None, description="A key of a ConfigMap.")

    @model_validator(mode="after")
    def _one(self) -> "EnvVarSource":
        if len(_given(self, "secret_key_ref", "config_map_key_ref")) != 1:
            raise ValueError("exactly one of secretKeyRef, configMapKeyRef")
        return self


class EnvVar(KubeModel):
    """core/v1 EnvVar: a plain ``value`` or a reference (``valueFrom``), never both."""

    model_config = ConfigDict(json_schema_extra=_cel(
        ("!(has(self.value) && has(self.valueFrom))", "value and valueFrom are mutually exclusive"),
        (f"!self.name.startsWith('{RESERVED_ENV_PREFIX}')",
         f"{RESERVED_ENV_PREFIX}* variables are set by the operator"),
        (f"!(self.name in {list(RESERVED_ENV_NAMES)})",
         f"{', '.join(RESERVED_ENV_NAMES)} are set by the operator (distributed rendezvous, node rank)"),
    ))  # fmt: skip

    name: EnvName = Field(description="Variable name.")
    value: str | None = Field(None, max_length=32768, description="Plain value (never a secret: use valueFrom).")
    value_from: EnvVarSource | None = Field(None, description="Value from a Secret or ConfigMap key.")

    @model_validator(mode="after")
    def _rules(self) -> "EnvVar":
        if self.value is not None and self.value_from is not None:
            raise ValueError("value and valueFrom are mutually exclusive")
        if self.name.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(f"{self.name}: {RESERVED_ENV_PREFIX}* variables are set by the operator")
        if self.name in RESERVED_ENV_NAMES:
            raise ValueError(f"{self.name}: {', '.join(RESERVED_ENV_NAMES)} are set by the operator "
                             "(distributed rendezvous, node rank)")
        return self


class EnvFromRef(KubeModel):
    name: Dns1123Subdomain = Field(description="Name of the Secret or ConfigMap.")
    optional: bool | None = Field(None, description="Start the pod even if it is missing.")


class EnvFromSource(KubeModel):
    """core/v1 EnvFromSource: every key of one Secret or ConfigMap."""

    model_config = ConfigDict(json_schema_extra=_cel(
        ("has(self.secretRef) != has(self.configMapRef)", "exactly one of secretRef, configMapRef"),
        (f"!has(self.prefix) || !self.prefix.startsWith('{RESERVED_ENV_PREFIX}')",
         f"prefix: {RESERVED_ENV_PREFIX}* variables are set by the operator"),
    ))  # fmt: skip

    prefix: EnvName | None = Field(None, description="Prefix of every variable name.")
    secret_ref: EnvFromRef | None = Field(None, description="A Secret.")
    config_map_ref: EnvFromRef | None = Field(None, description="A ConfigMap.")

    @model_validator(mode="after")
    def _one(self) -> "EnvFromSource":
        if len(_given(self, "secret_ref", "config_map_ref")) != 1:
            raise ValueError("exactly one of secretRef, configMapRef")
        if self.prefix and self.prefix.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(f"prefix {self.prefix}: {RESERVED_ENV_PREFIX}* variables are set by the operator")
        return self


def _unique_names(env: list[EnvVar]) -> list[EnvVar]:
    seen: set[str] = set()
    for var in env:
        if var.name in seen:
            raise ValueError(f"duplicate variable {var.name}")
        seen.add(var.name)
    return env


EnvList = Annotated[list[EnvVar], AfterValidator(_unique_names)]
"""``spec.env``: names unique (the CRD says so with ``x-kubernetes-list-type: map``)."""
