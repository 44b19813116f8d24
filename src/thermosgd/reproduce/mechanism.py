"""``thermosgd reproduce mechanism``: the two-layer presets rerun with the noise swapped.

Keeps everything fixed (model, data stream, the shared initialization, step
size, schedule) and changes only the noise of each step (``[train] noise``):
the fig3 and fig7 settings under "sgd", "gd", "gaussian" and "frozen", and
fig5's |B| sweep at η = 0.05 under "sgd" and "gaussian". Each run is an
ordinary resumable sweep under ``OUT/runs/SETTING-NOISE``; the numbers
(:mod:`thermosgd.analysis.mechanism`) go to ``mechanism.json`` and
``report.md``, one figure per setting to ``figures/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import xarray as xr

from thermosgd import presets
from thermosgd.analysis.mechanism import METRICS, assess, plain_verdict, versus
from thermosgd.analysis.verdict import Verdict
from thermosgd.figures.mechanism import noise_models_figure
from thermosgd.figures.save import save_figure
from thermosgd.jsonsafe import json_safe
from thermosgd.sweep.run import run_sweep


def reproduce_mechanism(
    preset: presets.Preset,
    out: Path,
    *,
    seeds: int | None = None,
    steps: int | None = None,
    quick: bool = False,
    include_diverged: bool = False,
    progress: bool = True,
    n_boot: int | None = None,
    device: str = "cpu",
    **executor,
) -> list[Verdict]:
    """Run every (setting, noise model), assess them, draw one figure per setting, write the report.

    ``n_boot`` bootstrap resamples give each collapse fit's interval (default: the verdicts' own).

    Returns:
        One :class:`~thermosgd.analysis.verdict.Verdict` per run (preset ``mechanism/SETTING-NOISE``).
    """
    out = Path(out)
    seeds, steps = preset.size(seeds=seeds, steps=steps, quick=quick)
    params = preset.settings(quick=quick)
    jobs = [(s, "lr", n) for s in params["settings"] for n in params["noises"]]
    jobs += [(params["batch_sweep"], "batch_size", n) for n in params["batch_noises"]]
    runs: dict[str, dict[str, xr.Dataset]] = {}
    over_of: dict[str, str] = {}
    for setting, over, noise in jobs:
        cfg = presets.twolayer_config(presets.get(setting), seeds=seeds, steps=steps)
        cfg = cfg.replace(train={"noise": noise, "gd_batch": params["gd_batch"], "device": device})
        if progress:
            print(f"[mechanism] {setting}, noise = {noise}")
        runs.setdefault(setting, {})[noise] = run_sweep(
            cfg, out / "runs" / f"{setting}-{noise}", progress=progress, **executor
        )
        over_of[setting] = over

    assessed = {
        s: {
            n: assess(ds, f"mechanism/{s}-{n}", over_of[s], include_diverged=include_diverged, n_boot=n_boot)
            for n, ds in by_noise.items()
        }
        for s, by_noise in runs.items()
    }
    for setting, by_noise in runs.items():
        labels = {n: _fit_label(a["verdict"]) for n, a in assessed[setting].items()}
        scaling = "t·η²" if over_of[setting] == "lr" else "t/|B|"
        fig = noise_models_figure(
            by_noise,
            over_of[setting],
            fits=labels,
            title=f"{setting} setting: activation rate against {scaling} under {len(by_noise)} noise "
            f"models, {seeds} seeds × {steps} steps, G = {params['gd_batch']}",
        )
        save_figure(fig, out / "figures" / f"mechanism_{setting}")
    summary = _summary(preset, assessed, over_of, seeds=seeds, steps=steps, gd_batch=params["gd_batch"])
    (out / "mechanism.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(preset, summary))
    if progress:
        for line in summary["verdict"]:
            print(f"[mechanism] {line}")
    return [a["verdict"] for by_noise in assessed.values() for a in by_noise.values()]


def _fit_label(v: Verdict) -> str:
    return "no fit" if v.exponent is None else v.fitted()


def _summary(preset, assessed, over_of, *, seeds: int, steps: int, gd_batch: int) -> dict:
    """``mechanism.json``: what was run (``settings``), per setting and noise model the numbers
    (``results``), the activation-rate fits (``collapse``, keyed ``SETTING-NOISE``) and the verdict in words."""
    results, collapse = {}, {}
    for setting, by_noise in assessed.items():
        vs = versus(by_noise)
        results[setting] = {
            "over": over_of[setting],
            "noise_models": {
                n: {
                    "rows": a["rows"],
                    "verdict": a["verdict"].to_dict(),
                    "falls": a["falls"],
                    "collapses": a["collapses"],
                    "reproduces": a["reproduces"],
                    "words": a["words"],
                    "versus_sgd": vs.get(n),
                }
                for n, a in by_noise.items()
            },
        }
        collapse.update({f"{setting}-{n}": a["verdict"].fit for n, a in by_noise.items()})
    params = preset.params
    return {
        "preset": preset.name,
        "claim": preset.claim,
        "seeds": seeds,
        "steps": steps,
        "gd_batch": gd_batch,
        "settings": {
            "seeds": seeds,
            "steps": steps,
            "gd_batch": gd_batch,
            "settings": list(assessed),
            "noise_models": list(params["noises"]),
            "batch_sweep_noise_models": list(params["batch_noises"]),
        },
        "results": results,
        "collapse": collapse,
        "verdict": [plain_verdict(by_noise, s) for s, by_noise in assessed.items()],
    }


def report_markdown(preset: presets.Preset, summary: dict) -> str:
    """``report.md``: end-of-run values per noise model and swept value, fits, and the verdict in words."""
    lines = [f"# {preset.name}: {preset.description}", "", f"Paper: {preset.claim}", ""]
    if summary["seeds"] <= 2 or summary["steps"] <= 100:
        lines += ["> **Smoke-test size** (few seeds or steps): nothing below is for conclusions.", ""]
    lines += [
        f"{summary['seeds']} seeds, {summary['steps']} steps, G = gd_batch = {summary['gd_batch']} samples "
        "per step for gd, gaussian and frozen. Values are means ± standard errors over the seeds that did "
        "not diverge, at the last step; changes are from the shared initialization.",
        "",
        "## Verdict",
        "",
    ]
    lines += [f"- {v}" for v in summary["verdict"]]
    lines += [
        "",
        "## Collapse of the activation rate",
        "",
        "| setting | noise | fitted exponent [95% CI] | paper | collapses on the paper's scaling | falls | "
        "reproduces the effect | fall / sgd's fall | matches sgd | left out |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting, s in summary["results"].items():
        for noise, a in s["noise_models"].items():
            v = a["verdict"]
            fit = (
                "n/a"
                if v["exponent"] is None
                else f"{v['symbol']} = {v['exponent']:.2f}"
                + (" (no CI)" if v["ci_low"] is None else f" [{v['ci_low']:.2f}, {v['ci_high']:.2f}]")
            )
            gone = sum(x["count"] for x in v["left_out"])
            c = a["versus_sgd"] or {}
            ratio = "" if not c else f"{c['fall_ratio']:.3f} ± {c['fall_ratio_se']:.3f}"
            match = "" if not c or noise == "sgd" else ("**yes**" if c["matches"] else "no")
            lines.append(
                f"| {setting} | {noise} | {fit} | {v['paper']:g} | {a['collapses']} | "
                f"{'yes' if a['falls'] else 'no'} | {'**yes**' if a['reproduces'] else 'no'} | {ratio} | "
                f"{match} | {gone} |"
            )
    lines += ["", "## End of run", ""]
    for setting, s in summary["results"].items():
        sym = "η" if s["over"] == "lr" else "|B|"
        lines += [
            f"### {setting}",
            "",
            f"| noise | {sym} | activation rate | change | ‖V‖ | change | mean b | change | replicas |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for noise, a in s["noise_models"].items():
            for r in a["rows"]:
                cells = []
                for m in METRICS:
                    x = r[m]
                    cells += [f"{x['end']:.4f} ± {x['end_se']:.4f}", f"{x['change']:+.4f} ± {x['change_se']:.4f}"]
                lines.append(f"| {noise} | {r['value']:g} | " + " | ".join(cells) + f" | {r['replicas']} |")
        lines.append("")
    return "\n".join(lines)
