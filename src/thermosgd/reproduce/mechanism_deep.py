"""``thermosgd reproduce mechanism-deep``: fig2-middle-online under the four noise models, as studies.

fig2-middle-online's model and data (the 6-layer fully connected ReLU net of
width 100, online Gaussian inputs with random binary labels, |B| = 1) run at its
largest η with the study runner (:func:`thermosgd.studies.run.study`) under
``[train] noise`` = "sgd", "gd", "gaussian" and "frozen" (``gd_batch`` samples
per step for the last three), each a resumable results folder under
``OUT/runs/fig2-middle-online-NOISE``. Every noise model starts from the same
network per seed (the deep preset's own initialization). Only the largest η is
run: every number below is taken there, and each η of a study sees the same
samples and draws, so the others would cost time and add nothing (alone, the
largest η's replicas differ from the sweep's by float rounding only; the η sweep
itself is fig2-middle-online's). With two usable cores, "gd" and "gaussian"
train in a forked side process while "sgd" and "frozen" train here; on a GPU
(``device``) all four train here, one after another (a forked child cannot use
the CUDA its parent has started, and the GPU is where the parallelism is).

The numbers go to ``mechanism-deep.json`` and ``report.md``: per noise model and
metric (``grad_var``, ``activation_rate``) the change from step 0 to the last
step with its 95% t-interval over seeds, judged by the direction rule; then the
two-layer mechanism's claims
(:func:`thermosgd.analysis.mechanism.mechanism_claims`) for each metric. Studies
run in this process and its side process (their model is a Python factory),
whatever executor is asked for.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from torch import nn

from thermosgd import presets
from thermosgd.analysis.mechanism import claim_rows, mechanism_claims
from thermosgd.analysis.verdict import DEFAULT_MARGIN, RULES, direction_changes, judge_direction
from thermosgd.deep.models import mlp
from thermosgd.jsonsafe import json_safe
from thermosgd.reproduce.twolayer import _side_process
from thermosgd.studies.run import study
from thermosgd.sweep.store import load

__all__ = ["SETTING", "METRICS", "fig2_mlp", "reproduce_mechanism_deep", "report_markdown"]

#: The deep preset whose model and data are rerun under the noise models.
SETTING = "fig2-middle-online"
#: The metrics whose fall is measured and compared, the preset's own first.
METRICS = ("grad_var", "activation_rate")
_DEPTH = 6  # Linear layers of fig2-middle's net (Sec. 6)


def fig2_mlp(seed: int) -> nn.Module:
    """fig2-middle-online's network for ``seed``: the 6-layer ReLU net, width 100, one logit."""
    p = presets.get(SETTING).params
    return mlp(p["gaussian_dim"], p["width"], _DEPTH, 1, seed=seed)


def study_spec(preset: presets.Preset, noise: str, *, seeds: int, steps: int, quick: bool = False) -> dict:
    """The study of one noise model: fig2-middle-online's data, largest η and |B|; the preset's G and records."""
    deep, params = presets.get(SETTING).settings(quick=quick), preset.settings(quick=quick)
    return {
        "data": {"source": "gaussian", "dim": deep["gaussian_dim"], "online": True, "probe_size": deep["probe_size"]},
        "train": {
            "loss": "bce",
            "lr": [max(deep["lrs"])],  # the claims' setting (module docstring)
            "batch_size": list(presets.get(SETTING).params["batch_sizes"]),  # |B| = 1 at every size
            "seeds": seeds,
            "steps": steps,
            "noise": noise,
            "gd_batch": params["gd_batch"],
        },
        # Only step 0 and the last step enter the numbers; the points between show the path in results.nc.
        "record": {"points": params["points"]},
    }


