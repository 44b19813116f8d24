"""``thermosgd collapse``: fit and plot the scaling collapse of a finished sweep."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from thermosgd.cli.common import add_margin_arg, margin_value
from thermosgd.errors import UsageError
from thermosgd.presets import PAPER_EXPONENT

_SEE_ALSO = "Exit code 2 on bad input (unknown metric, missing dimension, too few values or seeds)."


def register(subparsers) -> None:
    """Add the ``collapse`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "collapse",
        help="fit the exponent that collapses a sweep's curves (t·η^α or t·|B|^-β)",
        description=(
            "Fit the exponent that makes the seed-averaged curves of METRIC overlap when plotted "
            "against t·(η/η_ref)^α (--over lr) or t·(|B|/|B|_ref)^-β (--over batch_size); "
            "report a bootstrap interval over seeds and write a figure. " + _SEE_ALSO
        ),
    )
    parser.add_argument("results", metavar="RESULTS_DIR", help="results folder (or its results.nc)")
    parser.add_argument("--metric", required=True, help="data variable, e.g. activation_rate or v_norm")
    parser.add_argument("--over", required=True, choices=tuple(PAPER_EXPONENT), help="swept parameter to fit")
    parser.add_argument(
        "--window",
        metavar="START:END",
        help="compare curves only for START <= τ <= END, τ in iterations of the reference run "
        "(either side may be empty, e.g. 200:)",
    )
    parser.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="DIM=VALUE",
        help="keep one value of another swept dimension, e.g. --select batch_size=1 when fitting over lr "
        "on an lr × batch_size sweep (repeatable)",
    )
    parser.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples over seeds (0: no interval; default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--figure", metavar="STEM", help="figure path without suffix (default RESULTS_DIR/figures/...)")
    parser.add_argument("--no-figure", action="store_true", help="do not write a figure")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of a table (the fit, its verdict, and what the score means)",
    )
    add_margin_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit code."""
    from thermosgd.analysis.collapse import fit_collapse, parse_window
    from thermosgd.analysis.verdict import judge
    from thermosgd.jsonsafe import json_safe
    from thermosgd.sweep.store import load

    margin = margin_value(args)
    assert margin is not None
    if args.n_boot < 0:
        raise UsageError("--n-boot must be >= 0")
    if not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed must be an integer in [0, 2^63), got {args.seed}")
    window = parse_window(args.window)
    ds = select(load(args.results), args.select, args.over, args.metric)
    check_metric(ds, args.metric)
    fit = fit_collapse(ds, args.metric, args.over, window=window, n_boot=args.n_boot, seed=args.seed)
    verdict = judge(ds, "collapse", args.metric, args.over, margin=margin, fit=fit)
    figures: list[Path] = []
    if not args.no_figure:
        from thermosgd.figures.collapse import collapse_figure
        from thermosgd.figures.save import save_figure

        stem = Path(args.figure) if args.figure else _default_stem(Path(args.results), fit)
        figures = save_figure(collapse_figure(ds, fit), stem)
    if args.json:
        out = fit.to_dict()
        out["figures"] = [str(p) for p in figures]
        out["score_note"] = score_note(fit)
        out["verdict"] = {
            "status": verdict.status,
            "reason": verdict.note,
            "margin": verdict.margin,
            "direction": [c.__dict__ for c in verdict.direction],
        }
        print(json.dumps(json_safe(out), allow_nan=False))
    else:
        print(format_table(fit, figures, verdict))
    return 0


def select(ds, specs: list[str], over: str, metric: str):
    """Apply ``--select DIM=VALUE`` (keeping DIM, now of size 1); refuse a sweep still varying elsewhere."""
    import numpy as np

    for spec in specs:
        dim, sep, text = spec.partition("=")
        dim = dim.strip()
        if not sep or not dim:
            raise UsageError(f"--select takes DIM=VALUE, e.g. batch_size=1; got {spec!r}")
        if dim not in ds.dims or dim in ("step", over):
            allowed = ", ".join(d for d in ds.dims if d not in ("step", over))
            raise UsageError(f"--select {spec}: {dim!r} is not a dimension to select (choose from: {allowed})")
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"--select {spec}: {text!r} is not a number") from None
        coords = np.asarray(ds[dim].values, dtype=float)
        hit = np.flatnonzero(np.isclose(coords, value, rtol=1e-9, atol=0))
        if hit.size == 0:
            raise UsageError(
                f"--select {spec}: {dim} has no value {text} (values: {', '.join(f'{v:g}' for v in coords)})"
            )
        ds = ds.isel({dim: hit[:1]})
    fittable = metric in ds.data_vars and ds.sizes.get(over, 0) >= 2  # else fit_collapse says what is wrong
    for dim in ds[metric].dims if fittable else ():
        if dim not in ("step", "seed", over) and ds.sizes[dim] > 1 and ds[dim].dtype.kind in "biuf":
            values = ", ".join(f"{v:g}" for v in np.asarray(ds[dim].values, dtype=float))
            raise UsageError(
                f"the sweep varies over {dim} ({values}) as well as {over}; pick one value with --select {dim}=VALUE"
            )
    return ds


def check_metric(ds, metric: str) -> None:
    """Refuse a metric that cannot be fitted at all: not numbers, or NaN everywhere."""
    if metric not in ds.data_vars:
        return  # fit_collapse lists the metrics there are
    da = ds[metric]
    if da.dtype.kind not in "biuf":
        raise UsageError(f"metric {metric!r} holds {da.dtype} values, not numbers")
    if not bool(da.notnull().any()):
        raise UsageError(f"metric {metric!r} is NaN everywhere (never recorded, or every replica diverged)")


def _default_stem(results: Path, fit) -> Path:
    folder = results if results.is_dir() else results.parent
    return folder / "figures" / f"collapse_{fit.metric}_{fit.over}"


def score_note(fit) -> str:
    """What the score is, in one sentence (it can be negative)."""
    text = "collapse misfit of the seed-mean curves (lower is better, 0 = perfect overlap)"
    if fit.score_method != "plain":
        return text + (
            f"; the {fit.score_method} score subtracts the seed noise's expected share, so a good collapse "
            "can score slightly below 0"
        )
    return text


def format_table(fit, figures: Sequence[Path] = (), verdict=None) -> str:
    """Human-readable summary of a fit, one quantity per line."""
    from thermosgd.analysis.collapse import EXPONENT_SYMBOL
    from thermosgd.analysis.verdict import MIN_SEEDS_FOR_VERDICT

    symbol = EXPONENT_SYMBOL[fit.over]
    if fit.n_boot:
        ci = (
            f"{100 * fit.ci_level:.0f}% CI [{fit.ci_low:.3f}, {fit.ci_high:.3f}] "
            f"({fit.n_boot} resamples of {fit.n_seeds} seeds)"
        )
        if fit.n_seeds < MIN_SEEDS_FOR_VERDICT:
            ci += f"; with fewer than {MIN_SEEDS_FOR_VERDICT} seeds this interval is not a measurement"
    else:
        ci = "no interval (n_boot = 0)"
    start, end = fit.window
    window = (
        "all"
        if start is None and end is None
        else f"{'' if start is None else f'{start:g}'}:{'' if end is None else f'{end:g}'}"
    )
    rows = [
        ("metric", fit.metric),
        ("over", f"{fit.over} = {', '.join(f'{v:g}' for v in fit.values)} (reference {fit.reference:g})"),
        (symbol, f"{fit.exponent:.3f}  {ci}"),
        ("paper", f"{symbol} = {fit.predicted:g}"),
        ("verdict", "n/a" if verdict is None else f"{verdict.status} ({verdict.note})"),
        (
            "score",
            f"{fit.score:.4g} at fit, {fit.score_predicted:.4g} at paper's {symbol}, {fit.score_raw:.4g} unscaled "
            f"({score_note(fit)})",
        ),
        ("interval", fit.interval),
        ("window", window),
    ]
    rows += [("figure", str(p)) for p in figures]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
