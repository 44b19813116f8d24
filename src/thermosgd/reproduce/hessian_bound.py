"""``thermosgd reproduce hessian-bound``: Hutchinson's Hessian trace against its bound (earlier version, A.8).

Two η sweeps as studies (:func:`thermosgd.studies.run.study`) with
``[record] hessian = true``: fig3's two-layer net (``nn.Sequential`` of Linear,
ReLU, Linear without output bias) on online Gaussian inputs, and
fig2-middle-online's 6-layer MLP, both with random binary labels, the BCE loss
and |B| = 1: the two models the bound (Eq. 62) covers. Each study's raw
results stay in ``OUT/runs/SETTING/results.nc``; the analysis
(:mod:`thermosgd.analysis.hessian_bound`) reads them back from there and its
numbers go to ``hessian-bound.json`` and ``report.md``, the figure to
``hessian_bound.png``/``.pdf``. ``--seeds`` and ``--steps`` set the size of
both sweeps (default: 8 × 2000 for the two-layer net, 4 × 300 for the MLP).
"""

from __future__ import annotations

import json
from pathlib import Path

import xarray as xr
from torch import nn

from thermosgd import presets
from thermosgd.analysis.hessian_bound import SIGMAS, SettingResult, assess_setting
from thermosgd.analysis.verdict import DEFAULT_MARGIN, RULES
from thermosgd.errors import UsageError
from thermosgd.figures.hessian_bound import hessian_bound_figure
from thermosgd.figures.save import save_figure
from thermosgd.jsonsafe import json_safe
from thermosgd.reproduce.mechanism_deep import fig2_mlp
from thermosgd.studies.run import study
from thermosgd.sweep.store import load, safe_folder, write_text

__all__ = ["PRESET", "run_hessian_bound", "assess_folder", "study_spec", "report_markdown"]

#: The preset this module runs.
PRESET = "hessian-bound"


def _two_layer(inputs: int, hidden: int):
    """fig3's net as an nn.Module: ``z = V relu(W x + b)`` (the two-layer engine's model, no output bias)."""

    def factory(seed: int) -> nn.Module:
        del seed  # the study runner seeds torch's global generator from the seed before this call
        return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 1, bias=False))

    return factory


def _model(setting: dict):
    """fig2-middle-online's MLP where the setting names that preset, else fig3's two-layer net."""
    return fig2_mlp if "setting" in setting else _two_layer(setting["inputs"], setting["hidden"])


def study_spec(params: dict, name: str, *, seeds: int | None = None, steps: int | None = None) -> dict:
    """The study of one setting: online Gaussian inputs, random labels, BCE, |B| = 1, Hessian recorded."""
    setting = params["settings"][name]
    dim = presets.get(setting["setting"]).params["gaussian_dim"] if "setting" in setting else setting["inputs"]
    return {
        "data": {"source": "gaussian", "dim": dim, "online": True, "probe_size": params["probe_size"]},
        "train": {
            "loss": "bce",
            "lr": list(setting["lrs"]),
            "batch_size": [1],
            "seeds": seeds or setting["seeds"],
            "steps": steps or setting["steps"],
        },
        "record": {
            "points": params["points"],
            "hessian": True,
            "hessian_samples": setting.get("hessian_samples", params["hessian_samples"]),
        },
    }


def run_hessian_bound(
    out: Path,
    *,
    quick: bool = False,
    seeds: int | None = None,
    steps: int | None = None,
    progress: bool = True,
    margin: float = DEFAULT_MARGIN,
) -> dict:
    """Run both studies into ``out/runs/``, then analyse what they wrote; returns the summary."""
    if seeds is not None and seeds < 2:
        raise UsageError(f"seeds must be at least 2 for {PRESET}: its intervals are over seeds", param="seeds")
    out = safe_folder(Path(out))
    params = presets.get(PRESET).settings(quick=quick)
    for name in params["settings"]:
        if progress:
            print(f"[{PRESET}] {name}")
        spec = study_spec(params, name, seeds=seeds, steps=steps)
        study(spec, out / "runs" / name, model=_model(params["settings"][name]), progress=progress)
    summary = assess_folder(out, margin=margin, n_boot=params["n_boot"])
    if progress:
        for line in summary["verdict"]:
            print(f"[{PRESET}] {line}")
    return summary


