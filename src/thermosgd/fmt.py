"""How numbers are written: one place for the CLI verdict lines, reports and the HTML page.

Exponents, ratios and their intervals are written with two decimals (the
precision the verdict lines have always used); other measured values with three
significant digits. A missing or non-finite value is written ``n/a``, so a
record with a field left out still formats.
"""

from __future__ import annotations

import math

__all__ = ["NA", "fixed", "exponent", "interval", "plus_minus", "sig", "signed", "percent"]

NA = "n/a"


def _finite(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fixed(x, decimals: int = 2) -> str:
    """``x`` with a fixed number of decimals, e.g. ``fixed(1.5206) == "1.52"``; ``n/a`` if missing."""
    v = _finite(x)
    if v is None:
        return NA
    text = f"{v:.{decimals}f}"
    # "-0.00" reads as a measured negative value; it is zero at this precision.
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def exponent(x) -> str:
    """A fitted or predicted exponent (α, β, k), as in the verdict lines: ``"1.52"``."""
    return fixed(x, 2)


def interval(low, high, decimals: int = 2) -> str:
    """A confidence interval, ``"[1.10, 3.86]"``."""
    return f"[{fixed(low, decimals)}, {fixed(high, decimals)}]"


def sig_interval(low, high, digits: int = 3) -> str:
    """An interval of values of any scale, ``"[2.1e-05, 0.000184]"`` (:func:`sig` at each end)."""
    return f"[{sig(low, digits)}, {sig(high, digits)}]"


def plus_minus(x, err, decimals: int = 2) -> str:
    """A value with its standard error, ``"1.07 ± 0.05"`` (just the value if the error is missing)."""
    if _finite(err) is None:
        return fixed(x, decimals)
    return f"{fixed(x, decimals)} ± {fixed(err, decimals)}"


def sig(x, digits: int = 3) -> str:
    """A measured value with ``digits`` significant digits: ``0.488``, ``5.35e-06``, ``1.2e+18``."""
    v = _finite(x)
    if v is None:
        return NA
    return f"{v:.{digits}g}"


def signed(x, digits: int = 3) -> str:
    """Like :func:`sig`, with an explicit sign (differences, drifts): ``+0.022``, ``-0.343``."""
    v = _finite(x)
    if v is None:
        return NA
    return f"{v:+.{digits}g}"


def percent(x, decimals: int = 0) -> str:
    """A fraction in [0, 1] as a percentage, ``"88%"``."""
    v = _finite(x)
    if v is None:
        return NA
    return f"{100 * v:.{decimals}f}%"
