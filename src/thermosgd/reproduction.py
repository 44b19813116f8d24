"""``thermosgd reproduce``: run the paper's experiments and write their figures.

Data flows one way: preset → sweep (results on disk) → figures read from the
results. Plain ``thermosgd reproduce`` runs the default set (every figure that
needs no downloaded data) at a small size under ``runs/``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import xarray as xr

from thermosgd import presets
from thermosgd.errors import UsageError
from thermosgd.sweep.run import folder_lock, run_sweep


def reproduce_twolayer(
    preset: presets.Preset,
    out: Path,
    *,
    seeds: int | None = None,
    steps: int | None = None,
    progress: bool = True,
    **executor,
) -> list[Path]:
    """Run a two-layer preset's sweep into ``out``; draw and fit every figure of its experiment.

    Writes ``figures/NAME.{png,pdf}`` (the paper's panels plus one rescaled by the
    fitted exponent), ``summary.json`` and ``report.md`` (initial/final values and
    the fitted exponents next to the paper's prediction: α = 2, β = 1).
    """
    cfg = presets.twolayer_config(preset, seeds=seeds, steps=steps)
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
    sym, predicted = ("α", 2.0) if over == "lr" else ("β", 1.0)
    if fit is None:
        return "no collapse fit (needs ≥ 2 swept values and ≥ 2 seeds)"
    inside = fit.ci_low <= predicted <= fit.ci_high
    edge = " (the CI reaches the search bound: the curves barely constrain it)" if (
        fit.ci_low <= fit.bounds[0] + 1e-9 or fit.ci_high >= fit.bounds[1] - 1e-9) else ""
    return (f"fitted {sym} = {fit.exponent:.2f}, 95% CI [{fit.ci_low:.2f}, {fit.ci_high:.2f}]{edge}; paper {sym} = "
            f"{predicted:g}: " + ("consistent" if inside else
                                  f"DISAGREES (paper's value outside the CI by {_gap(fit, predicted):.2f})"))


def _gap(fit, predicted: float) -> float:
    return fit.ci_low - predicted if predicted < fit.ci_low else predicted - fit.ci_high


def collapse_fit(ds: xr.Dataset, preset: presets.Preset):
    """The fitted collapse exponent for one preset's metric, or None if not fittable."""
    from thermosgd.analysis import fit_collapse

    if ds.sizes[preset.over] < 2 or ds.sizes["seed"] < 2:
        return None
    try:
        return fit_collapse(ds, preset.metric, preset.over)
    except UsageError:  # e.g. every replica of a value diverged
        return None


def twolayer_figure(ds: xr.Dataset, preset: presets.Preset, folder: Path, fit=None) -> list[Path]:
    """The paper's panels for one preset, plus a panel at the fitted collapse exponent."""
    from thermosgd.figures import sweep_figure
    from thermosgd.figures.collapse import collapse_panel

    extra = extra_title = None
    if fit is not None:
        sym = "α" if preset.over == "lr" else "β"
        extra_title = f"fitted {sym} = {fit.exponent:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}] (95% bootstrap)"
        extra = lambda ax: collapse_panel(ax, ds, preset.metric, preset.over, fit.exponent)  # noqa: E731
    return sweep_figure(
        ds, preset.metric, over=preset.over, out_stem=folder / preset.name,
        title=f"{preset.name}: {preset.description}", extra_panel=extra, extra_title=extra_title,
    )


def report_markdown(preset: presets.Preset, summary: dict) -> str:
    """A short human-readable report: values per swept setting and fitted exponents."""
    sym, predicted = ("η", 2.0) if preset.over == "lr" else ("|B|", 1.0)
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


def reproduce(
    names: list[str] | None,
    *,
    out: Path | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    data_dir: Path | None = None,
    substitute_digits: bool = False,
    quick: bool = False,
    progress: bool = True,
    **executor,
) -> dict[str, Path]:
    """Run presets; returns {preset name: its results folder}.

    ``quick`` runs every preset at a seconds-long smoke-test size (two-layer: 2
    seeds × 100 steps unless given; deep: the tiny version; walk and analysis:
    their quick versions).

    With one name, ``out`` (default ``runs/NAME``) is that preset's folder. With
    several or none (the default set), each experiment gets ``out/NAME``
    (``out`` defaults to ``runs``).
    """
    chosen = [presets.get(n) for n in names] if names else [
        p for p in presets.PRESETS.values() if p.in_default_set
    ]
    # One run per experiment: fig3 also writes fig4's figure.
    runs: dict[str, presets.Preset] = {}
    for p in chosen:
        runs.setdefault(p.experiment, p)
    single = names is not None and len(names) == 1
    base = Path(out) if out is not None else Path("runs")
    done = {}
    for p in runs.values():
        folder = base if single and out is not None else (Path("runs") / p.name if single else base / p.name)
        _check_writable(folder)
        if progress:
            print(f"[{p.name}] {p.description}")
        if p.kind == "twolayer":  # run_sweep locks the folder and checks its config itself
            reproduce_twolayer(p, folder, seeds=seeds or (2 if quick else None),
                               steps=steps or (100 if quick else None), progress=progress, **executor)
        else:
            run = {"experiment": p.experiment, "seeds": seeds, "steps": steps, "quick": quick,
                   "substitute_digits": substitute_digits}
            with folder_lock(folder):
                fresh = _claim_folder(folder, run)
                try:
                    _run_other(p, folder, run, data_dir=data_dir, progress=progress)
                except BaseException:
                    if fresh:  # e.g. missing data files: let the user retry with other options
                        (folder / MARKER).unlink(missing_ok=True)
                    raise
        if progress:
            print(f"[{p.name}] results and figures in {folder}")
        done[p.name] = folder
    return done


MARKER = ".thermosgd-run.json"


def _claim_folder(folder: Path, run: dict) -> bool:
    """Refuse a folder that holds another run; mark it as this run's.

    Two-layer sweeps are guarded by their config.json; the walk, deep and
    analysis presets write this marker instead, so that no preset silently
    overwrites the results of another run. Returns True if the folder was new.
    """
    marker = folder / MARKER
    if marker.exists():
        old = json.loads(marker.read_text())
        if old != run:
            diff = ", ".join(f"{k}: {old.get(k)!r} there, {v!r} now" for k, v in run.items() if old.get(k) != v)
            raise UsageError(f"{folder} holds results of another run ({diff}); choose a new --out folder")
        return False
    if any(f.name != ".lock" for f in folder.iterdir()):
        raise UsageError(f"{folder} already holds other files; choose a new --out folder")
    marker.write_text(json.dumps(run) + "\n")
    return True


def _run_other(p: presets.Preset, folder: Path, run: dict, *, data_dir, progress: bool) -> None:
    quick, seeds, steps = run["quick"], run["seeds"], run["steps"]
    if p.kind == "walk":
        from thermosgd.walk import reproduce as walk_reproduce

        if progress and (seeds or steps):
            print("[walk] --seeds/--steps do not apply to the walk suite (see `thermosgd walk`)")
        walk_reproduce(folder, quick=quick)
    elif p.kind == "deep":
        from thermosgd.deep.experiments import run_deep_preset

        run_deep_preset(p.name, out=folder, seeds=seeds, steps=steps, data_dir=data_dir, progress=progress,
                        tiny=quick, dataset="digits" if run["substitute_digits"] else None)
    elif p.kind == "analysis":
        from thermosgd.analysis import experiments_cli

        runner = {"drift": experiments_cli.run_drift, "equal-error": experiments_cli.run_equal_error,
                  "generalization": experiments_cli.run_generalization}[p.name]
        overrides = {} if steps is None else {"steps": steps}
        if seeds is not None and p.name != "drift":  # drift clones states instead of seeds
            overrides["seeds"] = seeds
        runner(folder, quick=quick, **overrides)


def _check_writable(folder: Path) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UsageError(f"cannot write to output folder {folder}")


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run the paper's experiments and write results + figures",
        description="Run preset experiments of the paper. Without NAME: the default set "
        "(all figures that need no downloaded data) at a small size, under runs/.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="preset(s); see --list")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    p.add_argument("--steps", type=int, help="SGD iterations (default: the preset's)")
    p.add_argument("--out", type=Path, help="output folder (default runs/NAME)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with Fashion-MNIST / CIFAR-10 files (default $THERMOSGD_DATA)")
    p.add_argument("--substitute-digits", action="store_true",
                   help="deep image presets: use scikit-learn's bundled 8x8 digits instead of "
                   "Fashion-MNIST / CIFAR-10 (clearly labeled in figures and config)")
    _executor_args(p)
    p.add_argument("--quick", action="store_true",
                   help="seconds-long smoke-test size for every preset (not for conclusions)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where work units run")
    g.add_argument("--executor", choices=["auto", "inline", "processes", "dask"], default="auto",
                   help="auto (default): worker processes on every core when the sweep is long enough "
                   "for that to pay, else in this process")
    g.add_argument("--workers", type=int, help="worker processes (implies a local Dask cluster "
                   "unless --executor processes)")
    g.add_argument("--scheduler", help="address of a running Dask scheduler, tcp://HOST:PORT")


def executor_kwargs(args) -> dict:
    kind = args.executor
    if args.workers is not None and kind == "auto":
        kind = "dask"
    return {"executor": kind, "workers": args.workers, "scheduler": args.scheduler}


def _run(args) -> int:
    if args.list:
        width = max(len(n) for n in presets.PRESETS)
        for p in presets.PRESETS.values():
            mark = "*" if p.in_default_set else " "
            print(f"{mark} {p.name:<{width}}  [{p.kind}] {p.description}")
        print("(* = in the default set run by plain `thermosgd reproduce`)")
        return 0
    for flag in ("seeds", "steps"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            raise UsageError(f"--{flag} must be positive, got {v}")
    data_dir = args.data_dir or (Path(os.environ["THERMOSGD_DATA"]) if os.environ.get("THERMOSGD_DATA") else None)
    reproduce(args.names or None, out=args.out, seeds=args.seeds, steps=args.steps, data_dir=data_dir,
              substitute_digits=args.substitute_digits, quick=args.quick, progress=not args.no_progress,
              **executor_kwargs(args))
    return 0


__all__ = ["reproduce", "reproduce_twolayer", "summarize"]
