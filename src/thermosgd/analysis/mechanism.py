"""The noise-ablation experiment in numbers: which noise models give the paper's effect.

Pure: results datasets in, numbers and words out. For each (setting, noise
model) run this gives the end-of-run values and their change from the shared
initialization per swept value, the fitted collapse exponent of the activation
rate (:func:`~thermosgd.analysis.verdict.judge`), and a plain reading:

* **falls**: the activation rate at the last step is below its initial value
  by more than 3 standard errors (over non-diverged seeds) at the swept value
  with the largest expected effect (largest η, or smallest |B|);
* **collapses on the paper's scaling** (t·η² or t/|B|): "yes" when the paper's
  exponent lies inside the 95% CI and 0 does not; "no" when the paper's
  exponent lies outside; "undetermined" when the CI holds both, or reaches the
  fit's search bound (the curves do not tell rescalings apart);
* **reproduces the paper's effect**: it falls and collapses ("yes");
* against "sgd" (:func:`versus`): the ratio of the falls, and whether a control
  **matches SGD** (falls within 3 combined standard errors, overlapping
  exponent CIs) — the question of the ablation, independent of how exactly the
  paper's exponent holds.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from thermosgd.analysis.verdict import Verdict, judge
from thermosgd.presets import PAPER_EXPONENT

__all__ = ["end_values", "assess", "versus", "plain_verdict", "METRICS"]

#: Reported at the end of each run, with their change from initialization.
METRICS = ("activation_rate", "v_norm", "bias_mean")
_SIGNIFICANCE = 3.0  # standard errors


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan


def end_values(ds: xr.Dataset, over: str) -> list[dict]:
    """Per swept value: each metric's start, end (mean ± s.e. over seeds) and change end − start.

    Args:
        ds: results with dims (lr, batch_size, seed, step), the non-swept dim of size 1.
        over: ``"lr"`` or ``"batch_size"``.

    Returns:
        One dict per value of ``over`` (ascending): ``value``, ``replicas`` (kept),
        ``left_out`` (diverged), and per metric ``{start, end, end_se, change, change_se}``.
    """
    other = "batch_size" if over == "lr" else "lr"
    rows = []
    for v in np.sort(ds[over].values):
        sub = ds.sel({over: v}).isel({other: 0})
        alive = ~sub["diverged"].values.astype(bool) if "diverged" in sub else np.ones(sub.sizes["seed"], bool)
        row = {"value": float(v), "replicas": int(alive.sum()), "left_out": int((~alive).sum())}
        for m in METRICS:
            da = sub[m].transpose("seed", "step").values
            start, end = da[alive, 0], da[alive, -1]
            e, e_se = _mean_se(end)
            d, d_se = _mean_se(end - start)
            row[m] = {"start": _mean_se(start)[0], "end": e, "end_se": e_se, "change": d, "change_se": d_se}
        rows.append(row)
    return rows


def assess(ds: xr.Dataset, name: str, over: str, *, include_diverged: bool = False, n_boot: int | None = None) -> dict:
    """End values, the activation-rate collapse fit and the plain reading of one run (module docstring).

    Returns:
        dict with ``rows`` (:func:`end_values`), ``verdict`` (a
        :class:`~thermosgd.analysis.verdict.Verdict`), ``falls`` (bool),
        ``collapses`` ("yes", "no", "undetermined" or "not measured"),
        ``reproduces`` (bool) and ``words`` (one sentence).
    """
    rows = end_values(ds, over)
    boot = {} if n_boot is None else {"n_boot": n_boot}  # default: the verdicts' own resample count
    verdict = judge(ds, name, "activation_rate", over, include_diverged=include_diverged, **boot)
    strongest = rows[-1] if over == "lr" else rows[0]
    change = strongest["activation_rate"]
    falls = bool(
        change["change"] < 0 and change["change_se"] > 0 and -change["change"] > _SIGNIFICANCE * change["change_se"]
    )
    collapses = _collapses(verdict)
    out = {
        "rows": rows,
        "verdict": verdict,
        "falls": falls,
        "collapses": collapses,
        "reproduces": falls and collapses == "yes",
    }
    out["words"] = _words(out, over, strongest)
    return out


def _collapses(v: Verdict) -> str:
    if v.ci_low is None or v.ci_high is None:
        return "not measured"
    paper_in = v.ci_low <= v.paper <= v.ci_high
    lo, hi = v.fit["bounds"]
    # An interval holding 0, or reaching the search bound, does not single out a scaling.
    vague = v.ci_low <= 0 <= v.ci_high or v.ci_low <= lo + 1e-9 or v.ci_high >= hi - 1e-9
    if not paper_in:
        return "no"
    return "undetermined" if vague else "yes"


def _words(a: dict, over: str, strongest: dict) -> str:
    v: Verdict = a["verdict"]
    name = "η" if over == "lr" else "|B|"
    scaling = "t·η²" if over == "lr" else "t/|B|"
    c = strongest["activation_rate"]
    fall = (
        f"activation rate {c['start']:.3f} → {c['end']:.3f} (change {c['change']:+.3f} ± {c['change_se']:.3f}) "
        f"at {name} = {strongest['value']:g}"
    )
    fit = "no collapse fit" if v.exponent is None else v.fitted()
    if a["reproduces"]:
        return f"reproduces the effect: {fall}, and the curves collapse on {scaling} ({fit})"
    if not a["falls"]:
        return f"no significant fall: {fall}; {fit}"
    if a["collapses"] == "no":
        return f"falls, but not on {scaling}: {fall}; {fit} excludes {PAPER_EXPONENT[over]:g}"
    if v.exponent is not None and v.ci_low is None:
        return f"falls, scaling undetermined: {fall}; {fit}: too few seeds for an interval"
    return f"falls, scaling undetermined: {fall}; {fit} is too wide to single out a scaling"


def versus(assessed: dict[str, dict], reference: str = "sgd") -> dict[str, dict]:
    """Each noise model's activation-rate fall against the reference model's, at the strongest swept value.

    Returns:
        {noise model: ``{"fall_ratio", "fall_ratio_se", "matches"}``}: the ratio
        of the two falls (first-order standard error), and whether the model
        matches the reference: falls differing by less than 3 combined standard
        errors and overlapping exponent CIs. Empty without the reference model.
    """
    if reference not in assessed:
        return {}
    ref = assessed[reference]
    r_fall, r_se = _fall(ref)
    out = {}
    for noise, a in assessed.items():
        fall, se = _fall(a)
        ratio = fall / r_fall if r_fall else math.nan
        ratio_se = abs(ratio) * math.hypot(se / fall, r_se / r_fall) if fall and r_fall else math.nan
        if noise == reference:
            ratio_se = 0.0
        v, rv = a["verdict"], ref["verdict"]
        overlap = v.ci_low is not None and rv.ci_low is not None and v.ci_low <= rv.ci_high and rv.ci_low <= v.ci_high
        out[noise] = {
            "fall_ratio": ratio,
            "fall_ratio_se": ratio_se,
            "matches": bool(abs(fall - r_fall) <= _SIGNIFICANCE * math.hypot(se, r_se) and overlap),
        }
    return out


def _fall(a: dict) -> tuple[float, float]:
    rows = a["rows"]
    c = (rows[-1] if a["verdict"].over == "lr" else rows[0])["activation_rate"]
    return c["change"], c["change_se"]


def plain_verdict(assessed: dict[str, dict], setting: str) -> str:
    """One paragraph: which noise models reproduce the paper's effect, and SGD's fall, in one setting.

    Args:
        assessed: {noise model: :func:`assess` result}, with "sgd" among them for the comparison.
        setting: the setting's name, e.g. ``"fig3"``.
    """
    yes = [n for n, a in assessed.items() if a["reproduces"]]
    no = [n for n, a in assessed.items() if not a["reproduces"]]
    head = f"{setting}: the paper's effect (a fall of the activation rate that collapses on the paper's scaling) "
    if not yes:
        head += "appears under none of the noise models"
    else:
        head += f"appears under {', '.join(yes)}" + (f" and not under {', '.join(no)}" if no else "")
    vs = versus(assessed)
    if vs:
        same = [n for n, c in vs.items() if n != "sgd" and c["matches"]]
        head += (
            "; SGD's own fall is matched by "
            + (", ".join(same) if same else "none of the controls")
            + " ("
            + ", ".join(
                f"{n}: {c['fall_ratio']:.3f} ± {c['fall_ratio_se']:.3f} × sgd's fall"
                for n, c in vs.items()
                if n != "sgd"
            )
            + ")"
        )
    return head + ". " + " ".join(f"{n}: {a['words']}." for n, a in assessed.items())
