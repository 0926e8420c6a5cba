"""nsm.spec: defaults per domain, field-named errors, YAML loading."""

from __future__ import annotations

import textwrap

import pytest

from nsm.spec import (
    DOMAIN_DEFAULTS,
    Domain,
    NSMTrainingSpec,
    RetrySpec,
    SpecError,
    load_training,
    parse_spec,
    parse_training,
)


@pytest.mark.parametrize(
    "domain, cycle, pool, params",
    [
        ("planning", 0.01, 0.5, {"num_problems": 2858}),
        ("causal", 0.01, 0.5, {"num_scenarios": 1000}),
        ("kg", 0.05, 0.13, {"num_entities": 200, "num_triples": 2500}),
    ],
)
def test_domain_defaults_are_the_seed_production_values(domain, cycle, pool, params):
    spec = parse_spec({"domain": domain})
    assert spec.cycle_weight == cycle
    assert spec.pool_ratio == pool
    assert spec.dataset_params() == params


def test_explicit_values_win_over_domain_defaults():
    spec = parse_spec({"domain": "kg", "cycleWeight": 0.2, "poolRatio": 0.4, "dataset": {"numEntities": 50}})
    assert (spec.cycle_weight, spec.pool_ratio) == (0.2, 0.4)
    assert spec.dataset_params() == {"num_entities": 50, "num_triples": 2500}


def test_dataset_tier_is_validated_and_reaches_the_generator_params():
    assert parse_spec({"domain": "causal"}).dataset.tier.value == "standard"
    deep = parse_spec({"domain": "planning", "dataset": {"tier": "deep"}})
    assert deep.dataset_params() == {"num_problems": 2858, "tier": "deep"}
    assert deep.to_wire()["dataset"]["tier"] == "deep"
    with pytest.raises(SpecError, match=r"spec\.dataset\.tier"):
        parse_spec({"domain": "kg", "dataset": {"tier": "deeper"}})


def test_design_defaults():
    spec = parse_spec({"domain": "causal"})
    # learningRate was the seed's 1e-4 until issue #13 (planning stayed on the plateau for some seeds).
    assert (spec.epochs, spec.batch_size, spec.learning_rate, spec.seed) == (100, 64, 1e-3, 42)
    assert spec.optimization.tf32 and not spec.optimization.amp
    assert spec.optimization.gradient_clip == 1.0
    assert spec.early_stopping.patience == 20
    assert (spec.checkpoint.every_epochs, spec.checkpoint.keep) == (10, 3)
    assert spec.data_loader.model_dump() == {
        # null: one worker per CPU the trainer may use, at most 4 (nsm.train.loaders.default_num_workers).
        "num_workers": None, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 2,
    }
    assert spec.resources.gpu.product.value == "A100-40GB"
    assert (spec.retry.max_retries, spec.retry.backoff_coefficient, spec.retry.initial_delay_seconds) == (2, 2.0, 60.0)
    assert spec.timeout_seconds == 7200


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"domain": "chess"}, "spec.domain"),
        ({"domain": "causal", "epochs": 0}, "spec.epochs"),
        ({"domain": "causal", "poolRatio": 1.5}, "spec.poolRatio"),
        ({"domain": "causal", "poolRatio": 0}, "spec.poolRatio"),
        ({"domain": "causal", "learningRate": -1}, "spec.learningRate"),
        ({"domain": "causal", "batchSize": 0}, "spec.batchSize"),
        ({"domain": "causal", "retry": {"backoffCoefficient": 0.5}}, "spec.retry.backoffCoefficient"),
        ({"domain": "causal", "resources": {"memory": "lots"}}, "spec.resources.memory"),
        ({"domain": "causal", "resources": {"gpu": {"product": "GTX-480"}}}, "spec.resources.gpu.product"),
        ({"domain": "causal", "dataLoader": {"prefetchFactor": 0}}, "spec.dataLoader.prefetchFactor"),
        ({"domain": "causal", "bogus": 1}, "spec.bogus"),
    ],
)
def test_bad_values_name_the_field(spec, field):
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert any(loc == field for loc, _ in err.value.problems), err.value.problems
    assert field in str(err.value)


def test_dataset_parameters_of_another_domain_are_refused():
    with pytest.raises(SpecError, match=r"dataset\.numScenarios does not apply to domain 'planning'"):
        parse_spec({"domain": "planning", "dataset": {"numScenarios": 100}})


def test_quantities_accept_yaml_numbers():
    spec = parse_spec({"domain": "kg", "resources": {"cpu": 4, "memory": "8Gi"}})
    assert spec.resources.cpu == "4"


