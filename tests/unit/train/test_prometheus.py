import math
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from nsm.train.prometheus import GAUGES, TrainerMetrics

EXPECTED = {
    "nsm_training_epoch", "nsm_training_epochs_planned", "nsm_training_train_loss",
    "nsm_training_val_loss", "nsm_training_best_val_loss", "nsm_training_train_accuracy",
    "nsm_training_val_accuracy", "nsm_training_class_accuracy", "nsm_training_cycle_loss",
    "nsm_training_learning_rate", "nsm_training_samples_per_second", "nsm_training_class_collapse",
    "nsm_training_last_checkpoint_timestamp_seconds", "nsm_training_checkpoint_age_seconds",
    "nsm_training_epoch_duration_seconds", "nsm_training_info",
}

ROW = {
    "epoch": 3, "train_loss": 0.5, "val_loss": 0.6, "train_accuracy": 0.8, "val_accuracy": 0.75,
    "val_per_class_accuracy": [0.7, 0.8], "val_cycle_loss_l1": 0.1, "val_cycle_loss_l2": 0.2,
    "lr": 1e-3, "samples_per_second": 123.0, "val_class_collapse": False, "epoch_seconds": 2.5,
}


def scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_endpoint_serves_the_exact_names_and_labels():
    m = TrainerMetrics("causal-prod", "causal", epochs_planned=10, attempt="2", device="cpu")
    port = m.serve(0, addr="127.0.0.1")
    try:
        before = scrape(port)
        assert math.isnan(before["nsm_training_checkpoint_age_seconds"][0].value)
        m.observe_epoch(ROW, best_val_loss=0.55)
        m.checkpoint_written(time.time() - 30)
        families = scrape(port)
    finally:
        m.close()
    assert set(families) == EXPECTED == set(GAUGES)
    for name, samples in families.items():
        assert samples, name
        for s in samples:
            assert s.name == name  # gauges: no _total/_created suffixes
            assert s.labels["training"] == "causal-prod" and s.labels["domain"] == "causal"

    def value(name, **labels):
        (s,) = [s for s in families[name] if all(s.labels.get(k) == v for k, v in labels.items())]
        return s.value

    assert value("nsm_training_epoch") == 3
    assert value("nsm_training_epochs_planned") == 10
    assert value("nsm_training_best_val_loss") == 0.55
    assert value("nsm_training_class_accuracy", **{"class": "1"}) == 0.8
    assert value("nsm_training_cycle_loss", level="l2") == 0.2
    assert value("nsm_training_class_collapse") == 0
    assert value("nsm_training_info", attempt="2", device="cpu") == 1
    assert 29 <= value("nsm_training_checkpoint_age_seconds") < 60


def test_two_trainers_in_one_process_do_not_clash():
    a = TrainerMetrics("a", "causal", epochs_planned=1)
    b = TrainerMetrics("b", "kg", epochs_planned=2)
    assert a.registry is not b.registry
    assert b.registry.get_sample_value("nsm_training_epochs_planned", {"training": "b", "domain": "kg"}) == 2
