"""Kubernetes resource quantities (``4``, ``500m``, ``16Gi``, ``1e3``): one grammar for the spec,
the CRD and the Modal mapping.

The grammar is the API server's (``k8s.io/apimachinery/pkg/api/resource``)::

    quantity ::= sign? number suffix?
    number   ::= digits | digits "." digits? | "." digits
    suffix   ::= Ki | Mi | Gi | Ti | Pi | Ei | n | u | m | k | M | G | T | P | E | (e|E) sign? digits

The spec's quantities (cpu, memory, PVC size) are requests, so no sign is allowed but ``+``:
``1..2``, ``.``, ``4Gi2`` and ``-4`` are rejected by pydantic and, through the same pattern, by
the API server at ``kubectl apply``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, StringConstraints

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_SUFFIX = r"(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)"
QUANTITY_PATTERN = rf"^\+?{_NUMBER}{_SUFFIX}?$"
"""A non-negative Kubernetes quantity (the CRD's ``pattern`` and pydantic's)."""

_PARTS = re.compile(rf"^\+?({_NUMBER})(?:([KMGTPE]i|[numkMGTPE])|[eE]([+-]?[0-9]+))?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}  # fmt: skip


def _from_yaml(value: Any) -> Any:
    # YAML turns `cpu: 4` into an int; the API server's int-or-string does the same.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


Quantity = Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN), BeforeValidator(_from_yaml)]
"""A spec field holding a non-negative Kubernetes quantity (a string on the wire, ints accepted).
The pattern comes first so that it also reaches the JSON schema, hence the CRD."""


def parse_quantity(text: str | int | float, field_name: str = "quantity") -> Decimal:
    """A quantity as a Decimal of base units (``"500m"`` → 0.5, ``"16Gi"`` → 17179869184)."""
    match = _PARTS.match(str(_from_yaml(text)))
    if not match:
        raise ValueError(f"{field_name}: {text!r} is not a Kubernetes quantity")
    number, suffix, exponent = match.groups()
    value = Decimal(number)
    if exponent is not None:
        return value * (Decimal(10) ** int(exponent))
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    return value * _DECIMAL[suffix or ""]