def run_studies(
    preset: presets.Preset,
    out: Path,
    *,
    seeds: int,
    steps: int,
    quick: bool = False,
    progress: bool = True,
    side: bool = True,
    device: str = "cpu",
) -> dict[str, xr.Dataset]:
    """Every noise model's study into ``out/runs``, on ``device``; {noise model: results}. With ``side``
    and two usable cores the G-sample controls "gd" and "gaussian" run in a forked side process (one
    intra-op thread, as here), so a replica's bits do not depend on where it trained; never on a GPU
    (a forked child cannot use the CUDA its parent has started)."""
    noises = list(preset.settings(quick=quick)["noises"])
    beside = [n for n in noises if n in _BESIDE]
    pool = _side_process() if side and beside and device == "cpu" else None
    here = noises if pool is None else [n for n in noises if n not in beside]
    with pool if pool is not None else contextlib.nullcontext(), warnings.catch_warnings():
        # Python ≥ 3.12 warns on fork() beside torch's OpenMP threads: the child runs one intra-op thread.
        warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded", category=DeprecationWarning)
        later = (
            [pool.submit(_run_one, preset.name, n, out, seeds, steps, quick, progress) for n in beside] if pool else []
        )
        for noise in here:
            _run_one(preset.name, noise, out, seeds, steps, quick, progress, device)
        for f in later:
            f.result()
    return {n: load(_folder(out, n)) for n in noises}


# The two G-sample controls that cost about what "sgd" and "frozen" cost together (profiled on 2 cores).
_BESIDE = ("gd", "gaussian")


def _folder(out: Path, noise: str) -> Path:
    return out / "runs" / f"{SETTING}-{noise}"


def _run_one(
    name: str, noise: str, out: Path, seeds: int, steps: int, quick: bool, progress: bool, device: str = "cpu"
) -> None:
    """One noise model's study into its folder (by preset name: a worker process receives this)."""
    if progress:
        print(f"[mechanism-deep] {SETTING}, noise = {noise}", flush=True)
    spec = study_spec(presets.get(name), noise, seeds=seeds, steps=steps, quick=quick)
    study(spec, _folder(out, noise), model=fig2_mlp, device=device, progress=progress)


