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

The mechanism's claims as their own rows (:func:`mechanism_claims`,
:class:`MechanismClaim`), each judged by a rule of
:mod:`thermosgd.analysis.verdict` on the change of the activation rate from
step 0 to the last step at the strongest setting, compared seed by seed (every
noise model starts from the same initialization per seed):

* **the fall needs noise**: gd − sgd > 0, the difference rule (``"agrees"`` when
  gd's change lies significantly above sgd's, i.e. it falls less);
* **second moments suffice**: gaussian − sgd = 0 within the margin, the
  equivalence rule, margin m·|sgd's change|;
* **it needs θ-dependent noise**: frozen − gd = 0 within the margin (noise of
  SGD's initial size that does not follow θ adds nothing to the noise-free
  fall), the equivalence rule, margin m·|sgd's change − gd's change|;
* **it survives the SDE limit**: sgd at svag = l − sgd = 0 within the margin, the
  equivalence rule, margin m·|sgd's change|.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from thermosgd.analysis.verdict import (
    DEFAULT_MARGIN,
    INCONCLUSIVE,
    MIN_SEEDS_FOR_VERDICT,
    NOT_MEASURED,
    RISES,
    Judgement,
    Verdict,
    check_margin,
    judge,
    judge_difference,
    judge_equivalence,
    t_interval,
)
from thermosgd.presets import PAPER_EXPONENT

__all__ = [
    "end_values",
    "assess",
    "versus",
    "plain_verdict",
    "METRICS",
    "MechanismClaim",
    "mechanism_claims",
    "paired_change",
    "sde_limit_rows",
]

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
        row: dict = {"value": float(v), "replicas": int(alive.sum()), "left_out": int((~alive).sum())}
        for m in METRICS:
            da = sub[m].transpose("seed", "step").values
            start, end = da[alive, 0], da[alive, -1]
            e, e_se = _mean_se(end)
            d, d_se = _mean_se(end - start)
            row[m] = {"start": _mean_se(start)[0], "end": e, "end_se": e_se, "change": d, "change_se": d_se}
        rows.append(row)
    return rows


def assess(
    ds: xr.Dataset,
    name: str,
    over: str,
    *,
    include_diverged: bool = False,
    n_boot: int | None = None,
    margin: float = DEFAULT_MARGIN,
) -> dict:
    """End values, the activation-rate collapse fit and the plain reading of one run (module docstring).

    ``margin``: the practical margin of the exponent's verdict (:func:`~thermosgd.analysis.verdict.judge`).

    Returns:
        dict with ``rows`` (:func:`end_values`), ``verdict`` (a
        :class:`~thermosgd.analysis.verdict.Verdict`), ``falls`` (bool),
        ``collapses`` ("yes", "no", "undetermined" or "not measured"),
        ``reproduces`` (bool) and ``words`` (one sentence).
    """
    rows = end_values(ds, over)
    # n_boot None: the verdicts' own resample count (judge's default).
    boot = {} if n_boot is None else {"n_boot": int(n_boot)}
    verdict = judge(ds, name, "activation_rate", over, include_diverged=include_diverged, margin=margin, **boot)  # type: ignore[arg-type]
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
    if v.ci_low is None or v.ci_high is None or v.fit is None:
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


# --------------------------------------------------------------------------- the mechanism's claims


@dataclass(frozen=True)
class MechanismClaim:
    """One claim about the mechanism in one setting, judged (a summary row).

    Attributes:
        claim: key (``needs_noise``, ``second_moments_suffice``, ``needs_theta_dependence``,
            ``survives_sde_limit``). statement: the claim in words. setting: e.g. ``"fig3"``.
        compared: the difference measured, e.g. ``"gd − sgd"``. rule: the
            :data:`~thermosgd.analysis.verdict.RULES` key that judged it.
        value: the swept value compared (the strongest setting), ``over`` its name.
        difference, se, ci_low, ci_high: the mean over seeds of the per-seed difference of
            the metric's change (first to last step), its standard error and 95% t-interval.
        seeds: seeds compared. reference: sgd's mean change there.
        margin: the equivalence margin in the metric's units (None for the difference rule).
        status, reason: the verdict word and why.
        metric: the metric whose change is compared (default the activation rate).
    """

    claim: str
    statement: str
    setting: str
    compared: str
    rule: str
    over: str
    value: float
    difference: float
    se: float
    ci_low: float
    ci_high: float
    seeds: int
    reference: float
    margin: float | None
    status: str
    reason: str
    metric: str = "activation_rate"

    def to_dict(self) -> dict:
        return asdict(self)


