"""WireMemo: one computation per key while the input serialises the same (diffbase and resource use it)."""

from __future__ import annotations

import pytest

from nsm_operator.memo import WireMemo


def counting():
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    return calls, compute


def test_reused_while_the_input_is_the_same_recomputed_when_it_changes():
    memo, (calls, compute) = WireMemo(4), counting()
    raw = {"a": [1, 2]}
    assert memo.get("k", raw, compute) == memo.get("k", {"a": [1, 2]}, compute) == 1
    raw["a"].append(3)  # the very input, changed in place
    assert memo.get("k", raw, compute) == 2 and len(calls) == 2


@pytest.mark.parametrize(("size", "key", "raw"), [(0, "k", {"a": 1}), (4, None, {"a": 1}), (4, "k", {1: object()})])
def test_nothing_kept_without_room_key_or_json(size, key, raw):
    memo, (calls, compute) = WireMemo(size), counting()
    memo.get(key, raw, compute)
    memo.get(key, raw, compute)
    assert len(calls) == 2 and len(memo) == 0


def test_a_raising_computation_keeps_nothing():
    memo = WireMemo(4)

    def boom():
        raise ValueError("bad")

    for _ in range(2):
        with pytest.raises(ValueError):
            memo.get("k", {"a": 1}, boom)
    assert len(memo) == 0


def test_an_entry_keeps_a_digest_of_the_input_not_the_input():
    memo, (calls, compute) = WireMemo(4), counting()
    big = {"spec": "x" * 10_000}
    memo.get("k", big, compute)
    (kept, value), = memo._entries.values()
    assert len(kept) == 32 and value == 1  # SHA-256: an entry's size does not grow with its input
    assert memo.get("k", {"spec": "x" * 10_000}, compute) == 1 and memo.get("k", {"spec": "y"}, compute) == 2
