"""The interactive collapse plots' data: seed-mean curves with standard-error bands, thinned for the page."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from thermosgd.report.common import EXPONENT, METRIC, PAPER_EXPONENT, SYMBOL, number
from thermosgd.report.records import Collapse, Section

__all__ = ["collapses", "collapse_data"]

_MAX_POINTS = 300  # per interactive curve


def collapses(sec: Section, folder: Path, metrics: list[str], over: str, fits: dict) -> list[Collapse]:
    """One interactive plot per fitted metric of a sweep folder (none without ``results.nc``)."""
    path = folder / "results.nc"
    if not path.exists() or not metrics:
        return []
    import xarray as xr

    from thermosgd.analysis.collapse import default_reference, sweep_data

    out = []
    with xr.open_dataset(path) as ds:
        for metric in metrics:
            try:
                values, steps, raw, alive = sweep_data(ds, metric, over)
            except Exception:  # noqa: BLE001 - e.g. one swept value: nothing to collapse
                continue
            got = fits.get(metric)
            fit = got if isinstance(got, dict) else {}
            reference = number(fit.get("reference")) or float(default_reference(values))
            out.append(
                Collapse(
                    id=f"collapse-{sec.id}-{metric}".replace("_", "-"),
                    title=f"{METRIC.get(metric, metric)} against t·({SYMBOL[over]}/{reference:g})^"
                    f"{'' if over == 'lr' else '−'}{EXPONENT[over]}",
                    data=collapse_data(
                        values, steps, raw, alive, over=over, metric=metric, reference=reference, fit=fit
                    ),
                )
            )
    return out


def collapse_data(values, steps, raw, alive, *, over: str, metric: str, reference: float, fit: dict | None) -> dict:
    """JSON-ready curves for the page: seed mean ± one standard error per swept value.

    Args:
        values: ``(K,)`` swept values, ascending.
        steps: ``(T,)`` recorded steps.
        raw: ``(K, S, T)`` metric per swept value, seed and step.
        alive: ``(K, S)`` replicas that enter the mean (not diverged, finite).
        over, metric, reference: the sweep and the rescaling's reference value.
        fit: the collapse fit's dict (exponent, interval, bounds), or None.

    Returns:
        The :class:`~thermosgd.report.records.Collapse` ``data`` dict; at most
        300 points per curve (log- and linearly-spaced steps, so both axis
        scales show the shape).
    """
    fit = fit or {}
    count = alive.sum(axis=1)
    keep = _thin(len(steps))
    colors = _colors(len(values))
    curves = []
    for k, value in enumerate(values):
        n = int(count[k])
        if n == 0:
            continue
        x = raw[k][alive[k]][:, keep]
        mean = x.mean(axis=0)
        se = x.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(mean)
        curves.append(
            {
                "label": f"{SYMBOL[over]} = {value:g}",
                "value": float(value),
                "color": colors[k],
                "replicas": n,
                "t": _round(steps[keep]),
                "mean": _round(mean),
                "lo": _round(mean - se),
                "hi": _round(mean + se),
            }
        )
    bounds = fit.get("bounds") or [-2.0, 5.0]
    return {
        "over": over,
        "symbol": SYMBOL[over],
        "exponent_symbol": EXPONENT[over],
        "metric": metric,
        "metric_label": METRIC.get(metric, metric),
        "reference": float(reference),
        "sign": 1.0 if over == "lr" else -1.0,
        "bounds": [float(bounds[0]), float(bounds[1])],
        "paper": number(fit.get("predicted")) if number(fit.get("predicted")) is not None else PAPER_EXPONENT[over],
        "fitted": number(fit.get("exponent")),
        "ci": [number(fit.get("ci_low")), number(fit.get("ci_high"))],
        "span": [float(steps[0]), float(steps[-1])],
        "curves": curves,
    }


def _thin(n: int) -> np.ndarray:
    if n <= _MAX_POINTS:
        return np.arange(n)
    half = _MAX_POINTS // 2
    idx = np.concatenate([np.geomspace(1, n, half) - 1, np.linspace(0, n - 1, half)])
    return np.unique(np.round(idx).astype(int))


def _round(a) -> list:
    """Five significant digits: enough for a plot, a fifth of the bytes."""
    return [None if not np.isfinite(v) else float(f"{v:.5g}") for v in np.asarray(a, float)]


def _colors(n: int) -> list[str]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]  # as the static figures
    return ["#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in cmap(x)[:3])) for x in np.linspace(0.0, 0.85, n)]
