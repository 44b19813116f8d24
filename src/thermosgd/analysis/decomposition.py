"""The fall decomposed, in numbers: deterministic and noise-induced parts, and the shares of the noise.

Pure: a :func:`thermosgd.twolayer.decomposition.decomposition_runs` dataset in,
rows of numbers out. For each anchor, horizon k, observable q and noise model,
over the S states (independent SGD trajectories; each state's value is the mean
over its clones):

* **total** ``E[q_k] − q_0``, the mean change;
* **deterministic** ``q_k^free − q_0``, the noise-free path from the same state;
* **noise-induced** ``E[q_k] − q_k^free`` = total − deterministic.

Each with its mean, standard error over states and 95% t-interval (states are
independent, and the noise-free path of each state has its own sample, so its
sampling error is inside the scatter).

**Shares** of SGD's noise-induced part ``N = E[q_k]_sgd − q_k^free``, from the
same states (paired), which add up to 1:

* **θ-dependence** ``(sgd − frozen)/N``: what SGD's noise does beyond noise of the
  same initial size that does not follow θ;
* **state-independent noise** ``(frozen − gd)/N``: what noise of fixed size does
  beyond the G-sample mean gradient (the Itô/entropic part);
* **gd residual** ``(gd − free)/N``: what the G-sample mean gradient's own
  residual noise does (→ 0 as G grows).

With the fifth model "frozen_cov" (Σ̂(θ₀) in full, frozen at the start), the
θ-dependence share splits further into three that add up to it:

* **higher moments** ``(sgd − gaussian)/N``: SGD's noise is not Gaussian;
* **θ alone** ``(gaussian − frozen_cov)/N``: the covariance follows θ;
* **correlations** ``(frozen_cov − frozen)/N``: "frozen" drops the off-diagonal covariance.

Their intervals are percentile intervals of a paired bootstrap over states. A
share is given only where ``N`` itself is resolved (its t-interval excludes 0);
otherwise it is ``None`` with the reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr
from scipy.special import stdtrit

from thermosgd.analysis.verdict import DEFAULT_MARGIN, FALLS, Judgement, judge_difference, judge_equivalence

__all__ = ["mean_interval", "parts", "shares", "claims", "DecompositionClaim", "LEVEL", "CONTRASTS", "DETAIL"]

LEVEL = 0.95
#: Noise-model contrasts of the shares: name → (minuend, subtrahend); "free" is the noise-free path.
CONTRASTS = {
    "theta_dependence": ("sgd", "frozen"),
    "state_independent": ("frozen", "gd"),
    "gd_residual": ("gd", "free"),
}
#: The θ-dependence contrast split further (needs "gaussian" and "frozen_cov"); they add up to it.
DETAIL = {
    "higher_moments": ("sgd", "gaussian"),
    "theta_alone": ("gaussian", "frozen_cov"),
    "correlations": ("frozen_cov", "frozen"),
}


def mean_interval(values: np.ndarray, level: float = LEVEL) -> dict:
    """Mean, standard error and t-interval of independent values (S,) (S ≥ 2; NaN entries are dropped).

    Returns:
        ``{"mean", "se", "low", "high", "n"}``; the interval is NaN with fewer than 2 values.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n < 2:
        m = float(v.mean()) if n else math.nan
        return {"mean": m, "se": math.nan, "low": math.nan, "high": math.nan, "n": n}
    m, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(n))
    half = float(stdtrit(n - 1, 0.5 + level / 2)) * se
    return {"mean": m, "se": se, "low": m - half, "high": m + half, "n": n}


def _series(ds: xr.Dataset, q: str, noise: str) -> xr.DataArray:
    """q_k per (anchor, state, horizon) of one noise model, or of the noise-free path (``"free"``)."""
    return ds[f"{q}_free"] if noise == "free" else ds[q].sel(noise=noise, drop=True)


def parts(ds: xr.Dataset, observables=None) -> list[dict]:
    """Total, deterministic and noise-induced change per (anchor, horizon, observable, noise model).

    Args:
        ds: a decomposition dataset (dims noise, anchor, state, horizon).
        observables: names to report (default: every observable in ``ds``).

    Returns:
        Rows ``{anchor, horizon, observable, noise, total, deterministic, noise_induced}``,
        each of the last three a :func:`mean_interval` dict.
    """
    rows = []
    for q in observables or _observables(ds):
        start = ds[f"{q}_start"]
        free = (ds[f"{q}_free"] - start).transpose("anchor", "horizon", "state")
        for noise in ds["noise"].values:
            clone = _series(ds, q, str(noise))
            total = (clone - start).transpose("anchor", "horizon", "state")
            induced = (clone - ds[f"{q}_free"]).transpose("anchor", "horizon", "state")
            for a, anchor in enumerate(ds["anchor"].values):
                for h, k in enumerate(ds["horizon"].values):
                    rows.append(
                        {
                            "anchor": int(anchor),
                            "horizon": int(k),
                            "observable": q,
                            "noise": str(noise),
                            "total": mean_interval(total.values[a, h]),
                            "deterministic": mean_interval(free.values[a, h]),
                            "noise_induced": mean_interval(induced.values[a, h]),
                        }
                    )
    return rows


