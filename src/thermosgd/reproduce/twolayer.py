"""Two-layer presets: run the sweep, fit the collapse, draw the figures, write the report.

Data flows one way: preset → sweep (results on disk) → collapse fit → figures,
``summary.json`` and ``report.md`` read from the results.
"""

from __future__ import annotations

import json
from pathlib import Path

import xarray as xr

from thermosgd import fmt, presets
from thermosgd.analysis import fit_collapse
from thermosgd.errors import UsageError
from thermosgd.figures import sweep_figure
from thermosgd.figures.collapse import collapse_panel
from thermosgd.sweep.run import run_sweep


def reproduce_twolayer(
    preset: presets.Preset,
    out: Path,
    *,
    seeds: int | None = None,
    steps: int | None = None,
    quick: bool = False,
    progress: bool = True,
    **executor,
) -> list[Path]:
    """Run a two-layer preset's sweep into ``out``; draw and fit every figure of its experiment.

    Writes ``figures/NAME.{png,pdf}`` (the paper's panels plus one rescaled by the
    fitted exponent), ``summary.json`` and ``report.md`` (initial/final values and
    the fitted exponents next to the paper's prediction: α = 2, β = 1).
    """
    cfg = presets.twolayer_config(preset, seeds=seeds, steps=steps, quick=quick)
    ds = run_sweep(cfg, out, progress=progress, **executor)
    files, fits = [], {}
    for p in presets.experiment_presets(preset):
        fit = collapse_fit(ds, p)
        fits[p.metric] = fit
        files += twolayer_figure(ds, p, out / "figures", fit)
    summary = summarize(ds, preset.over)
    summary["collapse"] = {m: (f.to_dict() if f is not None else None) for m, f in fits.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(preset, summary))
    if progress:
        for metric, fit in fits.items():
            print(f"[{preset.name}] {metric}: {verdict(fit, preset.over)}")
    return files


def verdict(fit, over: str) -> str:
    """One line: fitted exponent, its CI, and whether the paper's value lies inside."""
    sym, predicted = presets.EXPONENT_SYMBOL[over], presets.PAPER_EXPONENT[over]
    if fit is None:
        return "no collapse fit (needs ≥ 2 swept values and ≥ 2 seeds)"
    inside = fit.ci_low <= predicted <= fit.ci_high
    edge = " (the CI reaches the search bound: the curves barely constrain it)" if (
        fit.ci_low <= fit.bounds[0] + 1e-9 or fit.ci_high >= fit.bounds[1] - 1e-9) else ""
    return (f"fitted {sym} = {fmt.exponent(fit.exponent)}, 95% CI {fmt.interval(fit.ci_low, fit.ci_high)}{edge}; "
            f"paper {sym} = {fmt.sig(predicted)}: " + ("consistent" if inside else "DISAGREES (paper's value "
                                                       f"outside the CI by {fmt.exponent(_gap(fit, predicted))})"))


def _gap(fit, predicted: float) -> float:
    return fit.ci_low - predicted if predicted < fit.ci_low else predicted - fit.ci_high


def collapse_fit(ds: xr.Dataset, preset: presets.Preset):
    """The fitted collapse exponent for one preset's metric, or None if not fittable."""
    if ds.sizes[preset.over] < 2 or ds.sizes["seed"] < 2:
        return None
    try:
        return fit_collapse(ds, preset.metric, preset.over)
    except UsageError:  # e.g. every replica of a value diverged
        return None


def twolayer_figure(ds: xr.Dataset, preset: presets.Preset, folder: Path, fit=None) -> list[Path]:
    """The paper's panels for one preset, plus a panel at the fitted collapse exponent."""
    extra = extra_title = None
    if fit is not None:
        sym = presets.EXPONENT_SYMBOL[preset.over]
        extra_title = f"fitted {sym} = {fit.exponent:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}] (95% bootstrap)"
        extra = lambda ax: collapse_panel(ax, ds, preset.metric, preset.over, fit.exponent)  # noqa: E731
    return sweep_figure(
        ds, preset.metric, over=preset.over, out_stem=folder / preset.name,
        title=f"{preset.name}: {preset.description}", extra_panel=extra, extra_title=extra_title,
    )


def report_markdown(preset: presets.Preset, summary: dict) -> str:
    """A short human-readable report: values per swept setting and fitted exponents."""
    sym = "η" if preset.over == "lr" else "|B|"
    predicted = preset.paper_exponent
    lines = [f"# {preset.experiment}: {preset.description}", ""]
    if summary["seeds"] <= 2 or summary["steps"] <= 100:
        lines += ["> **Smoke-test size** (few seeds or steps): the fits below are not for conclusions.", ""]
    lines += [f"{summary['seeds']} seeds, {summary['steps']} steps, {summary['diverged']} diverged replicas.", ""]
    for metric, rows in summary["metrics"].items():
        lines += [f"## {metric}", "", f"| {sym} | initial | final |", "|---|---|---|"]
        lines += [f"| {k} | {v['initial']:.4f} | {v['final']:.4f} |" for k, v in rows.items()]
        lines.append("")
    lines += ["## Collapse fit", "", "| metric | fitted exponent | 95% CI | paper | paper inside CI? | score (0 = perfect) |",
              "|---|---|---|---|---|---|"]
    for metric, fit in summary["collapse"].items():
        if fit is None:
            lines.append(f"| {metric} | n/a (needs ≥ 2 swept values and ≥ 2 seeds) | | {predicted:g} | | |")
        else:
            inside = "yes" if fit["ci_low"] <= predicted <= fit["ci_high"] else "**no**"
            lines.append(f"| {metric} | {fit['exponent']:.3f} | [{fit['ci_low']:.3f}, {fit['ci_high']:.3f}] "
                         f"| {predicted:g} | {inside} | {fit['score']:.2e} |")
    lines.append("")
    return "\n".join(lines)


def summarize(ds: xr.Dataset, over: str) -> dict:
    """Initial and final seed-mean of the main metrics for each swept value."""
    out = {"over": over, "steps": int(ds["step"].values[-1]), "seeds": int(ds.sizes["seed"]),
           "diverged": int(ds["diverged"].values.sum()), "metrics": {}}
    for metric in ("activation_rate", "v_norm", "bias_mean", "loss"):
        if metric not in ds:
            continue
        m = ds[metric].where(~ds["diverged"]).mean("seed", skipna=True)
        rows = {}
        for v in ds[over].values:
            series = m.sel({over: v}).squeeze(drop=True)
            if series.ndim != 1:
                continue
            valid = series.dropna("step")
            if valid.sizes["step"] == 0:
                continue
            rows[f"{float(v):g}"] = {"initial": float(valid[0]), "final": float(valid[-1])}
        out["metrics"][metric] = rows
    return out
