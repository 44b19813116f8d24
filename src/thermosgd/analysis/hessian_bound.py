"""The Hessian-trace bound (earlier version, App. A.8), in numbers: is it a bound, and does it fall?

Pure: study results in (dims ``(lr, batch_size, seed, step)`` with
``hessian_trace``, its ``hessian_trace_stderr``, ``hessian_trace_bound`` and
``activation_rate``; :mod:`thermosgd.studies` records them with
``[record] hessian = true``), typed results out. Per setting (one η sweep):

* **the bound holds**: Hutchinson's trace stays below the bound (Eq. 62,
  :func:`~thermosgd.instruments.hessian.stacked_trace_bound`) plus 3 of its
  standard errors at every recorded step of every replica that did not diverge
  (:func:`~thermosgd.analysis.verdict.judge_bound`). A violation is a bug or a
  broken assumption of the bound, never noise;
* **trace and bound fall with the activation rate**: their change from the
  first to the last recorded step, with a 95% t-interval over seeds, where the
  activation rate falls (:func:`~thermosgd.analysis.verdict.judge_follows`);
* **how their fall scales with η**: the collapse exponent α of ``t·η^α``
  (:func:`~thermosgd.analysis.verdict.judge`). The paper's α = 2 is the
  activation rate's (Eq. 27–28); a bound driven by the activation rate and the
  weight norms should share it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from thermosgd import fmt
from thermosgd.analysis.verdict import (
    DEFAULT_MARGIN,
    FALLS,
    DirectionChange,
    Judgement,
    Verdict,
    direction_changes,
    judge,
    judge_bound,
    judge_follows,
)

__all__ = [
    "TRACE",
    "STDERR",
    "BOUND",
    "DRIVER",
    "SIGMAS",
    "BoundCheck",
    "FallCheck",
    "BoundClaim",
    "SettingResult",
    "check_bound",
    "check_fall",
    "assess_setting",
]

TRACE, STDERR, BOUND, DRIVER = "hessian_trace", "hessian_trace_stderr", "hessian_trace_bound", "activation_rate"
#: A step violates the bound when the trace exceeds it by more than this many standard errors.
SIGMAS = 3.0
_NAMES = {TRACE: "trace", BOUND: "bound"}


@dataclass(frozen=True)
class BoundCheck:
    """The trace against the bound at every recorded step of every replica that did not diverge.

    Attributes:
        checked: (η, |B|, seed, step) points with a finite trace, s.e. and bound.
        violations: points with ``trace > bound + SIGMAS · s.e.``.
        max_ratio: the largest ``trace / bound`` (how tight the bound gets; NaN if none checked).
        median_ratio: the median ``trace / bound``.
        worst: the point with the largest ``(trace − bound) / s.e.``:
            ``{"lr", "batch_size", "seed", "step", "trace", "stderr", "bound"}`` (None if none checked).
        judgement: the bound rule's word and reason.
    """

    checked: int
    violations: int
    max_ratio: float
    median_ratio: float
    worst: dict | None
    judgement: Judgement


@dataclass(frozen=True)
class FallCheck:
    """A metric's fall from the first to the last recorded step, beside the activation rate's.

    Attributes:
        metric: ``"hessian_trace"`` or ``"hessian_trace_bound"``.
        changes: its change per (η, |B|), with 95% t-intervals over seeds.
        driver: the activation rate's change per (η, |B|).
        judgement: the follows rule's word and reason.
    """

    metric: str
    changes: tuple[DirectionChange, ...]
    driver: tuple[DirectionChange, ...]
    judgement: Judgement


@dataclass(frozen=True)
class BoundClaim:
    """One judged row of the closing table (``setting: statement``); every number already a string.

    Attributes:
        setting: e.g. ``"two-layer"``. statement: the claim part in words.
        paper: what the claim expects. measured: what was measured.
        rule: the :data:`~thermosgd.analysis.verdict.RULES` key that judged it.
        status, reason: the verdict word and why.
    """

    setting: str
    statement: str
    paper: str
    measured: str
    rule: str
    status: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SettingResult:
    """Everything judged on one setting's η sweep.

    Attributes:
        setting: its name. bound: :class:`BoundCheck`. falls: :class:`FallCheck` of the
        trace and of the bound. exponents: the collapse verdicts of the trace and of the bound.
    """

    setting: str
    bound: BoundCheck
    falls: tuple[FallCheck, ...]
    exponents: tuple[Verdict, ...]

    def claims(self) -> tuple[BoundClaim, ...]:
        """The rows: the bound holds; trace and bound fall with the activation rate; their η exponents."""
        b = self.bound
        rows = [
            BoundClaim(
                self.setting,
                f"trace ≤ bound + {SIGMAS:g} s.e. at every step",
                "no violation",
                f"{b.violations} of {b.checked} steps above; trace/bound ≤ {fmt.sig(b.max_ratio)}",
                "bound",
                b.judgement.status,
                b.judgement.reason,
            )
        ]
        for f in self.falls:
            top = _strongest(f.changes)
            measured = fmt.NA if top is None else top.text()
            rows.append(
                BoundClaim(
                    self.setting,
                    f"{_NAMES[f.metric]} falls with the activation rate",
                    "falls",
                    measured,
                    "follows",
                    f.judgement.status,
                    f.judgement.reason,
                )
            )
        for v in self.exponents:
            rows.append(
                BoundClaim(
                    self.setting,
                    f"{_NAMES[v.metric]}: η exponent α of its fall",
                    f"α = {fmt.sig(v.paper)} (as the activation rate)",
                    v.fitted(),
                    "exponent",
                    v.status,
                    v.note,
                )
            )
        return tuple(rows)

    def to_dict(self) -> dict:
        return {
            "setting": self.setting,
            "bound": asdict(self.bound),
            "falls": [asdict(f) for f in self.falls],
            "exponents": [v.to_dict() for v in self.exponents],
            "claims": [c.to_dict() for c in self.claims()],
        }


def _strongest(changes: tuple[DirectionChange, ...]) -> DirectionChange | None:
    """The largest η (then smallest |B|), as the direction rule reads it."""
    if not changes:
        return None
    return max(changes, key=lambda c: (c.lr if c.lr is not None else 0.0, -(c.batch_size or 0.0)))


def _alive(ds: xr.Dataset, da: xr.DataArray) -> xr.DataArray:
    """``da`` with diverged replicas as NaN (their numbers are no one's measurement)."""
    return da.where(~ds["diverged"].astype(bool)) if "diverged" in ds else da


def check_bound(ds: xr.Dataset, *, sigmas: float = SIGMAS) -> BoundCheck:
    """Count the recorded steps where the trace exceeds the bound by more than ``sigmas`` standard errors.

    Args:
        ds: study results with ``hessian_trace``, ``hessian_trace_stderr`` and ``hessian_trace_bound``.
        sigmas: the tolerance, in standard errors of Hutchinson's estimate.

    Returns:
        :class:`BoundCheck` ("not measured" when no step has all three numbers).
    """
    if not all(v in ds for v in (TRACE, STDERR, BOUND)):
        return BoundCheck(0, 0, math.nan, math.nan, None, judge_bound(None, 0))
    dims = ("lr", "batch_size", "seed", "step")
    trace, se, bound = (_alive(ds, ds[v]).transpose(*dims) for v in (TRACE, STDERR, BOUND))
    t, s, b = (np.asarray(x.values, dtype=float) for x in (trace, se, bound))
    ok = np.isfinite(t) & np.isfinite(s) & np.isfinite(b)
    checked = int(ok.sum())
    if not checked:
        return BoundCheck(0, 0, math.nan, math.nan, None, judge_bound(None, 0))
    excess = np.where(ok, (t - b) / np.maximum(s, np.finfo(float).tiny), -np.inf)
    violations = int((ok & (t > b + sigmas * s)).sum())
    i = np.unravel_index(int(np.argmax(excess)), excess.shape)
    worst = {d: ds[d].values[k].item() for d, k in zip(dims, i)}
    worst.update(trace=float(t[i]), stderr=float(s[i]), bound=float(b[i]))
    ratio = t[ok] / b[ok]
    judged = judge_bound(violations, checked)
    if violations:  # never noise at 3 s.e. on every step: say what it means and where to look
        judged = Judgement(
            judged.status,
            f"{judged.reason}: a bug or a broken assumption of Eq. 62; the worst at η = {fmt.sig(worst['lr'])}, "
            f"seed {worst['seed']}, step {worst['step']}: trace {fmt.sig(worst['trace'])} ± "
            f"{fmt.sig(worst['stderr'])}, bound {fmt.sig(worst['bound'])}",
        )
    return BoundCheck(checked, violations, float(ratio.max()), float(np.median(ratio)), worst, judged)


def check_fall(ds: xr.Dataset, metric: str) -> FallCheck:
    """Does ``metric`` fall from the first to the last recorded step where the activation rate falls?"""
    changes = direction_changes(ds, metric) if metric in ds else ()
    driver = direction_changes(ds, DRIVER) if DRIVER in ds else ()
    return FallCheck(metric, changes, driver, judge_follows(changes, driver, FALLS))


def assess_setting(
    ds: xr.Dataset, setting: str, *, margin: float = DEFAULT_MARGIN, n_boot: int = 1000
) -> SettingResult:
    """The bound check, the falls of trace and bound, and their η exponents on one η sweep.

    Args:
        ds: study results of one setting (dims ``(lr, batch_size, seed, step)``, one |B|).
        setting: its name in the rows, e.g. ``"two-layer"``.
        margin: the exponent rule's practical margin.
        n_boot: bootstrap resamples of each exponent's interval.
    """
    exponents = tuple(
        judge(ds, f"hessian-bound/{setting}", m, "lr", margin=margin, n_boot=n_boot) for m in (TRACE, BOUND)
    )
    return SettingResult(setting, check_bound(ds), (check_fall(ds, TRACE), check_fall(ds, BOUND)), exponents)
