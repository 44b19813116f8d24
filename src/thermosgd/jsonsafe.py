"""One conversion of results to strict JSON, shared by every writer of ``*.json``."""

from __future__ import annotations

import math

__all__ = ["json_safe"]


def json_safe(obj):
    """The same structure as plain JSON types.

    Non-finite floats become None (strict JSON has no NaN), tuples become lists,
    NumPy and torch scalars become Python numbers, dict keys become strings.
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
