"""The trainer/operator contract (nsm.contract) and the quantity grammar (nsm.quantity)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from nsm.contract import (
    NON_RETRYABLE_EXIT_CODES, ExitCode, exit_code_of, iso, is_retryable, json_safe, parse_time, reason_of,
)  # fmt: skip
from nsm.quantity import QUANTITY_PATTERN, parse_quantity

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "charts/nsm-operator/crd/nsm.dev_nsmtrainings.yaml"


def test_exit_code_table():
    assert NON_RETRYABLE_EXIT_CODES == (2, 3)
    assert (reason_of(2), reason_of(3), reason_of(143)) == ("InvalidSpec", "Diverged", "Preempted")
    assert ExitCode.PREEMPTED == 143 == 128 + 15 and is_retryable(ExitCode.PREEMPTED)
    assert is_retryable(1) and is_retryable(None) and is_retryable(137)
    assert not is_retryable(2) and not is_retryable(3)
    assert reason_of(1) is None and reason_of(None) is None
    for code in (2, 3, 130, 143):
        assert exit_code_of(reason_of(code)) == code
    assert exit_code_of("Error") is None and exit_code_of(None) is None


def test_times_and_json():
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert iso(t) == "2026-01-02T03:04:05Z" == iso(t.timestamp())
    # Other offsets are converted to UTC; microseconds are dropped; the year is four digits.
    assert iso(datetime(2026, 1, 2, 5, 4, 5, 999999, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-02T03:04:05Z"
    assert iso(datetime(999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)) == "0999-12-31T23:59:59Z"
    naive = t.replace(tzinfo=None)  # local time, as datetime.astimezone reads it
    assert iso(naive) == naive.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert parse_time(iso(t)) == t == parse_time(t.timestamp()) == parse_time(t.replace(tzinfo=None))
    assert parse_time("") is None and parse_time(None) is None and parse_time(True) is None
    assert json_safe({"a": [float("nan"), 1.5, (float("inf"),)], 2: {"b": 1}}) == {"a": [None, 1.5, [None]], "2": {"b": 1}}


def test_contract_does_not_import_torch():
    code = "import sys, nsm.contract, nsm.spec; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


GOOD = ["4", "500m", "0.5", ".5", "2.", "16Gi", "1e3", "1E-3", "+2", "100k", "1.5Gi", "0"]
BAD = ["1..2", ".", "4Gi2", "-4", "", "Gi", "1e", "4 ", "4GiB", "1.2.3", "4K", "0x10"]


@pytest.mark.parametrize("text", GOOD)
def test_good_quantities(text):
    assert re.match(QUANTITY_PATTERN, text)
    parse_quantity(text)


@pytest.mark.parametrize("text", BAD)
def test_bad_quantities(text):
    assert not re.match(QUANTITY_PATTERN, text)
    with pytest.raises(ValueError, match="spec.x: .* is not a Kubernetes quantity"):
        parse_quantity(text, "spec.x")


def test_quantity_values():
    assert parse_quantity("500m") == Decimal("0.5") and parse_quantity("16Gi") == 16 * 2**30
    assert parse_quantity("1e3") == 1000 and parse_quantity(4) == 4 and parse_quantity("+2k") == 2000


def _crd_quantity_nodes():
    spec = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec["properties"]
    return {"cpu": props["resources"]["properties"]["cpu"], "memory": props["resources"]["properties"]["memory"],
            "size": props["checkpoint"]["properties"]["storage"]["properties"]["size"]}  # fmt: skip


@pytest.mark.parametrize("field", ["cpu", "memory", "size"])
def test_crd_schema_uses_the_strict_grammar(field):
    """The API server rejects what the CRD's pattern (strings) and minimum (integers) reject;
    tests/e2e/operator applies the same bad values to a real API server."""
    node = _crd_quantity_nodes()[field]
    assert node["pattern"] == QUANTITY_PATTERN and node["minimum"] == 0 and node["x-kubernetes-int-or-string"]
    for bad in ("1..2", ".", "4Gi2", "-4"):
        assert not re.match(node["pattern"], bad)
