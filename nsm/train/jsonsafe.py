"""JSON without NaN/Infinity (torch-free: the operator imports :mod:`nsm.train.reporter`)."""

from __future__ import annotations

import math
from typing import Any


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by None: JSON has neither, and kubectl and the API
    server reject documents that contain them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
