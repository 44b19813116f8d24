"""Every verdict rule of the tool, in one place, on typed results.

Pure: numbers (or a results dataset) in, a :class:`Judgement` or :class:`Verdict`
out; the report and the CLI only format what is decided here. One vocabulary
(:data:`VERDICTS`) serves every kind of claim, and each kind states its rule in
:data:`RULES` (the page's legend and the closing table print that text):

- a fitted exponent (``judge``): **direction first** (:func:`judge_direction`),
  then the exponent's interval against the paper's value and a practical margin
  (:func:`judge_exponent`);
- a measured value ± s.e. against a prediction (the walk's ratios,
  :func:`judge_ratio`), pooled over cases by :func:`judge_pooled`;
- a sign from bootstrap draws (the drift's direction, :func:`judge_sign`);
- a difference with a standard error (equal error, :func:`judge_difference`);
- a rank correlation (generalization, :func:`judge_correlation`);
- an equivalence within a margin (mechanism rows such as "second moments suffice",
  :func:`judge_equivalence`);
- an upper bound checked at every step (the Hessian-trace row, :func:`judge_bound`);
- a metric claimed to fall with another one (the Hessian trace with the activation rate,
  :func:`judge_follows`).

The collapse fit (:func:`~thermosgd.analysis.collapse.fit_collapse`) already ignores
replicas marked ``diverged``; :func:`left_out` counts them per swept value so that
every verdict says what it left out and why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

import numpy as np
import xarray as xr
from scipy import stats

from thermosgd import fmt
from thermosgd.analysis.collapse import CollapseFit, fit_collapse
from thermosgd.analysis.run_config import run_config
from thermosgd.errors import UsageError
from thermosgd.presets import EXPONENT_SYMBOL, PAPER_EXPONENT

__all__ = [
    "AGREES",
    "CLOSE",
    "DISAGREES",
    "OPPOSITE",
    "NO_EFFECT",
    "INCONCLUSIVE",
    "NOT_MEASURED",
    "VERDICTS",
    "RULES",
    "DEFAULT_MARGIN",
    "FALLS",
    "RISES",
    "Z95",
    "Judgement",
    "Claim",
    "ClosingRow",
    "closing_table",
    "DirectionChange",
    "LeftOut",
    "Verdict",
    "check_margin",
    "direction_changes",
    "judge",
    "judge_bound",
    "judge_correlation",
    "judge_difference",
    "judge_direction",
    "judge_equivalence",
    "judge_exponent",
    "judge_follows",
    "judge_pooled",
    "judge_ratio",
    "judge_sign",
    "left_out",
    "rejudge",
]

AGREES, CLOSE, DISAGREES = "agrees", "close", "disagrees"
OPPOSITE, NO_EFFECT = "opposite", "no effect"
INCONCLUSIVE, NOT_MEASURED = "inconclusive", "not measured"
#: Every word a verdict can be, best first.
VERDICTS = (AGREES, CLOSE, DISAGREES, OPPOSITE, NO_EFFECT, INCONCLUSIVE, NOT_MEASURED)
#: The practical margin: ±10% of the paper's value (``--margin``).
DEFAULT_MARGIN = 0.1
#: The direction a claim says its metric moves in. Every fitted claim of the paper says "falls".
FALLS, RISES = -1, 1
#: Fewer seeds give no verdict on an exponent beyond "inconclusive" (see :func:`judge`).
MIN_SEEDS_FOR_VERDICT = 4
#: Two-sided 95% normal quantile: a value ± s.e. is judged on the interval value ± 1.96 s.e.
Z95 = 1.959964
#: Level of every interval a rule reads (t-intervals of the direction test, p-value threshold 1 − LEVEL).
LEVEL = 0.95

#: Each kind of claim's rule, in words (the page's legend, the closing table, docs/findings.md).
RULES = {
    "direction": "Direction first: per swept value, the change of the seed mean from the first to the last "
    "recorded step, with a 95% t-interval over seeds. A significant change against the claim at the "
    "strongest setting (largest η, smallest |B|) is 'opposite' (the exponent is shown, not judged); "
    "no significant change at any swept value is 'no effect'.",
    "exponent": "Then the fitted exponent's 95% CI against the paper's value and the margin m (a fraction of "
    "the paper's value, default 0.1): 'agrees' if the paper's value lies inside the CI; 'close' if "
    "outside but the whole CI lies within ±m of it; 'disagrees' otherwise. 'inconclusive' when the CI "
    "runs to the fit's search bound or fewer than 4 seeds were run; 'not measured' when nothing was fitted.",
    "ratio": "A value ± s.e. against a prediction: the exponent rule on the interval value ± 1.96 s.e.; "
    "pooled over cases, the worst case's word (disagrees > opposite > inconclusive > no effect > close > agrees).",
    "sign": "A sign from bootstrap draws: 'agrees' if ≥ 95% of draws have the claimed sign, 'opposite' if "
    "≥ 95% have the other, 'no effect' otherwise.",
    "difference": "A difference ± s.e. claimed to have a sign: 'agrees' if its 95% interval (± 1.96 s.e.) "
    "excludes 0 on the claimed side, 'opposite' if on the other side, 'no effect' if it contains 0.",
    "correlation": "A Spearman correlation claimed to have a sign: 'agrees' if significant at 5% with that "
    "sign, 'opposite' if significant with the other, 'no effect' if not significant.",
    "equivalence": "Two conditions claimed equal: 'agrees' if the 95% CI of their difference lies within "
    "±m·(reference), 'disagrees' if it lies wholly outside, 'inconclusive' otherwise.",
    "bound": "An upper bound: 'agrees' if no recorded step exceeds it by more than 3 s.e., 'disagrees' "
    "(a bug or a broken assumption) otherwise.",
    "follows": "A metric claimed to fall with a driver (the activation rate): 'inconclusive' unless the driver "
    "falls significantly at the strongest setting (95% t-interval over seeds); then the direction rule on the "
    "metric's own change there.",
}


@dataclass(frozen=True)
class Judgement:
    """A verdict word and its reason in one line.

    Attributes:
        status: one of :data:`VERDICTS`.
        reason: why, in numbers where there are numbers.
    """

    status: str
    reason: str


@dataclass(frozen=True)
class Claim:
    """One claim as the page, ``report.md`` and the closing table show it: every number already a string.

    Attributes:
        label: what is compared, e.g. "activation rate: η exponent α (Fig. 3)".
        paper: the paper's value, e.g. "α = 2".
        measured: e.g. "α = 1.89 [1.84, 1.94]".
        verdict: one of :data:`VERDICTS`, decided by a rule of this module.
        note: the rule's reason, and what was left out per swept value.
        left_out: short count of replicas left out, e.g. "8 replicas left out" ("" if none).
    """

    label: str
    paper: str
    measured: str
    verdict: str
    note: str = ""
    left_out: str = ""


@dataclass(frozen=True)
class ClosingRow:
    """One row of the closing table (``reproduce``, ``report``) and of the page's summary."""

    experiment: str
    label: str
    paper: str
    measured: str
    verdict: str


