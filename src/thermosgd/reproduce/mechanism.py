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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from thermosgd import fmt, presets
from thermosgd.analysis.mechanism import (
    METRICS,
    assess,
    claim_rows,
    end_values,
    mechanism_claims,
    paired_change,
    plain_verdict,
    versus,
)
from thermosgd.analysis.verdict import DEFAULT_MARGIN, Verdict
from thermosgd.figures.mechanism import noise_models_figure
from thermosgd.figures.save import save_figure
from thermosgd.jsonsafe import json_safe
from thermosgd.reproduce.decomposition import reproduce_decomposition
from thermosgd.reproduce.mechanism_deep import reproduce_mechanism_deep
from thermosgd.reproduce.sde_limit import reproduce_sde_limit
from thermosgd.sweep.run import run_sweep
from thermosgd.sweep.store import write_text


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
    margin: float = DEFAULT_MARGIN,
    **executor,
) -> list[Verdict]:
    """Run every (setting, noise model), assess them, draw one figure per setting, write the report.

    ``sde-limit``, ``decomposition`` and ``mechanism-deep`` (kind "mechanism" too) run in their own modules. ``n_boot``:
    resamples of each collapse fit's interval; ``margin``: the practical margin of every verdict.

    Returns:
        One :class:`~thermosgd.analysis.verdict.Verdict` per run (preset ``mechanism/SETTING-NOISE``).
    """
    if preset.name == "decomposition":
        reproduce_decomposition(preset, out, seeds=seeds, steps=steps, quick=quick, progress=progress, margin=margin)
        return []
    if preset.name in _OWN_RUNNER:  # the same arguments as the SDE limit's runner
        own: dict[str, Any] = dict(
            seeds=seeds, steps=steps, quick=quick, progress=progress, device=device, margin=margin
        )
        return _OWN_RUNNER[preset.name](preset, out, **own, **executor)
    out = Path(out)
    seeds, steps = preset.size(seeds=seeds, steps=steps, quick=quick)
    params = preset.settings(quick=quick)
    sweep = _Sweeper(out / "runs", seeds, steps, params["gd_batch"], device, progress, executor)
    runs, over_of = _noise_runs(sweep, params)
    factor = params.get("svag", 1)
    svag = {
        s: sweep(s, f"{s}-sgd-svag{factor}", svag=factor) for s in params["settings"] if factor > 1 and "sgd" in runs[s]
    }
    finite: dict = params.get("finite") or {}
    sampled = {
        m: sweep(
            finite["setting"],
            f"{finite['setting']}-n{finite['train_size']}-{m}",
            train_size=finite["train_size"],
            sampling=m,
        )
        for m in (finite["samplings"] if finite else ())
    }
    assessed = {
        s: {
            n: assess(
                ds, f"mechanism/{s}-{n}", over_of[s], include_diverged=include_diverged, n_boot=n_boot, margin=margin
            )
            for n, ds in by_noise.items()
        }
        for s, by_noise in runs.items()
    }
    _draw(runs, assessed, over_of, out, f"{seeds} seeds × {steps} steps, G = {params['gd_batch']}")
    claims = [
        c for s in params["settings"] for c in mechanism_claims(runs[s], s, "lr", svag=svag.get(s), margin=margin)
    ]
    summary = _summary(preset, assessed, over_of, seeds=seeds, steps=steps, gd_batch=params["gd_batch"])
    summary["claims"], summary["sampling"] = [c.to_dict() for c in claims], _sampling(sampled, finite)
    summary["settings"].update(svag=factor, margin=margin, finite=finite)
    # The claims in words too: the report's generic reader shows the "verdict" lines on the page.
    summary["verdict"] += [f"{c.setting}: {c.statement}: {c.status} ({c.reason})" for c in claims]
    write_text(out / "mechanism.json", json.dumps(json_safe(summary), indent=2) + "\n")
    write_text(out / "report.md", report_markdown(preset, summary))
    if progress:
        for line in summary["verdict"]:
            print(f"[mechanism] {line}")
    return [a["verdict"] for by_noise in assessed.values() for a in by_noise.values()]


_OWN_RUNNER: dict[str, Callable[..., list]] = {
    "sde-limit": reproduce_sde_limit,
    "mechanism-deep": reproduce_mechanism_deep,
}


