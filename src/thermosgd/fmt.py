"""How numbers are written: one place for the CLI verdict lines, reports and the HTML page.

Exponents, ratios and their intervals are written with two decimals (the
precision the verdict lines have always used), or with as many more (up to six) as
an interval needs to show its width: a narrow interval written "[0.99, 0.99]" would
claim a precision the fit does not have and hide which side of zero it lies on.
Other measured values are written with three significant digits. A missing or non-finite value is written ``n/a``, so a
record with a field left out still formats.
"""

from __future__ import annotations

import math

__all__ = ["NA", "fixed", "exponent", "interval", "estimate", "plus_minus", "sig", "signed", "percent"]

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


def width_decimals(low, high, decimals: int = 2) -> int:
    """``decimals``, or more (up to 6) until ``low`` and ``high`` are written differently."""
    lo, hi = _finite(low), _finite(high)
    if lo is None or hi is None or lo == hi:
        return decimals
    while decimals < 6 and fixed(lo, decimals) == fixed(hi, decimals):
        decimals += 1
    return decimals


def interval(low, high, decimals: int = 2) -> str:
    """A confidence interval, ``"[1.10, 3.86]"``; narrow ones with the decimals that show their width,
    ``"[-0.004, 0.002]"``."""
    d = width_decimals(low, high, decimals)
    return f"[{fixed(low, d)}, {fixed(high, d)}]"


def estimate(x, low, high, decimals: int = 2) -> str:
    """An estimate and its interval at one precision, ``"0.990 [0.987, 0.993]"``; ``"0.19 (no CI)"``
    without an interval."""
    if _finite(low) is None or _finite(high) is None:
        return f"{fixed(x, decimals)} (no CI)"
    d = width_decimals(low, high, decimals)
    return f"{fixed(x, d)} {interval(low, high, d)}"


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