def closing_table(sections: Iterable[tuple[str, str, bool, Sequence[Claim]]]) -> tuple[ClosingRow, ...]:
    """The closing table: one row per claim, grouped by experiment (named on its first row only).

    Args:
        sections: per experiment ``(name, title, measured, claims)``; an experiment not run here
            gets one "not run" row with its first claim's word instead of one row per claim.
    """
    rows = []
    for name, title, measured, claims in sections:
        if not measured:
            rows.append(ClosingRow(name, title, "-", "not run", claims[0].verdict if claims else NOT_MEASURED))
            continue
        for i, c in enumerate(claims):
            shown = f"{c.measured} ({c.left_out})" if c.left_out else c.measured
            rows.append(ClosingRow(name if i == 0 else "", c.label, c.paper or "-", shown, c.verdict))
    return tuple(rows)


def check_margin(margin: float) -> float:
    """``margin`` as a float in [0, 1); :class:`UsageError` otherwise."""
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= float(margin) < 1:
        raise UsageError(f"the margin is a fraction of the paper's value in [0, 1), got {margin!r}")
    return float(margin)


def _finite(*xs) -> bool:
    return all(x is not None and isinstance(x, int | float) and math.isfinite(x) for x in xs)


def _at_bound(low: float, high: float, bounds) -> bool:
    return bool(bounds) and (low <= float(bounds[0]) + 1e-9 or high >= float(bounds[1]) - 1e-9)


