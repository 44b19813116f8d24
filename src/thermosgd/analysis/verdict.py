"""The verdict on one claim: the fitted exponent, its interval, the paper's value, what was left out.

Pure: a results dataset and a preset's metric in, a :class:`Verdict` out. The
collapse fit (:func:`~thermosgd.analysis.collapse.fit_collapse`) already ignores
replicas marked ``diverged``; this module counts them per swept value so that
every verdict says what it left out and why, and names a swept value whose
replicas all ran away instead of silently fitting the rest.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import xarray as xr

from thermosgd import fmt
from thermosgd.analysis.collapse import fit_collapse
from thermosgd.errors import UsageError
from thermosgd.presets import EXPONENT_SYMBOL, PAPER_EXPONENT

__all__ = ["LeftOut", "Verdict", "classify", "left_out", "judge"]

AGREES, DISAGREES, INCONCLUSIVE, NOT_MEASURED = "agrees", "disagrees", "inconclusive", "not measured"
#: Fewer seeds give no verdict beyond "inconclusive" (see :func:`judge`).
MIN_SEEDS_FOR_VERDICT = 4


@dataclass(frozen=True)
class LeftOut:
    """Replicas of one swept value that the fit left out.

    Attributes:
        value: the swept value (η or |B|).
        count: replicas left out.
        of: replicas at this value.
        first_step: earliest step at which one of them was flagged (None if unknown).
        median_step: median flagging step.
        reason: why (the divergence criterion of the run).
        step_size_load: η·E‖x‖² for two-layer runs (the classic SGD stability number), or None.
    """

    value: float
    count: int
    of: int
    first_step: int | None
    median_step: int | None
    reason: str
    step_size_load: float | None = None

    @property
    def all(self) -> bool:
        return self.count == self.of and self.of > 0


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict.

    Attributes:
        preset: preset name; metric: fitted variable; over: swept parameter.
        status: ``"agrees"`` (paper's value inside the CI), ``"disagrees"`` or ``"not measured"``.
        exponent, ci_low, ci_high: the fit (None when not measured; the interval is None
            too with fewer than :data:`MIN_SEEDS_FOR_VERDICT` seeds, where ``fit`` keeps the
            bootstrap's on record).
        paper: the paper's exponent.
        left_out: replicas left out, per swept value (only values with some left out).
        included_diverged: the fit was asked to keep diverged replicas.
        note: why not measured, or a caveat (an interval at the search bound).
        fit: the full fit as a dict (None when not measured).
    """

    preset: str
    metric: str
    over: str
    status: str
    paper: float
    exponent: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    left_out: tuple[LeftOut, ...] = ()
    included_diverged: bool = False
    note: str = ""
    fit: dict | None = field(default=None, repr=False)

    @property
    def symbol(self) -> str:
        return EXPONENT_SYMBOL[self.over]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["left_out"] = [asdict(x) for x in self.left_out]
        out["symbol"] = self.symbol
        return out

    def fitted(self, digits: int = 2) -> str:
        """``α = 1.91 [1.89, 1.93]``; ``α = 0.19 (no CI)`` when the fit has no interval
        (too few seeds); ``n/a`` without a fit."""
        if self.exponent is None:
            return "n/a"
        text = f"{self.symbol} = {self.exponent:.{digits}f}"
        if self.ci_low is None:
            return text + " (no CI)"
        return text + f" [{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}]"

    def line(self) -> str:
        """The one-line verdict printed by ``reproduce`` (same numbers as the report)."""
        sym = self.symbol
        if self.status == NOT_MEASURED:
            text = f"not measured: {self.note}"
        else:
            ci = "no CI" if self.ci_low is None else f"95% CI {fmt.interval(self.ci_low, self.ci_high)}"
            text = f"fitted {sym} = {fmt.exponent(self.exponent)}, {ci}; paper {sym} = {fmt.sig(self.paper)}: "
            if self.status == AGREES:
                text += "consistent"
            elif self.status == INCONCLUSIVE:
                text += f"INCONCLUSIVE ({self.note})"
            else:
                gap = self.ci_low - self.paper if self.paper < self.ci_low else self.paper - self.ci_high
                text += f"DISAGREES (paper's value outside the CI by {fmt.exponent(gap)})"
            if self.note and self.status != INCONCLUSIVE:
                text += f" ({self.note})"
        if self.left_out:
            text += "; " + "; ".join(_left_out_text(x, self.over, self.included_diverged) for x in self.left_out)
        return text


def _left_out_text(x: LeftOut, over: str, included: bool) -> str:
    name = "η" if over == "lr" else "|B|"
    verb = "kept (--include-diverged)" if included else "left out"
    when = f" from step ~{x.median_step}" if x.median_step is not None else ""
    load = f", η·E‖x‖² ≈ {fmt.sig(x.step_size_load)}" if x.step_size_load is not None else ""
    what = "replicas unstable" if x.all else "replicas diverged"
    return f"{name} = {fmt.sig(x.value)}: {x.count}/{x.of} {what}{when} ({x.reason}{load}), {verb}"


def _at_bound(low: float, high: float, bounds) -> bool:
    return bool(bounds) and (low <= float(bounds[0]) + 1e-9 or high >= float(bounds[1]) - 1e-9)


