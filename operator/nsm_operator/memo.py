"""A bounded memo of values computed from an object's JSON input, kept while the input stays the same.

The operator's watch events repeat an object's spec many times (every status echo, Job and pod
event of a training): what is derived from it only (kopf's diff-base essence, the parsed spec) is
computed once per object and reused while the input serialises to the same bytes. What is kept
of the input is the SHA-256 of those bytes (32 bytes, not a copied tree nor the few kilobytes of
a defaulted spec: under a burst the memos hold an entry per training), so an in-place change of
the very dict that was seen is noticed too.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import orjson

V = TypeVar("V")


class WireMemo(Generic[V]):
    """Per key, the value computed from an input and the digest of that input's JSON; ``size``
    keys at most, least recently used first out (0: nothing is kept)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[bytes, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable | None, raw: Any, compute: Callable[[], V]) -> V:
        """``compute()``, or what it gave for ``key`` while ``raw`` serialises as it did then. A
        None key or an input that is not plain JSON is computed every time; what ``compute``
        raises is raised and nothing is kept."""
        try:
            digest = hashlib.sha256(orjson.dumps(raw)).digest() if key is not None and self.size > 0 else None
        except TypeError:
            digest = None
        hit = self._entries.get(key) if digest is not None else None
        if hit is not None and hit[0] == digest:
            self._entries.move_to_end(key)
            return hit[1]
        value = compute()
        if digest is not None:
            self._entries[key] = (digest, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value
