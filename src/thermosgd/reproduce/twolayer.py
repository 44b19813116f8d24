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

from thermosgd import fmt, presets
from thermosgd.analysis.summary import RunSummary, summarize
from thermosgd.analysis.verdict import DEFAULT_MARGIN, Verdict, judge
from thermosgd.figures import sweep_figure
from thermosgd.figures.collapse import collapse_panel
from thermosgd.jsonsafe import json_safe
from thermosgd.sweep.run import run_sweep, usable_cores
from thermosgd.sweep.store import load, write_text


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
    margin: float = DEFAULT_MARGIN,
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
    verdicts = judge_and_draw(
        ds, presets.experiment_presets(preset), out, include_diverged=include_diverged, margin=margin
    )
    write_summary(out, preset, ds, verdicts)
    for v in verdicts:  # printed with or without progress bars: the result, not progress
        print(f"[{v.preset}] {v.metric}: {v.line()}")
    return verdicts


def judge_and_draw(
    ds: xr.Dataset,
    chosen: list[presets.Preset],
    out: Path,
    *,
    include_diverged: bool = False,
    side: bool = True,
    margin: float = DEFAULT_MARGIN,
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
        assert p.over is not None  # a two-layer preset sweeps η or |B|
        v = judge(ds, p.name, p.metric, p.over, include_diverged=include_diverged, margin=margin)
        twolayer_figure(ds, p, out / "figures", v)
        return v

    pool = _side_process() if side and len(chosen) > 1 else None
    if pool is None:
        return [here(p) for p in chosen]
    with pool, warnings.catch_warnings():
        # Python ≥ 3.12 warns on fork() beside torch's OpenMP threads (not Python threads):
        # the child runs with one intra-op thread (_one_intra_op_thread), so it never waits on them.
        warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded", category=DeprecationWarning)
        later = [pool.submit(_judge_and_draw_from_disk, out, p.name, include_diverged, margin) for p in chosen[1:]]
        return [here(chosen[0])] + [f.result() for f in later]


def _judge_and_draw_from_disk(out: Path, name: str, include_diverged: bool, margin: float) -> Verdict:
    """:func:`judge_and_draw` of one preset, on the results stored in ``out`` (checksum verified)."""
    chosen = [presets.get(name)]
    return judge_and_draw(load(out), chosen, out, include_diverged=include_diverged, side=False, margin=margin)[0]


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
    """``summary.json`` (a :class:`~thermosgd.analysis.summary.RunSummary`: its verdicts, the margin they
    were judged with, the substitute data if any) and ``report.md`` of one experiment's folder."""
    assert preset.over is not None
    summary = summarize(ds, preset.name, preset.experiment, preset.over, verdicts)
    write_text(out / "summary.json", json.dumps(json_safe(summary.to_dict()), indent=2) + "\n")
    write_text(out / "report.md", report_markdown(preset, summary, verdicts))


def twolayer_figure(ds: xr.Dataset, preset: presets.Preset, folder: Path, verdict: Verdict | None = None) -> list[Path]:
    """The paper's panels for one preset, plus a panel at the fitted collapse exponent."""
    extra = extra_title = None
    over = preset.over
    assert over is not None  # a two-layer preset sweeps η or |B|
    if verdict is not None and verdict.exponent is not None:
        sym = presets.EXPONENT_SYMBOL[over]
        value = fmt.estimate(verdict.exponent, verdict.ci_low, verdict.ci_high)
        extra_title = f"fitted {sym} = {value}{'' if verdict.ci_low is None else ' (95%)'}: {verdict.status}"
        exponent = verdict.exponent
        extra = lambda ax: collapse_panel(ax, ds, preset.metric, over, exponent)  # noqa: E731
    return sweep_figure(
        ds,
        preset.metric,
        over=over,
        out_stem=folder / preset.name,
        title=f"{preset.name}: {preset.description}",
        extra_panel=extra,
        extra_title=extra_title,
    )


def report_markdown(preset: presets.Preset, summary: RunSummary, verdicts: list[Verdict]) -> str:
    """A short human-readable report: values per swept setting, verdicts, replicas left out."""
    sym = "η" if preset.over == "lr" else "|B|"
    lines = [f"# {preset.experiment}: {preset.description}", "", f"Paper: {preset.claim}", ""]
    if summary.substitute:
        lines += [
            f"> **Substitute data: {summary.substitute}** instead of the paper's {summary.dataset_paper}: "
            "this tests the mechanism on other data, not the paper's figure.",
            "",
        ]
    if summary.seeds <= 2 or summary.steps <= 100:
        lines += ["> **Smoke-test size** (few seeds or steps): the fits below are not for conclusions.", ""]
    lines += [f"{summary.seeds} seeds, {summary.steps} steps, {summary.diverged} diverged replicas.", ""]
    for metric, rows in summary.metrics.items():
        lines += [f"## {metric}", "", f"| {sym} | initial | final |", "|---|---|---|"]
        lines += [f"| {k} | {c.initial:.4f} | {c.final:.4f} |" for k, c in rows.items()]
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