def classify(paper: float, low: float, high: float, bounds=None) -> tuple[str, str]:
    """The one rule for a verdict from an interval (CLI lines and the HTML report use it).

    Returns:
        ``(status, reason)``: "disagrees" when ``paper`` lies outside ``[low, high]``;
        "inconclusive" when inside but the interval runs to the fit's search bound
        (the curves barely constrain the exponent); "agrees" otherwise.
    """
    if not low <= paper <= high:
        gap = low - paper if paper < low else paper - high
        return DISAGREES, f"the paper's value lies outside the CI (by {fmt.exponent(gap)})"
    if _at_bound(low, high, bounds):
        return INCONCLUSIVE, (
            f"the CI reaches the search bound {fmt.interval(*bounds)}: the curves barely constrain the exponent"
        )
    return AGREES, "the paper's value lies inside the CI"


def _input_second_moment(ds: xr.Dataset) -> float | None:
    """E‖x‖² of the two-layer run's inputs (Gaussian: M, U(0,1): M/3), from its config attrs."""
    try:
        cfg = json.loads(ds.attrs["config"])
        inputs, dist = int(cfg["model"]["inputs"]), cfg["data"]["inputs"]
    except (KeyError, TypeError, ValueError):
        return None
    return {"gaussian": float(inputs), "uniform": inputs / 3.0}.get(dist)


def left_out(ds: xr.Dataset, over: str) -> tuple[LeftOut, ...]:
    """Diverged replicas per swept value (values with none are omitted)."""
    if "diverged" not in ds:
        return ()
    div = ds["diverged"]
    other = "batch_size" if over == "lr" else "lr"
    if other in div.dims:
        div = div.any(other) if div.sizes[other] > 1 else div.isel({other: 0})
    steps = ds["diverged_step"] if "diverged_step" in ds else None
    if steps is not None and other in steps.dims:
        steps = steps.min(other) if steps.sizes[other] > 1 else steps.isel({other: 0})
    reason = str(ds.attrs.get("divergence_criterion", "non-finite loss or parameters"))
    ex2 = _input_second_moment(ds)
    out = []
    for v in ds[over].values:
        d = np.asarray(div.sel({over: v}).values, dtype=bool)
        if not d.any():
            continue
        first = median = None
        if steps is not None:
            s = np.asarray(steps.sel({over: v}).values, dtype=float)[d]
            s = s[np.isfinite(s) & (s >= 0)]
            if s.size:
                first, median = int(s.min()), int(np.median(s))
        load = float(v) * ex2 if (over == "lr" and ex2 is not None) else None
        out.append(LeftOut(float(v), int(d.sum()), int(d.size), first, median, reason, load))
    return tuple(out)


def judge(
    ds: xr.Dataset,
    preset: str,
    metric: str,
    over: str,
    *,
    include_diverged: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    window=None,
) -> Verdict:
    """Fit ``metric``'s collapse over ``over`` and state the verdict against the paper.

    Args:
        ds: results, dims ``(lr, batch_size, seed, step)``.
        preset: name recorded in the verdict.
        metric: the plotted metric.
        over: ``"lr"`` or ``"batch_size"``.
        include_diverged: keep replicas marked ``diverged`` in the fit (default: leave them out).
        n_boot, seed, window: passed to :func:`~thermosgd.analysis.collapse.fit_collapse`.

    Returns:
        A :class:`Verdict`; ``"not measured"`` (with the reason) when no fit is possible.
    """
    paper = PAPER_EXPONENT[over]
    gone = left_out(ds, over)
    data = ds.assign(diverged=xr.zeros_like(ds["diverged"])) if include_diverged and "diverged" in ds else ds
    base = dict(preset=preset, metric=metric, over=over, paper=paper, left_out=gone, included_diverged=include_diverged)
    if metric not in ds:
        return Verdict(status=NOT_MEASURED, note=f"the results have no {metric!r}", **base)
    if ds.sizes.get(over, 0) < 2 or ds.sizes.get("seed", 0) < 2:
        return Verdict(status=NOT_MEASURED, note=f"needs ≥ 2 swept values of {over} and ≥ 2 seeds", **base)
    try:
        fit = fit_collapse(data, metric, over, window=window, n_boot=n_boot, seed=seed)
    except UsageError as exc:
        return Verdict(status=NOT_MEASURED, note=str(exc), **base)
    if not (math.isfinite(fit.ci_low) and math.isfinite(fit.ci_high)):
        return Verdict(
            status=NOT_MEASURED,
            note="no confidence interval (too few usable seeds)",
            exponent=fit.exponent,
            fit=fit.to_dict(),
            **base,
        )
    status, _ = classify(paper, fit.ci_low, fit.ci_high, fit.bounds)
    note = (
        "the CI reaches the search bound: the curves barely constrain it"
        if _at_bound(fit.ci_low, fit.ci_high, fit.bounds)
        else ""
    )
    low, high = fit.ci_low, fit.ci_high
    if fit.n_seeds < MIN_SEEDS_FOR_VERDICT:
        # A bootstrap over 2 or 3 seeds has a handful of distinct resamples: its interval
        # is an artefact of the method, not a measurement (it may even miss the estimate),
        # so neither an interval nor agree/disagree is stated; ``fit`` keeps it on record.
        status, low, high = INCONCLUSIVE, None, None
        note = (
            f"only {fit.n_seeds} seeds: a bootstrap over seeds needs ≥ {MIN_SEEDS_FOR_VERDICT} for an "
            "interval; rerun with --seeds 8 or more"
        )
    return Verdict(status=status, exponent=fit.exponent, ci_low=low, ci_high=high, note=note, fit=fit.to_dict(), **base)