_STATEMENTS = {
    "needs_noise": ("the fall needs noise", "gd − sgd", "difference"),
    "second_moments_suffice": (
        "second moments suffice (Gaussian noise, SGD's covariance)",
        "gaussian − sgd",
        "equivalence",
    ),
    "needs_theta_dependence": (
        "it needs θ-dependent noise (frozen, diagonal noise adds nothing to gd)",
        "frozen − gd",
        "equivalence",
    ),
    "survives_sde_limit": ("it survives the SDE limit (SVAG)", "svag − sgd", "equivalence"),
}


def _changes(ds: xr.Dataset, over: str, value: float, metric: str) -> np.ndarray:
    """Per seed (S,): metric at the last step minus at step 0 at one swept value; NaN where diverged."""
    other = "batch_size" if over == "lr" else "lr"
    sub = ds.sel({over: value}).isel({other: 0})
    da = sub[metric].transpose("seed", "step").values
    change = da[:, -1] - da[:, 0]
    if "diverged" in sub:
        change = np.where(sub["diverged"].values.astype(bool), np.nan, change)
    return change


def strongest(ds: xr.Dataset, over: str) -> float:
    """The swept value with the largest expected effect: largest η, or smallest |B|."""
    values = ds[over].values
    return float(values.max() if over == "lr" else values.min())


