"""Two-layer presets: run the sweep, fit the collapse, draw the figures, write the report.

Data flows one way: preset → sweep (results on disk) → collapse fit → figures,
``summary.json`` and ``report.md`` read from the results.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import xarray as xr

from thermosgd import presets
from thermosgd.analysis.verdict import Verdict, judge
from thermosgd.figures import sweep_figure
from thermosgd.figures.collapse import collapse_panel
from thermosgd.jsonsafe import json_safe
from thermosgd.sweep.run import run_sweep, usable_cores
from thermosgd.sweep.store import load


def reproduce_twolayer(
    preset: presets.Preset,
    out: Path,
    *,
    seeds: int | None = None,
    steps: int | None = None,
    quick: bool = False,
    include_diverged: bool = False,
    progress: bool = True,
    device: str = "cpu",
    fused: bool = True,
    **executor,
) -> list[Verdict]:
    """Run a two-layer preset's sweep into ``out``; judge and draw every figure of its experiment.

    Writes ``figures/NAME.{png,pdf}`` (the paper's panels plus one rescaled by the
    fitted exponent), ``summary.json`` and ``report.md`` (initial/final values, the
    fitted exponents next to the paper's (α = 2, β = 1), and the replicas left out).

    Returns:
        One :class:`~thermosgd.analysis.verdict.Verdict` per figure of the experiment.
    """
    cfg = presets.twolayer_config(preset, seeds=seeds, steps=steps, quick=quick).replace(
        train={"device": device, "fused": fused}
    )
    ds = run_sweep(cfg, out, progress=progress, **executor)
    verdicts = judge_and_draw(ds, presets.experiment_presets(preset), out, include_diverged=include_diverged)
    write_summary(out, preset, ds, verdicts)
    if progress:
        for v in verdicts:
            print(f"[{v.preset}] {v.metric}: {v.line()}")
    return verdicts


def judge_and_draw(
    ds: xr.Dataset, chosen: list[presets.Preset], out: Path, *, include_diverged: bool = False, side: bool = True
) -> list[Verdict]:
    """Fit, judge and draw each preset's figure into ``out/figures``; one verdict per preset, in order.

    The collapse fit and matplotlib each keep one core busy, so with ``side`` the
    presets after the first are done on a forked process (it reads the results
    from ``out``, as any later reader would) while this one does the first; the
    verdicts and files are the same either way (tested). Forking needs this
    process to have no other thread (a fork copies only the calling thread, and
    a lock held by another one would never be released in the child); otherwise,
    or with one core, everything runs here.
    """

    def here(p: presets.Preset) -> Verdict:
        v = judge(ds, p.name, p.metric, p.over, include_diverged=include_diverged)
        twolayer_figure(ds, p, out / "figures", v)
        return v

    pool = _side_process() if side and len(chosen) > 1 else None
    if pool is None:
        return [here(p) for p in chosen]
    with pool, warnings.catch_warnings():
        # Python ≥ 3.12 warns on fork() beside torch's OpenMP threads (not Python threads):
        # the child runs with one intra-op thread (_one_intra_op_thread), so it never waits on them.
        warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded", category=DeprecationWarning)
        later = [pool.submit(_judge_and_draw_from_disk, out, p.name, include_diverged) for p in chosen[1:]]
        return [here(chosen[0])] + [f.result() for f in later]


def _judge_and_draw_from_disk(out: Path, name: str, include_diverged: bool) -> Verdict:
    """:func:`judge_and_draw` of one preset, on the results stored in ``out`` (checksum verified)."""
    return judge_and_draw(load(out), [presets.get(name)], out, include_diverged=include_diverged, side=False)[0]


def _side_process() -> ProcessPoolExecutor | None:
    """A one-process fork pool, or None where forking is unsafe or would not pay."""
    if usable_cores() < 2 or "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() != 1:
        return None
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"), initializer=_one_intra_op_thread)


def _one_intra_op_thread() -> None:
    """Fork-pool initializer: torch ops in the child run inline. Its OpenMP pool was copied
    from a parent whose worker threads do not exist here; a parallel region could wait on
    them forever (as for the sweep's forked workers, which pin one thread per unit)."""
    import torch

    torch.set_num_threads(1)


def write_summary(out: Path, preset: presets.Preset, ds: xr.Dataset, verdicts: list[Verdict]) -> None:
    """``summary.json`` and ``report.md`` of one experiment's folder."""
    summary = summarize(ds, preset.over)
    summary["preset"] = preset.name
    summary["experiment"] = preset.experiment
    summary["verdicts"] = [v.to_dict() for v in verdicts]
    summary["collapse"] = {v.metric: v.fit for v in verdicts}
    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(preset, summary, verdicts))


def twolayer_figure(ds: xr.Dataset, preset: presets.Preset, folder: Path, verdict: Verdict | None = None) -> list[Path]:
    """The paper's panels for one preset, plus a panel at the fitted collapse exponent."""
    extra = extra_title = None
    if verdict is not None and verdict.exponent is not None:
        sym = presets.EXPONENT_SYMBOL[preset.over]
        ci = "" if verdict.ci_low is None else f" [{verdict.ci_low:.2f}, {verdict.ci_high:.2f}] (95%)"
        extra_title = f"fitted {sym} = {verdict.exponent:.2f}{ci}"
        extra = lambda ax: collapse_panel(ax, ds, preset.metric, preset.over, verdict.exponent)  # noqa: E731
    return sweep_figure(
        ds,
        preset.metric,
        over=preset.over,
        out_stem=folder / preset.name,
        title=f"{preset.name}: {preset.description}",
        extra_panel=extra,
        extra_title=extra_title,
    )


def report_markdown(preset: presets.Preset, summary: dict, verdicts: list[Verdict]) -> str:
    """A short human-readable report: values per swept setting, verdicts, replicas left out."""
    sym = "η" if preset.over == "lr" else "|B|"
    lines = [f"# {preset.experiment}: {preset.description}", "", f"Paper: {preset.claim}", ""]
    if summary["seeds"] <= 2 or summary["steps"] <= 100:
        lines += ["> **Smoke-test size** (few seeds or steps): the fits below are not for conclusions.", ""]
    lines += [f"{summary['seeds']} seeds, {summary['steps']} steps, {summary['diverged']} diverged replicas.", ""]
    for metric, rows in summary["metrics"].items():
        lines += [f"## {metric}", "", f"| {sym} | initial | final |", "|---|---|---|"]
        lines += [f"| {k} | {v['initial']:.4f} | {v['final']:.4f} |" for k, v in rows.items()]
        lines.append("")
    lines += verdict_table(verdicts)
    return "\n".join(lines)


def verdict_table(verdicts: list[Verdict]) -> list[str]:
    """The markdown table of verdicts, with a line per swept value that lost replicas."""
    lines = [
        "## Collapse fit",
        "",
        "| figure | metric | fitted exponent | 95% CI | paper | verdict | left out |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        gone = ", ".join(f"{x.count}/{x.of} at {x.value:g}" for x in v.left_out) or "none"
        if v.exponent is None or v.ci_low is None:
            fitted = "n/a" if v.exponent is None else f"{v.symbol} = {v.exponent:.3f}"
            lines.append(
                f"| {v.preset} | {v.metric} | {fitted} | | {v.symbol} = {v.paper:g} | {v.status}: {v.note} | {gone} |"
            )
        else:
            lines.append(
                f"| {v.preset} | {v.metric} | {v.symbol} = {v.exponent:.3f} | [{v.ci_low:.3f}, {v.ci_high:.3f}] "
                f"| {v.paper:g} | **{v.status}** | {gone} |"
            )
    lines.append("")
    for v in verdicts:
        if v.left_out:
            lines.append(f"- {v.preset}: {v.line()}")
    lines.append("")
    return lines


def summarize(ds: xr.Dataset, over: str) -> dict:
    """Initial and final seed-mean of the main metrics for each swept value."""
    out = {
        "over": over,
        "steps": int(ds["step"].values[-1]),
        "seeds": int(ds.sizes["seed"]),
        "diverged": int(ds["diverged"].values.sum()),
        "metrics": {},
    }
    for metric in ("activation_rate", "v_norm", "bias_mean", "loss", "grad_var"):
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