def assess_folder(out: Path, *, margin: float = DEFAULT_MARGIN, n_boot: int = 1000) -> dict:
    """Read the studies back from ``out/runs/``, judge them, write ``hessian-bound.json``, ``report.md``
    and the figure; returns the summary (the same numbers as the JSON)."""
    out = Path(out)
    params = presets.get(PRESET).params
    runs: dict[str, xr.Dataset] = {
        name: load(out / "runs" / name) for name in params["settings"] if (out / "runs" / name / "results.nc").exists()
    }
    results = [assess_setting(ds, name, margin=margin, n_boot=n_boot) for name, ds in runs.items()]
    summary = _summary(runs, results, margin)
    write_text(out / f"{PRESET}.json", json.dumps(json_safe(summary), indent=2) + "\n")
    write_text(out / "report.md", report_markdown(summary))
    fig = hessian_bound_figure(runs, title="Hessian trace and its bound (Eq. 62) during training, per η")
    save_figure(fig, out / "hessian_bound")
    return summary


def _summary(runs: dict[str, xr.Dataset], results: list[SettingResult], margin: float) -> dict:
    preset = presets.get(PRESET)
    settings: dict = {}
    for name, ds in runs.items():
        config = json.loads(ds.attrs.get("config", "{}")).get("study", {})
        settings[f"{name}: η"] = ", ".join(f"{v:g}" for v in ds["lr"].values)
        settings[f"{name}: seeds × steps"] = f"{ds.sizes['seed']} × {int(ds['step'].values[-1])}"
        settings[f"{name}: probe set, Hutchinson probes, recorded steps"] = (
            f"{config.get('data', {}).get('probe_size')}, {config.get('record', {}).get('hessian_samples')}, "
            f"{ds.sizes['step']}"
        )
    settings["margin"] = margin
    claims = [c for r in results for c in r.claims()]
    return {
        "preset": preset.name,
        "claim": preset.claim,
        "settings": settings,
        "sigmas": SIGMAS,
        "rules": {k: RULES[k] for k in ("bound", "follows", "exponent")},
        "results": [r.to_dict() for r in results],
        "claims": [c.to_dict() for c in claims],
        "verdict": [f"{c.setting}: {c.statement}: {c.measured}: {c.status} ({c.reason})" for c in claims],
    }


def report_markdown(summary: dict) -> str:
    """``report.md``: what was run, then one row per claim part with its rule's word."""
    preset = presets.get(PRESET)
    lines = [f"# {preset.name}: {preset.description}", "", f"Claim under test: {summary['claim']}", ""]
    lines += [f"- {k}: {v}" for k, v in summary["settings"].items()]
    lines += ["", "Rules: " + " ".join(f"{k.capitalize()}: {r}" for k, r in summary["rules"].items()), ""]
    lines += ["| setting | claim | expected | measured | verdict | why |", "|---|---|---|---|---|---|"]
    for c in summary["claims"]:
        lines.append(
            f"| {c['setting']} | {c['statement']} | {c['paper']} | {c['measured']} | **{c['status']}** | "
            f"{c['reason']} |"
        )
    for r in summary["results"]:
        w = r["bound"]["worst"]
        if w:
            lines += [
                "",
                f"{r['setting']}: closest approach to the bound at η = {w['lr']:g}, seed {w['seed']}, step "
                f"{w['step']}: trace {w['trace']:.4g} ± {w['stderr']:.2g}, bound {w['bound']:.4g} (median trace/bound "
                f"{r['bound']['median_ratio']:.3g}).",
            ]
    return "\n".join(lines) + "\n"
