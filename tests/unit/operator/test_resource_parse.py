"""Training.from_body reuses the spec it parsed for the same object while the spec is unchanged,
and parses again on any change (in place too); the memo is bounded; invalid specs still raise."""

from __future__ import annotations

import copy

import pytest

from nsm.spec import parse_spec
from nsm_operator import resource
from nsm_operator.errors import InvalidSpec
from nsm_operator.resource import Training

BODY = {"metadata": {"name": "t", "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": {"domain": "kg", "epochs": 5, "resources": {"gpu": {"count": 1}}}}  # fmt: skip


def test_an_unchanged_spec_is_parsed_once():
    first = Training.from_body(copy.deepcopy(BODY))
    echo = copy.deepcopy(BODY)
    echo["status"] = {"phase": "Running"}
    again = Training.from_body(echo)
    assert again.spec is first.spec
    assert again.spec == parse_spec(copy.deepcopy(BODY["spec"]))


@pytest.mark.parametrize("change", ["value", "nested", "in place", "other object"])
def test_a_changed_spec_is_parsed_again(change):
    body = copy.deepcopy(BODY)
    first = Training.from_body(body)
    if change == "value":
        body = copy.deepcopy(body)
        body["spec"]["epochs"] = 7
    elif change == "nested":
        body = copy.deepcopy(body)
        body["spec"]["resources"]["gpu"]["count"] = 2
    elif change == "in place":
        body["spec"]["resources"]["gpu"]["count"] = 2  # the very dict that was parsed
    else:
        body = copy.deepcopy(body)
        body["metadata"]["uid"] = "u-2"  # deleted and re-created under the same name
    again = Training.from_body(body)
    assert again.spec == parse_spec(copy.deepcopy(body["spec"]))
    assert again.spec is not first.spec


def test_an_invalid_spec_raises_every_time():
    bad = copy.deepcopy(BODY)
    bad["metadata"]["uid"] = "u-bad"
    bad["spec"]["epochs"] = -1
    for _ in range(2):
        with pytest.raises(InvalidSpec, match="epochs"):
            Training.from_body(bad)


def test_the_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(resource._PARSED, "size", 3)
    for i in range(10):
        body = copy.deepcopy(BODY)
        body["metadata"].update(name=f"t{i}", uid=f"u-{i}")
        Training.from_body(body)
    assert len(resource._PARSED) <= 3