def judge_exponent(
    paper: float, low: float | None, high: float | None, *, margin: float = DEFAULT_MARGIN, bounds=None
) -> Judgement:
    """The exponent rule (:data:`RULES` ``"exponent"``): a CI ``[low, high]`` against ``paper``.

    Args:
        paper: the paper's value.
        low, high: the measured 95% interval (None or non-finite: "not measured").
        margin: practical margin, a fraction of ``|paper|`` (0: no "close").
        bounds: the fit's search interval; a CI that reaches it is "inconclusive".

    Returns:
        "agrees", "close", "disagrees", "inconclusive" or "not measured", with the reason.
    """
    margin = check_margin(margin)
    if not _finite(paper, low, high):
        return Judgement(NOT_MEASURED, "no confidence interval")
    assert low is not None and high is not None
    if low <= paper <= high:
        if _at_bound(low, high, bounds):
            return Judgement(
                INCONCLUSIVE,
                f"the CI reaches the search bound {fmt.interval(*bounds)}: the curves barely constrain the exponent",
            )
        return Judgement(AGREES, "the paper's value lies inside the CI")
    gap = low - paper if paper < low else paper - high
    half = margin * abs(paper)
    if margin > 0 and paper - half <= low and high <= paper + half:
        return Judgement(
            CLOSE,
            f"the paper's value lies outside the CI (by {fmt.sig(gap, 2)}), but the whole CI lies within "
            f"±{fmt.percent(margin)} of it {fmt.interval(paper - half, paper + half)}",
        )
    return Judgement(
        DISAGREES,
        f"the paper's value lies outside the CI (by {fmt.sig(gap, 2)}) and the CI leaves "
        f"±{fmt.percent(margin)} of it {fmt.interval(paper - half, paper + half)}",
    )


def judge_ratio(value, se, predicted, *, margin: float = DEFAULT_MARGIN) -> Judgement:
    """A measured ``value ± se`` against ``predicted`` (:data:`RULES` ``"ratio"``)."""
    if not _finite(value, predicted):
        return Judgement(NOT_MEASURED, "not in this run")
    if not _finite(se):
        return Judgement(INCONCLUSIVE, "no standard error")
    return judge_exponent(predicted, value - Z95 * se, value + Z95 * se, margin=margin)


_WORST_FIRST = (DISAGREES, OPPOSITE, INCONCLUSIVE, NO_EFFECT, CLOSE, AGREES)


def judge_pooled(cases: Sequence[tuple[str, Judgement]]) -> Judgement:
    """One claim over several cases: the worst case's word, naming the cases that set it.

    Args:
        cases: ``(case name, its judgement)``; "not measured" cases are left out.
    """
    measured = [(n, j) for n, j in cases if j.status != NOT_MEASURED]
    if not measured:
        return Judgement(NOT_MEASURED, "not in this run")
    for word in _WORST_FIRST:
        names = [n for n, j in measured if j.status == word]
        if names:
            if word == AGREES:
                return Judgement(AGREES, "within 1.96 s.e. of the prediction in every case")
            return Judgement(word, f"{word} in: {', '.join(names)}")
    return Judgement(INCONCLUSIVE, "no case could be judged")


def judge_sign(sign, fraction, claimed: int = FALLS, *, threshold: float = LEVEL) -> Judgement:
    """A sign from bootstrap draws (:data:`RULES` ``"sign"``).

    Args:
        sign: the estimate's sign, +1 or −1 (None: not measured).
        fraction: share of bootstrap draws with that sign.
        claimed: the sign the paper claims.
        threshold: share of draws needed to call the sign.
    """
    if sign not in (-1, 1) or not _finite(fraction):
        return Judgement(NOT_MEASURED, "not in this run")
    if fraction < threshold:
        return Judgement(NO_EFFECT, f"fewer than {fmt.percent(threshold)} of bootstrap draws share the sign")
    if sign == claimed:
        return Judgement(AGREES, f"{fmt.percent(fraction)} of bootstrap draws have the claimed sign")
    return Judgement(OPPOSITE, f"{fmt.percent(fraction)} of bootstrap draws have the sign against the claim")