def test_wire_round_trip_is_camel_case_and_stable():
    spec = parse_spec({"domain": "causal", "optimization": {"lrSchedule": "cosine"}})
    wire = spec.to_wire()
    assert wire["batchSize"] == 64 and wire["optimization"]["lrSchedule"] == "cosine"
    assert NSMTrainingSpec.model_validate(wire) == spec


@pytest.mark.parametrize("attempt, expected", [(1, 60.0), (2, 120.0), (3, 240.0), (20, 3600.0)])
def test_retry_delay_is_capped_exponential(attempt, expected):
    assert RetrySpec().delay(attempt) == expected


def test_retry_max_delay_below_initial_is_refused():
    with pytest.raises(SpecError, match="maxDelaySeconds"):
        parse_spec({"domain": "kg", "retry": {"initialDelaySeconds": 10, "maxDelaySeconds": 5}})


def test_load_training_reads_the_nsmtraining_document(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Namespace
        metadata: {name: ml}
        ---
        apiVersion: nsm.dev/v1alpha1
        kind: NSMTraining
        metadata: {name: causal-prod, namespace: ml}
        spec:
          domain: causal
          epochs: 5
        status: {phase: Running}
        """))
    training = load_training(path)
    assert training.metadata.name == "causal-prod"
    assert training.spec.domain is Domain.causal and training.spec.epochs == 5


def test_bad_metadata_name_is_named():
    with pytest.raises(SpecError, match="metadata.name"):
        parse_training({"metadata": {"name": "Not_DNS"}, "spec": {"domain": "kg"}})


def test_not_yaml_is_a_spec_error(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("spec: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_training(path)


def test_every_domain_has_defaults():
    assert set(DOMAIN_DEFAULTS) == set(Domain)


def test_nodes_default_one_and_bounded():
    assert parse_spec({"domain": "causal"}).resources.nodes == 1
    spec = parse_spec({"domain": "causal", "resources": {"nodes": 4, "gpu": {"count": 8}}})
    assert (spec.resources.nodes, spec.resources.total_gpus) == (4, 32)
    for bad in (0, 65, -1):
        with pytest.raises(SpecError, match=r"spec\.resources\.nodes"):
            parse_spec({"domain": "causal", "resources": {"nodes": bad}})


def test_nodes_on_cpu_are_allowed():
    """gloo runs over TCP between pods: several CPU pods are a real (if slow) distributed run."""
    spec = parse_spec({"domain": "causal", "resources": {"nodes": 2, "gpu": {"count": 0}}})
    assert spec.resources.total_gpus == 0


def test_modal_takes_one_container_within_its_gpu_limits():
    with pytest.raises(SpecError, match=r"resources\.nodes must be 1 with target modal: .*one container per attempt"):
        parse_spec({"domain": "causal", "target": "modal", "resources": {"nodes": 2}})
    with pytest.raises(SpecError, match=r"resources\.gpu\.count: Modal attaches at most 8 H100 GPUs .*got 9"):
        parse_spec({"domain": "causal", "target": "modal", "resources": {"gpu": {"count": 9, "product": "H100"}}})
    with pytest.raises(SpecError, match=r"resources\.gpu\.count: Modal attaches at most 4 A10G GPUs .*got 5"):
        parse_spec({"domain": "causal", "target": "modal", "resources": {"gpu": {"count": 5, "product": "A10G"}}})
    for product, limit in (("A10G", 4), ("T4", 8), ("L4", 8), ("L40S", 8), ("A100-40GB", 8), ("A100-80GB", 8),
                           ("H100", 8), ("H200", 8), ("B200", 8)):
        gpu = {"count": limit, "product": product}
        assert parse_spec({"domain": "causal", "target": "modal", "resources": {"gpu": gpu}}).resources.gpu.count == limit
    # The limits are Modal's: the Kubernetes target takes up to 16 GPUs and several nodes.
    spec = parse_spec({"domain": "causal", "resources": {"nodes": 2, "gpu": {"count": 16, "product": "A10G"}}})
    assert spec.resources.total_gpus == 32


def test_a_multi_node_trainings_name_fits_its_hostnames_and_service():
    def training(name: str, nodes: int) -> dict:
        return {"metadata": {"name": name}, "spec": {"domain": "causal", "resources": {"nodes": nodes}}}

    assert parse_training(training("n" * 52, 2)).metadata.name == "n" * 52
    assert parse_training(training("1abc", 1)).metadata.name == "1abc"  # one node: no Service, no hostnames
    for bad in ("n" * 53, "1abc"):
        with pytest.raises(SpecError, match=r"metadata\.name of a training with spec\.resources\.nodes > 1 must start "
                                            r"with a letter and have at most 52 characters"):
            parse_training(training(bad, 2))