def shares(ds: xr.Dataset, observables=None, *, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """SGD's noise-induced change split into θ-dependence, state-independent noise and gd's residual.

    Args:
        ds: a decomposition dataset holding the noise models "sgd", "gd" and "frozen" (and, for
            :data:`DETAIL`, "gaussian" and "frozen_cov").
        observables: names to report (default: every observable in ``ds``).
        n_boot: paired bootstrap resamples of the states for the shares' intervals.
        seed: bootstrap seed.

    Returns:
        Rows ``{anchor, horizon, observable, sgd_noise_induced, contrasts, shares, note}``:
        ``sgd_noise_induced`` and each of ``contrasts[name]`` a :func:`mean_interval`
        dict; ``shares[name]`` ``{"share", "low", "high"}`` or None (``note`` says why).
    """
    rng = np.random.default_rng(seed)
    S = ds.sizes["state"]
    idx = rng.integers(0, S, size=(n_boot, S))
    present = [str(n) for n in ds["noise"].values] + ["free"]
    # The finer split where its models were run.
    contrasts = {**CONTRASTS, **{c: pm for c, pm in DETAIL.items() if set(pm) <= set(present)}}
    rows = []
    for q in observables or _observables(ds):
        series = {n: _series(ds, q, n).transpose("anchor", "horizon", "state").values for n in present}
        for a, anchor in enumerate(ds["anchor"].values):
            for h, k in enumerate(ds["horizon"].values):
                cut = {n: v[a, h] for n, v in series.items()}
                total = cut["sgd"] - cut["free"]
                n_sgd = mean_interval(total)
                row: dict = {
                    "anchor": int(anchor),
                    "horizon": int(k),
                    "observable": q,
                    "sgd_noise_induced": n_sgd,
                    "contrasts": {c: mean_interval(cut[p] - cut[m]) for c, (p, m) in contrasts.items()},
                }
                row["shares"], row["note"] = _share_intervals(cut, total, n_sgd, idx, contrasts)
                rows.append(row)
    return rows


def _share_intervals(cut: dict, total: np.ndarray, n_sgd: dict, idx: np.ndarray, contrasts: dict):
    """Point shares and paired-bootstrap percentile intervals, or (None per contrast, why)."""
    if not (n_sgd["low"] > 0 or n_sgd["high"] < 0):
        return {c: None for c in contrasts}, "SGD's noise-induced change is not resolved (its interval holds 0)"
    denominator = total[idx].mean(-1)  # (n_boot,)
    out = {}
    for c, (p, m) in contrasts.items():
        diff = cut[p] - cut[m]
        draws = diff[idx].mean(-1) / denominator
        lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        out[c] = {"share": float(diff.mean() / total.mean()), "low": float(lo), "high": float(hi)}
    return out, ""


def _observables(ds: xr.Dataset) -> list[str]:
    return [str(v) for v in ds.data_vars if f"{v}_free" in ds]


@dataclass(frozen=True)
class DecompositionClaim:
    """One judged row of the closing table: a part of the claim at one anchor, at the longest horizon.

    Attributes:
        setting: e.g. ``"activation rate, 100 steps from step 0"``. statement: the claim part in words.
        compared: the contrast, e.g. ``"sgd − frozen"``. rule: the
            :data:`~thermosgd.analysis.verdict.RULES` key that judged it.
        paper, measured: what the claim expects and what was measured, as text.
        difference, ci_low, ci_high: the contrast's mean over states and its 95% t-interval.
        margin: the equivalence margin in the observable's units (None for the difference rule).
        status, reason: the verdict word and why.
    """

    setting: str
    statement: str
    compared: str
    rule: str
    paper: str
    measured: str
    difference: float
    ci_low: float
    ci_high: float
    margin: float | None
    status: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def claims(rows: list[dict], *, observable: str = "activation_rate", margin: float = DEFAULT_MARGIN) -> list:
    """The claim's parts judged per anchor at the longest horizon, from :func:`shares`' rows.

    * "θ-dependence carries the fall": the contrast sgd − frozen is negative (the difference
      rule, claimed: falls, on its t-interval over states);
    * "state-independent noise does not": the contrast frozen − gd lies within ± ``margin`` of
      SGD's noise-induced change (the equivalence rule).

    Returns:
        :class:`DecompositionClaim` rows, anchor by anchor, the two parts each.
    """
    last = max((r["horizon"] for r in rows if r["observable"] == observable), default=None)
    out = []
    for r in rows:
        if r["observable"] != observable or r["horizon"] != last:
            continue
        setting = f"{observable.replace('_', ' ')}, {last} steps from step {r['anchor']}"
        n_sgd = r["sgd_noise_induced"]
        theta, state = r["contrasts"]["theta_dependence"], r["contrasts"]["state_independent"]
        j = judge_difference(theta["mean"], theta["se"], FALLS)
        out.append(_claim(setting, "θ-dependence of the noise carries the fall", "sgd − frozen", theta, j, None))
        band = margin * abs(n_sgd["mean"]) if math.isfinite(n_sgd["mean"]) else math.nan
        j = judge_equivalence(state["mean"], (state["low"], state["high"]), band)
        out.append(_claim(setting, "state-independent noise does not", "frozen − gd", state, j, band))
    return out


def _claim(
    setting: str, statement: str, compared: str, x: dict, j: Judgement, band: float | None
) -> DecompositionClaim:
    paper = "CI < 0" if band is None else "|diff| ≤ margin"
    measured = f"{x['mean']:+.3g} [{x['low']:+.3g}, {x['high']:+.3g}]"
    if band is not None:
        measured += f", margin ±{band:.2g}"
    rule = "difference" if band is None else "equivalence"
    return DecompositionClaim(
        setting,
        statement,
        compared,
        rule,
        f"{compared}: {paper}",
        measured,
        x["mean"],
        x["low"],
        x["high"],
        band,
        j.status,
        j.reason,
    )
