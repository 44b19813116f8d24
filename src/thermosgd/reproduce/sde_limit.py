"""``thermosgd reproduce sde-limit``: the fig3 and fig7 settings under SVAG, l ∈ {1, 2, 4, 8}.

Each (setting, l) is an ordinary resumable sweep with ``[train] svag = l`` under
``OUT/runs/SETTING-lL``; its records sit at k/l in the original step units, so
one figure per setting shows the activation rate for every l on one axis
(``figures/sde_limit_SETTING``). The numbers
(:func:`thermosgd.analysis.mechanism.sde_limit_rows`) go to ``sde-limit.json``
and ``report.md``: the end activation rate per η and l, and the largest l
against l = 1, judged with the equivalence rule against the margin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import xarray as xr

from thermosgd import presets
from thermosgd.analysis.mechanism import sde_limit_rows
from thermosgd.analysis.verdict import DEFAULT_MARGIN, RULES, Verdict
from thermosgd.figures.mechanism import noise_models_figure
from thermosgd.figures.save import save_figure
from thermosgd.jsonsafe import json_safe
from thermosgd.sweep.run import run_sweep
from thermosgd.sweep.store import write_text

__all__ = ["reproduce_sde_limit", "report_markdown"]


def reproduce_sde_limit(
    preset: presets.Preset,
    out: Path,
    *,
    seeds: int | None = None,
    steps: int | None = None,
    quick: bool = False,
    progress: bool = True,
    device: str = "cpu",
    margin: float = DEFAULT_MARGIN,
    **executor,
) -> list[Verdict]:
    """Run every (setting, l), draw one figure per setting, write ``sde-limit.json`` and ``report.md``.

    Nothing is fitted; a diverged replica is left out of every mean. Returns no verdicts (the
    judged rows are in ``sde-limit.json``, named after the experiment as the report expects).
    """
    out = Path(out)
    seeds, steps = preset.size(seeds=seeds, steps=steps, quick=quick)
    params = preset.settings(quick=quick)
    factors = sorted(int(v) for v in params["svag"])
    results = {}
    for setting in params["settings"]:
        by_l: dict[int, xr.Dataset] = {}
        for factor in factors:
            cfg = presets.twolayer_config(presets.get(setting), seeds=seeds, steps=steps)
            cfg = cfg.replace(train={"svag": factor, "device": device})
            if progress:
                print(f"[sde-limit] {setting}, svag = {factor}")
            by_l[factor] = run_sweep(cfg, out / "runs" / f"{setting}-l{factor}", progress=progress, **executor)
        fig = noise_models_figure(
            {f"l = {k}": ds for k, ds in by_l.items()},
            "lr",
            title=f"{setting} under SVAG: activation rate against t·η², t = k/l in original steps, "
            f"{seeds} seeds × {steps} steps",
        )
        save_figure(fig, out / "figures" / f"sde_limit_{setting}")
        results[setting] = sde_limit_rows(by_l, "lr", margin=margin) if 1 in by_l else []
    summary: dict[str, Any] = {
        "preset": preset.name,
        "claim": preset.claim,
        "seeds": seeds,
        "steps": steps,
        "svag": factors,
        "margin": margin,
        "settings": {"seeds": seeds, "steps": steps, "svag": factors, "margin": margin, "settings": params["settings"]},
        "rule": RULES["equivalence"],
        "results": results,
    }
    summary["verdict"] = [  # in words, for the report's generic reader
        f"{setting}, η = {r['value']:g}: l = {v['l']} vs l = 1: {v['status']} ({v['reason']})"
        for setting, rows in results.items()
        for r in rows
        for v in [r["versus"]]
    ]
    write_text(out / "sde-limit.json", json.dumps(json_safe(summary), indent=2) + "\n")
    write_text(out / "report.md", report_markdown(preset, summary))
    if progress:
        for line in summary["verdict"]:
            print(f"[sde-limit] {line}")
    return []


def report_markdown(preset: presets.Preset, summary: dict) -> str:
    """``report.md``: end activation rate per η and l (mean ± s.e.), and the largest l against l = 1."""
    factors = summary["svag"]
    lines = [f"# {preset.name}: {preset.description}", "", f"Claim under test: {preset.claim}", ""]
    if summary["seeds"] <= 2 or summary["steps"] <= 100:
        lines += ["> **Smoke-test size** (few seeds or steps): nothing below is for conclusions.", ""]
    lines += [
        f"{summary['seeds']} seeds × {summary['steps']} steps (original step units; l·steps updates run). "
        "End activation rate: mean ± s.e. over seeds at the last step. Last column: the largest l minus l = 1, "
        "seed by seed, in the activation rate's change (95% t-interval), judged with the equivalence rule "
        f"(margin ± {summary['margin']:g} × l = 1's change): {summary['rule']}",
        "",
    ]
    for setting, rows in summary["results"].items():
        lines += [
            f"## {setting}",
            "",
            "| η | " + " | ".join(f"l = {k}" for k in factors) + f" | l = {factors[-1]} − l = 1 (change) | verdict |",
            "|---|" + "---|" * len(factors) + "---|---|",
        ]
        for r in rows:
            cells = " | ".join(f"{r['by_l'][k]['end']:.4f} ± {r['by_l'][k]['end_se']:.4f}" for k in factors)
            v = r["versus"]
            lines.append(
                f"| {r['value']:g} | {cells} | {v['difference']:+.4f} [{v['ci_low']:+.4f}, {v['ci_high']:+.4f}] | "
                f"**{v['status']}** |"
            )
        lines.append("")
    return "\n".join(lines)