def paired_change(
    a: xr.Dataset, b: xr.Dataset, over: str, *, metric: str = "activation_rate", value: float | None = None
) -> dict:
    """``a``'s change minus ``b``'s, seed by seed, at ``value`` of ``over`` (default: the strongest).

    Returns:
        ``{"value", "difference", "se", "ci_low", "ci_high", "seeds", "reference"}`` (``reference``:
        ``b``'s mean change); NaN entries where fewer than 2 seeds survive in both.
    """
    value = strongest(b, over) if value is None else float(value)
    da, db = _changes(a, over, value, metric), _changes(b, over, value, metric)
    seeds = np.intersect1d(a["seed"].values, b["seed"].values)
    da = da[np.isin(a["seed"].values, seeds)]
    db = db[np.isin(b["seed"].values, seeds)]
    d = (da - db)[np.isfinite(da - db)]
    ref = db[np.isfinite(db)]
    out = {"value": value, "seeds": int(d.size), "reference": float(ref.mean()) if ref.size else math.nan}
    if d.size < 2:
        return {**out, "difference": math.nan, "se": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean, low, high = t_interval(d)
    return {**out, "difference": mean, "se": float(d.std(ddof=1) / math.sqrt(d.size)), "ci_low": low, "ci_high": high}


def _judged(
    key: str, setting: str, over: str, p: dict, margin: float | None, metric: str = "activation_rate"
) -> MechanismClaim:
    statement, compared, rule = _STATEMENTS[key]
    if not math.isfinite(p["difference"]):
        j = Judgement(NOT_MEASURED, "fewer than 2 seeds compared")
    elif p["seeds"] < MIN_SEEDS_FOR_VERDICT:
        j = Judgement(INCONCLUSIVE, f"{p['seeds']} seeds compared; a verdict needs {MIN_SEEDS_FOR_VERDICT}")
    elif rule == "difference":
        j = judge_difference(p["difference"], p["se"], RISES)
    else:
        j = judge_equivalence(p["difference"], (p["ci_low"], p["ci_high"]), margin if margin is not None else math.nan)
    return MechanismClaim(
        key,
        statement,
        setting,
        compared,
        rule,
        over,
        p["value"],
        p["difference"],
        p["se"],
        p["ci_low"],
        p["ci_high"],
        p["seeds"],
        p["reference"],
        margin,
        j.status,
        j.reason,
        metric,
    )


def mechanism_claims(
    by_noise: dict[str, xr.Dataset],
    setting: str,
    over: str,
    *,
    svag: xr.Dataset | None = None,
    margin: float = DEFAULT_MARGIN,
    metric: str = "activation_rate",
) -> list[MechanismClaim]:
    """The mechanism's claims in one setting (module docstring), for the noise models present.

    Args:
        by_noise: {noise model: results}, with "sgd" (else nothing is judged).
        setting: the setting's name. over: the swept parameter.
        svag: results of sgd under ``[train] svag`` = l > 1, for the SDE-limit claim.
        margin: the practical margin, a fraction (see the module docstring for its reference).
        metric: the metric whose change (first to last step) is compared; any variable of the
            results with dims (lr, batch_size, seed, step), e.g. a study's ``grad_var``.
    """
    m = check_margin(margin)
    sgd = by_noise.get("sgd")
    if sgd is None:
        return []
    out = []
    gd = by_noise.get("gd")
    if gd is not None:
        out.append(_judged("needs_noise", setting, over, paired_change(gd, sgd, over, metric=metric), None, metric))
    if "gaussian" in by_noise:
        p = paired_change(by_noise["gaussian"], sgd, over, metric=metric)
        out.append(_judged("second_moments_suffice", setting, over, p, m * abs(p["reference"]), metric))
    if "frozen" in by_noise and gd is not None:
        noise_fall = paired_change(sgd, gd, over, metric=metric)["difference"]
        p = paired_change(by_noise["frozen"], gd, over, metric=metric)
        out.append(_judged("needs_theta_dependence", setting, over, p, m * abs(noise_fall), metric))
    if svag is not None:
        p = paired_change(svag, sgd, over, metric=metric)
        out.append(_judged("survives_sde_limit", setting, over, p, m * abs(p["reference"]), metric))
    return out


def sde_limit_rows(by_l: dict[int, xr.Dataset], over: str, *, margin: float = DEFAULT_MARGIN) -> list[dict]:
    """End activation rate per swept value and SVAG factor l, and l = 1 against the largest l.

    Args:
        by_l: {l: results of the same preset under ``[train] svag = l``}, with l = 1 among them.
        over: the swept parameter.
        margin: the equivalence margin, a fraction of l = 1's change at that value.

    Returns:
        One row per swept value (ascending): ``value``; ``by_l`` {l: :func:`end_values`' activation-rate
        dict plus ``replicas``}; ``versus`` (:func:`paired_change` of the largest l minus l = 1) with
        ``l``, ``margin`` (activation-rate units), ``status`` and ``reason`` of the equivalence rule.
    """
    m = check_margin(margin)
    top = max(by_l)
    base = by_l[1]
    rows = []
    for i, value in enumerate(np.sort(base[over].values)):
        cells = {}
        for factor, ds in sorted(by_l.items()):
            r = end_values(ds, over)[i]
            cells[factor] = {**r["activation_rate"], "replicas": r["replicas"]}
        p = paired_change(by_l[top], base, over, value=float(value))
        claim = _judged("survives_sde_limit", "", over, p, m * abs(p["reference"]))
        rows.append(
            {
                "value": float(value),
                "by_l": cells,
                "versus": {**p, "l": top, "margin": claim.margin, "status": claim.status, "reason": claim.reason},
            }
        )
    return rows


def claim_rows(claims: list[dict], first: str, value: Callable[[dict], str], digits: str) -> list[str]:
    """Markdown rows of the mechanism claims' table, shared by the two-layer and the deep reports.

    Args:
        claims: the claims as dicts (:func:`mechanism_claims`' fields).
        first: the key of the first column (``"setting"`` or ``"metric"``).
        value: writes the compared value's cell of a claim.
        digits: format of the differences and margins (``".4f"``, ``".3g"``).
    """
    rows = []
    for c in claims:
        margin = "—" if c["margin"] is None else f"±{c['margin']:{digits}}"
        rows.append(
            f"| {c[first]} | {c['statement']} | {c['compared']} | {value(c)} | "
            f"{c['difference']:+{digits}} [{c['ci_low']:+{digits}}, {c['ci_high']:+{digits}}] | {margin} | "
            f"{c['seeds']} | **{c['status']}** | {c['reason']} |"
        )
    return rows
