import pytest

from nsm.cli import main
from nsm.cli.validate import format_table, judge


def test_judge():
    assert judge([0.9, 0.7], 0.6) == (False, True)
    assert judge([0.9, 0.55], 0.6) == (False, False)
    assert judge([1.0, 0.0], 0.6) == (True, False)
    assert judge([], 0.6) == (True, False)


def test_table_lists_every_column():
    row = {"domain": "kg", "val_balanced_accuracy": 0.81, "val_per_class_accuracy": [0.8, 0.82],
           "class_collapse": False, "verdict": "PASS", "best_baseline": "size_only",
           "best_baseline_accuracy": 0.53, "test_accuracy": 0.79, "margin": 0.26, "seconds": 12.0}
    table = format_table([row])
    assert "best val bal.acc" in table.splitlines()[0]
    assert "kg" in table and "0.800 / 0.820" in table and "PASS" in table and "size_only 0.530" in table
    assert "+0.260" in table


def test_validate_runs_and_exit_code_follows_the_verdict(tiny_model, data_cache, capsys):
    rc = main(["validate", "--domain", "causal", "--epochs", "1", "--scale", "0.1",
               "--data-cache", str(data_cache)])
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith("causal")][0]
    assert ("PASS" in row) == (rc == 0) and ("FAIL" in row) == (rc == 1)
    assert "domains passed" in out


def test_baselines_table(data_cache, capsys):
    assert main(["baselines", "--domain", "causal", "--validation-sizes", "--data-cache", str(data_cache)]) == 0
    out = capsys.readouterr().out
    # The typed-walk columns were added in issue #13; the shortcut columns are unchanged.
    assert out.splitlines()[0].split() == ["domain", "graphs", "majority", "size_only", "bag_of_relations",
                                           "walk_d1", "walk_d2", "walk_d3", "walk_d4", "time"]
    row = out.splitlines()[1].split()
    assert row[0] == "causal"
    assert all(float(v) <= 0.6 for v in row[2:5])  # shortcuts stay near chance
    assert row[7].endswith("*") and float(row[7].rstrip("*")) >= 0.95  # depth 3 reads causal's rule