def reproduce_mechanism_deep(
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
) -> list:
    """Run a study per noise model, write ``mechanism-deep.json`` and ``report.md``; returns no verdicts
    (the judged rows are in the JSON's ``claims``, named after the experiment as the report expects)."""
    out = Path(out)
    seeds, steps = preset.size(seeds=seeds, steps=steps, quick=quick)
    params = preset.settings(quick=quick)
    inline = executor.get("executor") == "inline"
    if progress and executor.get("executor") not in (None, "auto", "inline"):
        print("[mechanism-deep] studies of a Python model factory run here and in one forked process")
    runs = run_studies(
        preset, out, seeds=seeds, steps=steps, quick=quick, progress=progress, side=not inline, device=device
    )
    falls = {noise: {m: fall(ds, m) for m in METRICS} for noise, ds in runs.items()}
    claims = [c for m in METRICS for c in mechanism_claims(runs, f"{SETTING} ({m})", "lr", margin=margin, metric=m)]
    spec = study_spec(preset, "sgd", seeds=seeds, steps=steps, quick=quick)
    settings = {
        "setting": SETTING,
        "seeds": seeds,
        "steps": steps,
        "gd_batch": params["gd_batch"],
        # gd's mean gradient over G fresh samples keeps |B|/G of SGD's noise variance (not none)
        "gd_residual_noise": min(spec["train"]["batch_size"]) / params["gd_batch"],
        "margin": margin,
        "noise_models": list(params["noises"]),
        "lrs": spec["train"]["lr"],
        "batch_size": spec["train"]["batch_size"],
        "probe_size": spec["data"]["probe_size"],
        "record_points": spec["record"]["points"],
        "metrics": list(METRICS),
    }
    summary: dict[str, Any] = {
        "preset": preset.name,
        "claim": preset.claim,
        "seeds": seeds,
        "steps": steps,
        "gd_batch": params["gd_batch"],
        "margin": margin,
        "settings": settings,
        "rules": {k: RULES[k] for k in ("direction", "difference", "equivalence")},
        "falls": falls,
        "claims": [c.to_dict() for c in claims],
    }
    summary["verdict"] = [  # in words, for the report's generic reader
        f"{noise}: {m} at η = {f['value']:g}: change {f['change']:+.3g} [{f['ci_low']:+.3g}, {f['ci_high']:+.3g}], "
        f"direction: {f['status']}"
        for noise, by_metric in falls.items()
        for m, f in by_metric.items()
    ] + [f"{c.setting}: {c.statement}: {c.status} ({c.reason})" for c in claims]
    (out / "mechanism-deep.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(preset, summary))
    if progress:
        for line in summary["verdict"]:
            print(f"[mechanism-deep] {line}")
    return []


def fall(ds: xr.Dataset, metric: str) -> dict:
    """``metric``'s change from step 0 to the last step at the largest η, with its 95% t-interval over seeds
    and the direction rule's word (claimed: it falls); diverged replicas are left out.

    Returns:
        ``{"value", "start", "end", "change", "ci_low", "ci_high", "seeds", "first_step", "last_step",
        "status", "reason"}`` (NaN numbers and "not measured" when no η has 2 seeds).
    """
    changes = direction_changes(ds, metric)
    judged = judge_direction(changes)
    value = float(ds["lr"].values.max())
    top = next((c for c in changes if c.lr == value), None)
    da = ds[metric].sel(lr=value).isel(batch_size=0)
    if "diverged" in ds:
        da = da.where(~ds["diverged"].sel(lr=value).isel(batch_size=0).astype(bool))
    start, end = (float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for v in _ends(da))
    nan = float("nan")
    return {
        "value": value,
        "start": start,
        "end": end,
        "change": top.change if top else nan,
        "ci_low": top.ci_low if top else nan,
        "ci_high": top.ci_high if top else nan,
        "seeds": top.n_seeds if top else 0,
        "first_step": int(ds["step"].values[0]),
        "last_step": int(ds["step"].values[-1]),
        "status": judged.status,
        "reason": judged.reason,
    }


def _ends(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    return da.isel(step=0).values.astype(float), da.isel(step=-1).values.astype(float)


def report_markdown(preset: presets.Preset, summary: dict) -> str:
    """``report.md``: each noise model's fall per metric, then the mechanism's claims per metric."""
    s = summary["settings"]
    lines = [f"# {preset.name}: {preset.description}", "", f"Claim under test: {preset.claim}", ""]
    if summary["seeds"] <= 2 or summary["steps"] <= 100:
        lines += ["> **Smoke-test size** (few seeds or steps): nothing below is for conclusions.", ""]
    lines += [
        f"{SETTING}'s model and data as studies: {summary['seeds']} seeds × {summary['steps']} steps, "
        f"η ∈ {{{', '.join(f'{v:g}' for v in s['lrs'])}}}, |B| = {', '.join(str(b) for b in s['batch_size'])}, "
        f"G = gd_batch = {summary['gd_batch']} samples per step for gd, gaussian and frozen (gd's mean gradient "
        f"keeps {s['gd_residual_noise']:.2g} of SGD's noise variance), probe set of "
        f"{s['probe_size']} samples. Every noise model starts from the same network per seed.",
        "",
        "## The fall at the largest η",
        "",
        "Change from step 0 to the last step, mean over seeds [95% t-interval], judged by the direction rule "
        f"(claimed: it falls): {summary['rules']['direction']}",
        "",
        "| noise | metric | η | start | end | change [95% CI] | seeds | direction |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for noise, by_metric in summary["falls"].items():
        for metric, f in by_metric.items():
            lines.append(
                f"| {noise} | {metric} | {f['value']:g} | {f['start']:.4g} | {f['end']:.4g} | "
                f"{f['change']:+.3g} [{f['ci_low']:+.3g}, {f['ci_high']:+.3g}] | {f['seeds']} | **{f['status']}** |"
            )
    lines += [
        "",
        "## The mechanism's claims",
        "",
        "Each compares a metric's change (step 0 → last step) at the largest η, seed by seed: mean difference "
        f"[95% t-interval]. Equivalence claims are judged against the margin (± {summary['margin']:g} of the "
        "reference change). "
        + " ".join(f"{k.capitalize()}: {rule}" for k, rule in summary["rules"].items() if k != "direction"),
        "",
        "| metric | claim | compared | η | difference [95% CI] | margin | seeds | verdict | why |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += claim_rows(summary["claims"], "metric", lambda c: f"{c['value']:g}", ".3g")
    return "\n".join(lines) + "\n"