def _noise_runs(sweep: _Sweeper, params: dict) -> tuple[dict[str, dict[str, xr.Dataset]], dict[str, str]]:
    """Every (setting, noise model) of the ablation: {setting: {noise: results}} and each setting's swept parameter."""
    runs: dict[str, dict[str, xr.Dataset]] = {}
    over_of: dict[str, str] = {}
    for setting in params["settings"]:
        over_of[setting] = "lr"
        runs[setting] = {n: sweep(setting, f"{setting}-{n}", noise=n) for n in params["noises"]}
    batch = params["batch_sweep"]
    if params["batch_noises"]:
        over_of[batch] = "batch_size"
        runs[batch] = {n: sweep(batch, f"{batch}-{n}", noise=n) for n in params["batch_noises"]}
    return runs, over_of


def _draw(runs: dict, assessed: dict, over_of: dict, out: Path, size: str) -> None:
    """One figure per setting: the activation rate against the paper's rescaled time, a panel per noise model."""
    for setting, by_noise in runs.items():
        labels = {n: _fit_label(a["verdict"]) for n, a in assessed[setting].items()}
        scaling = "t·η²" if over_of[setting] == "lr" else "t/|B|"
        fig = noise_models_figure(
            by_noise,
            over_of[setting],
            fits=labels,
            title=f"{setting} setting: activation rate against {scaling} under {len(by_noise)} noise models, {size}",
        )
        save_figure(fig, out / "figures" / f"mechanism_{setting}")


class _Sweeper:
    """Runs one resumable sweep of a two-layer preset with train/data keys changed, under ``root/NAME``."""

    def __init__(self, root: Path, seeds: int, steps: int, gd_batch: int, device: str, progress: bool, executor: dict):
        self.root, self.seeds, self.steps, self.gd_batch = root, seeds, steps, gd_batch
        self.device, self.progress, self.executor = device, progress, executor

    def __call__(self, setting: str, name: str, *, train_size: int = 0, **train) -> xr.Dataset:
        cfg = presets.twolayer_config(presets.get(setting), seeds=self.seeds, steps=self.steps)
        data = {"train_size": train_size} if train_size else {}
        cfg = cfg.replace(train={"gd_batch": self.gd_batch, "device": self.device, **train}, data=data)
        if self.progress:
            print(f"[mechanism] {name}")
        return run_sweep(cfg, self.root / name, progress=self.progress, **self.executor)


def _sampling(sampled: dict[str, xr.Dataset], finite: dict) -> dict | None:
    """The finite-set variant: each sampling's activation-rate change, and reshuffle − iid seed by seed."""
    if not finite or "iid" not in sampled or "reshuffle" not in sampled:
        return None
    rows = {m: end_values(ds, "lr")[-1]["activation_rate"] for m, ds in sampled.items()}
    return {**finite, "changes": rows, "reshuffle_minus_iid": paired_change(sampled["reshuffle"], sampled["iid"], "lr")}


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
    lines += _claims_markdown(summary)
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
                else f"{v['symbol']} = {fmt.estimate(v['exponent'], v['ci_low'], v['ci_high'])}"
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


def _claims_markdown(summary: dict) -> list[str]:
    """The claims' rows and the finite-set comparison (empty when the summary has neither)."""
    lines: list[str] = []
    if summary.get("claims"):
        lines += [
            "",
            "## The mechanism's claims",
            "",
            "Each compares the activation rate's change (step 0 → last step) at the strongest setting, seed by "
            "seed: mean difference [95% t-interval]. Equivalence claims are judged against the margin "
            f"(± {summary['settings']['margin']:g} of the reference change; see the rules).",
            "",
            "| setting | claim | compared | value | difference [95% CI] | margin | seeds | verdict | why |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += claim_rows(summary["claims"], "setting", lambda c: f"{c['over']} = {c['value']:g}", ".4f")
    f = summary.get("sampling")
    if f:
        d = f["reshuffle_minus_iid"]
        lines += [
            "",
            f"## Finite training set ({f['setting']}, train_size = {f['train_size']}): iid vs reshuffle",
            "",
            "| sampling | activation-rate change (mean ± s.e.) |",
            "|---|---|",
        ]
        lines += [f"| {m} | {c['change']:+.4f} ± {c['change_se']:.4f} |" for m, c in f["changes"].items()]
        lines += [
            "",
            f"reshuffle − iid, seed by seed at η = {d['value']:g}: {d['difference']:+.4f} "
            f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] (95% t-interval, {d['seeds']} seeds).",
        ]
    return lines