def judge_difference(diff, se, claimed: int = RISES) -> Judgement:
    """A difference ± s.e. claimed to be positive (``RISES``) or negative (``FALLS``) (:data:`RULES`)."""
    if not _finite(diff):
        return Judgement(NOT_MEASURED, "not in this run")
    if not _finite(se):
        return Judgement(INCONCLUSIVE, "no standard error")
    low, high = diff - Z95 * se, diff + Z95 * se
    text = f"95% interval {fmt.sig_interval(low, high)}"
    if low > 0 or high < 0:
        right = (low > 0) == (claimed == RISES)
        return Judgement(AGREES if right else OPPOSITE, f"{text} excludes 0 {'on' if right else 'against'} the claim")
    return Judgement(NO_EFFECT, f"{text} contains 0")


def judge_correlation(rho, p, claimed: int = FALLS, *, alpha: float = 1 - LEVEL) -> Judgement:
    """A rank correlation claimed to have sign ``claimed`` (:data:`RULES` ``"correlation"``)."""
    if not _finite(rho):
        return Judgement(NOT_MEASURED, "not in this run")
    if not _finite(p) or p >= alpha:
        return Judgement(NO_EFFECT, f"not significant at the {fmt.percent(alpha)} level")
    if rho * claimed > 0:
        return Judgement(AGREES, f"significant at the {fmt.percent(alpha)} level, with the claimed sign")
    return Judgement(OPPOSITE, f"significant at the {fmt.percent(alpha)} level, against the claimed sign")


def judge_equivalence(diff, ci: tuple[float, float] | None, margin: float) -> Judgement:
    """Two conditions claimed equal (:data:`RULES` ``"equivalence"``).

    Args:
        diff: the measured difference between them.
        ci: its 95% interval.
        margin: the practical margin in the difference's units (e.g. 0.1 × the reference effect), ≥ 0.
    """
    if not _finite(diff) or ci is None or not _finite(*ci) or not _finite(margin) or margin < 0:
        return Judgement(NOT_MEASURED, "no interval for the difference")
    low, high = ci
    text = f"difference {fmt.signed(diff)} {fmt.sig_interval(low, high)}, margin ±{fmt.sig(margin)}"
    if -margin <= low and high <= margin:
        return Judgement(AGREES, f"{text}: the CI lies within the margin")
    if high < -margin or low > margin:
        return Judgement(DISAGREES, f"{text}: the CI lies outside the margin")
    return Judgement(INCONCLUSIVE, f"{text}: the CI straddles the margin")


def judge_bound(violations: int | None, checked: int | None) -> Judgement:
    """An upper bound checked at ``checked`` recorded steps (:data:`RULES` ``"bound"``)."""
    if not checked or violations is None:
        return Judgement(NOT_MEASURED, "no step checked")
    if violations == 0:
        return Judgement(AGREES, f"below the bound (+3 s.e.) at all {checked} checked steps")
    return Judgement(DISAGREES, f"above the bound by more than 3 s.e. at {violations} of {checked} steps")


# --------------------------------------------------------------------------- direction


@dataclass(frozen=True)
class DirectionChange:
    """The change of a metric's seed mean at one setting, first to last recorded step.

    Attributes:
        lr, batch_size: the setting (None where the results have no such dimension).
        change: mean over seeds of ``metric[last] − metric[first]``.
        ci_low, ci_high: its 95% t-interval over seeds (``n_seeds − 1`` degrees of freedom).
        n_seeds: seeds with a finite change (diverged replicas are left out).
        first_step, last_step: the steps compared.
    """

    lr: float | None
    batch_size: float | None
    change: float
    ci_low: float
    ci_high: float
    n_seeds: int
    first_step: float
    last_step: float

    @property
    def sign(self) -> int:
        """+1 (significant rise), −1 (significant fall) or 0 (the interval contains 0)."""
        return 1 if self.ci_low > 0 else -1 if self.ci_high < 0 else 0

    def setting(self) -> str:
        parts = [f"η = {fmt.sig(self.lr)}" if self.lr is not None else ""]
        parts.append(f"|B| = {self.batch_size:g}" if self.batch_size is not None else "")
        return ", ".join(p for p in parts if p)

    def text(self) -> str:
        return f"{self.setting()}: {fmt.signed(self.change)} {fmt.sig_interval(self.ci_low, self.ci_high)}"


def t_interval(x: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of ``x`` (1-D, finite, ≥ 2 values) and its two-sided ``level`` t-interval."""
    n = x.size
    mean = float(x.mean())
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def direction_changes(ds: xr.Dataset, metric: str, *, include_diverged: bool = False) -> tuple[DirectionChange, ...]:
    """Per setting (every ``lr`` × ``batch_size`` cell), the change from the first to the last recorded step.

    Args:
        ds: results with ``metric`` of dims ``(…, seed, step)``; ``diverged`` ``(…, seed)`` if present.
        metric: the claim's metric.
        include_diverged: keep replicas flagged ``diverged`` (default: leave them out, as the fit does).

    Returns:
        One :class:`DirectionChange` per cell with ≥ 2 seeds of finite change, in the results' order.
    """
    da = ds[metric]
    if "diverged" in ds and not include_diverged:
        da = da.where(~ds["diverged"].astype(bool))
    delta = da.isel(step=-1) - da.isel(step=0)
    first, last = float(ds["step"].values[0]), float(ds["step"].values[-1])
    cells = [d for d in delta.dims if d != "seed"]
    stacked = delta.stack(cell=cells) if cells else delta.expand_dims(cell=[0])
    out = []
    for i in range(stacked.sizes["cell"]):
        cell = stacked.isel(cell=i)
        x = np.asarray(cell.values, dtype=float).ravel()
        x = x[np.isfinite(x)]
        if x.size < 2:
            continue
        mean, low, high = t_interval(x)
        coord = {d: float(cell[d].values) for d in ("lr", "batch_size") if d in cell.coords}
        out.append(DirectionChange(coord.get("lr"), coord.get("batch_size"), mean, low, high, x.size, first, last))
    return tuple(out)


def _strongest(changes: Sequence[DirectionChange]) -> DirectionChange:
    """The strongest setting: largest η, then smallest |B| (the paper's rate grows as η²/|B|)."""
    return max(changes, key=lambda c: (c.lr if c.lr is not None else 0.0, -(c.batch_size or 0.0)))


def judge_direction(changes: Sequence[DirectionChange], claimed: int = FALLS) -> Judgement:
    """The direction rule (:data:`RULES` ``"direction"``).

    Returns:
        "opposite" (a significant change against the claim at the strongest setting),
        "no effect" (no significant change at any setting), "agrees" (the direction is
        not against the claim: go on to the exponent), or "not measured" (no setting has
        2 seeds).
    """
    if not changes:
        return Judgement(NOT_MEASURED, "no setting with ≥ 2 seeds to test the direction")
    word = "falls" if claimed == FALLS else "rises"
    top = _strongest(changes)
    if top.sign == -claimed:
        return Judgement(
            OPPOSITE,
            f"the claim says the metric {word}, but at the strongest setting it changes by {top.text()} "
            "(95% t-interval over seeds): the exponent is shown, not judged",
        )
    if all(c.sign == 0 for c in changes):
        return Judgement(
            NO_EFFECT,
            f"no significant change at any setting (largest: {max(changes, key=lambda c: abs(c.change)).text()}): "
            "the exponent is shown, not judged",
        )
    if top.sign == claimed:
        return Judgement(AGREES, f"the metric {word} as claimed (strongest setting {top.text()})")
    return Judgement(AGREES, f"no significant change at the strongest setting ({top.text()}), but elsewhere")


def judge_follows(
    metric: Sequence[DirectionChange], driver: Sequence[DirectionChange], claimed: int = FALLS
) -> Judgement:
    """A metric claimed to move with a driver (:data:`RULES` ``"follows"``).

    Args:
        metric: the metric's change per setting (:func:`direction_changes`).
        driver: the driver's change per setting, e.g. the activation rate's.
        claimed: the direction both are claimed to move in.

    Returns:
        "inconclusive" when the driver does not move as claimed at the strongest setting
        (nothing to follow), else :func:`judge_direction` on the metric.
    """
    if not metric or not driver:
        return Judgement(NOT_MEASURED, "no setting with ≥ 2 seeds to test the direction")
    word = "fall" if claimed == FALLS else "rise"
    top = _strongest(driver)
    if top.sign != claimed:
        return Judgement(
            INCONCLUSIVE, f"the driver did not {word} significantly at the strongest setting ({top.text()})"
        )
    j = judge_direction(metric, claimed)
    return Judgement(j.status, f"{j.reason}; the driver changes by {top.text()}")


# --------------------------------------------------------------------------- a fitted claim


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
    """One fitted claim's verdict (serialised into ``summary.json``; read back by :meth:`from_dict`).

    Attributes:
        preset: preset name; metric: fitted variable; over: swept parameter.
        status: one of :data:`VERDICTS` (rules: :data:`RULES` ``"direction"`` then ``"exponent"``).
        paper: the paper's exponent.
        exponent, ci_low, ci_high: the fit (None when not measured; the interval is None
            too with fewer than :data:`MIN_SEEDS_FOR_VERDICT` seeds, where ``fit`` keeps the
            bootstrap's on record).
        left_out: replicas left out, per swept value (only values with some left out).
        included_diverged: the fit was asked to keep diverged replicas.
        note: the reason for the status (and caveats).
        fit: the full fit as a dict (None when not measured).
        margin: the practical margin the exponent was judged with (a fraction of ``paper``).
        claimed: the direction the claim says the metric moves (:data:`FALLS` or :data:`RISES`).
        direction: the change per setting that the direction rule read.
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
    margin: float = DEFAULT_MARGIN
    claimed: int = FALLS
    direction: tuple[DirectionChange, ...] = ()

    @property
    def symbol(self) -> str:
        return EXPONENT_SYMBOL[self.over]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["left_out"] = [asdict(x) for x in self.left_out]
        out["direction"] = [asdict(x) for x in self.direction]
        out["symbol"] = self.symbol
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        """The verdict :meth:`to_dict` wrote. A missing or unknown field raises :class:`UsageError`
        (a renamed field must fail loudly, not read as "not measured")."""
        if not isinstance(data, dict):
            raise UsageError(f"a verdict record is a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        extra, missing = set(data) - names - {"symbol"}, required - set(data)
        if extra or missing or data.get("status") not in VERDICTS:
            raise UsageError(
                f"unreadable verdict record (unknown fields {sorted(extra)}, missing {sorted(missing)}, "
                f"status {data.get('status')!r}); written by another version of thermosgd?"
            )
        kw = {k: v for k, v in data.items() if k in names}
        try:
            kw["left_out"] = tuple(LeftOut(**x) for x in kw.get("left_out", ()))
            kw["direction"] = tuple(DirectionChange(**x) for x in kw.get("direction", ()))
        except TypeError as exc:
            raise UsageError(f"unreadable verdict record: {exc}") from None
        return cls(**kw)

    def fitted(self, digits: int = 2) -> str:
        """``α = 1.91 [1.89, 1.93]``; ``α = 0.19 (no CI)`` when the fit has no interval
        (too few seeds); ``n/a`` without a fit."""
        if self.exponent is None:
            return "n/a"
        return f"{self.symbol} = {fmt.estimate(self.exponent, self.ci_low, self.ci_high, digits)}"

    def line(self) -> str:
        """The one-line verdict printed by ``reproduce`` (same words and numbers as the report)."""
        sym = self.symbol
        if self.status == NOT_MEASURED:
            text = f"not measured: {self.note}"
        else:
            if self.exponent is None:
                fitted = "no fit"
            elif self.ci_low is None or self.ci_high is None:
                fitted = f"fitted {sym} = {fmt.exponent(self.exponent)}, no CI"
            else:
                d = fmt.width_decimals(self.ci_low, self.ci_high)
                ci = fmt.interval(self.ci_low, self.ci_high, d)
                fitted = f"fitted {sym} = {fmt.fixed(self.exponent, d)}, 95% CI {ci}"
            text = f"{fitted}; paper {sym} = {fmt.sig(self.paper)}: {self.status.upper()}"
            text += f" ({self.note})" if self.note else ""
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
    ex2 = run_config(ds).input_second_moment()
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
    margin: float = DEFAULT_MARGIN,
    claimed: int = FALLS,
    fit: CollapseFit | None = None,
) -> Verdict:
    """Judge a fitted claim: the direction first, then ``metric``'s collapse exponent over ``over``.

    Args:
        ds: results, dims ``(lr, batch_size, seed, step)``.
        preset: name recorded in the verdict.
        metric: the plotted metric.
        over: ``"lr"`` or ``"batch_size"``.
        include_diverged: keep replicas marked ``diverged`` in the fit (default: leave them out).
        n_boot, seed, window: passed to :func:`~thermosgd.analysis.collapse.fit_collapse`.
        margin: practical margin, a fraction of the paper's exponent (:func:`judge_exponent`).
        claimed: the direction the claim says the metric moves (every fitted claim of the paper: ``FALLS``).
        fit: the collapse fit already made on ``ds`` (``thermosgd collapse``); None: fitted here.

    Returns:
        A :class:`Verdict`: "opposite" or "no effect" from the direction rule (the exponent
        shown, not judged), else the exponent rule's word; "not measured" with the reason
        when neither can be measured.
    """
    base = Verdict(
        preset=preset,
        metric=metric,
        over=over,
        status=NOT_MEASURED,
        paper=PAPER_EXPONENT[over],
        left_out=left_out(ds, over),
        included_diverged=include_diverged,
        margin=check_margin(margin),
        claimed=claimed,
    )
    if metric not in ds:
        return replace(base, note=f"the results have no {metric!r}")
    changes = direction_changes(ds, metric, include_diverged=include_diverged)
    direction = judge_direction(changes, claimed)
    base = replace(base, direction=changes)
    if ds.sizes.get(over, 0) < 2 or ds.sizes.get("seed", 0) < 2:
        why = f"needs ≥ 2 swept values of {over} and ≥ 2 seeds"
        if direction.status in (OPPOSITE, NO_EFFECT):
            return replace(base, status=direction.status, note=f"{direction.reason}; no exponent ({why})")
        return replace(base, note=why)
    data = ds.assign(diverged=xr.zeros_like(ds["diverged"])) if include_diverged and "diverged" in ds else ds
    try:
        fit = fit if fit is not None else fit_collapse(data, metric, over, window=window, n_boot=n_boot, seed=seed)
    except UsageError as exc:
        if direction.status in (OPPOSITE, NO_EFFECT):
            return replace(base, status=direction.status, note=f"{direction.reason}; no exponent ({exc})")
        return replace(base, note=str(exc))
    return _judge_fit(fit, direction, base)


def _judge_fit(fit: CollapseFit, direction: Judgement, base: Verdict) -> Verdict:
    """The verdict once the exponent is fitted: direction, then seeds, then the exponent rule."""
    low, high = fit.ci_low, fit.ci_high
    base = replace(base, exponent=fit.exponent, fit=fit.to_dict())
    if direction.status in (OPPOSITE, NO_EFFECT):
        ok = math.isfinite(low) and math.isfinite(high) and fit.n_seeds >= MIN_SEEDS_FOR_VERDICT
        return replace(
            base,
            status=direction.status,
            note=direction.reason,
            ci_low=low if ok else None,
            ci_high=high if ok else None,
        )
    if not (math.isfinite(low) and math.isfinite(high)):
        return replace(base, note="no confidence interval (too few usable seeds)")
    if fit.n_seeds < MIN_SEEDS_FOR_VERDICT:
        # A bootstrap over 2 or 3 seeds has a handful of distinct resamples: its interval
        # is an artefact of the method, not a measurement (it may even miss the estimate),
        # so neither an interval nor agree/disagree is stated; ``fit`` keeps it on record.
        note = (
            f"only {fit.n_seeds} seeds: a bootstrap over seeds needs ≥ {MIN_SEEDS_FOR_VERDICT} for an "
            "interval; rerun with --seeds 8 or more"
        )
        return replace(base, status=INCONCLUSIVE, note=note)
    j = judge_exponent(base.paper, low, high, margin=base.margin, bounds=fit.bounds)
    return replace(base, status=j.status, ci_low=low, ci_high=high, note=j.reason)


def rejudge(v: Verdict, margin: float) -> Verdict:
    """``v`` judged again with another practical margin (``report --margin``): only the exponent
    rule's words (agrees, close, disagrees) can change; the direction and seed rules stand."""
    margin = check_margin(margin)
    if v.status not in (AGREES, CLOSE, DISAGREES) or v.ci_low is None or v.ci_high is None:
        return replace(v, margin=margin)
    bounds = (v.fit or {}).get("bounds")
    bounds = bounds if isinstance(bounds, list | tuple) and len(bounds) == 2 else None
    j = judge_exponent(v.paper, v.ci_low, v.ci_high, margin=margin, bounds=bounds)
    return replace(v, status=j.status, note=j.reason, margin=margin)
