"""``thermosgd drift | equal-error | generalization``: the prediction-vs-measurement experiments.

Each subcommand runs one experiment at a small default size (a minute or two on
two cores; ``--quick`` for seconds), prints a markdown table (or one JSON object
with ``--json``) and, with ``--out DIR``, writes ``DIR/<name>.png``,
``DIR/<name>.pdf``, ``DIR/<name>.md`` and ``DIR/<name>.json``. The functions
``run_drift``, ``run_equal_error`` and ``run_generalization`` do the same for
``thermosgd reproduce``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from thermosgd.errors import UsageError

__all__ = ["register", "run_drift", "run_equal_error", "run_generalization"]

_EXIT = "Exit code 2 on bad input."

DRIFT_DEFAULTS = dict(lrs=(0.025, 0.05, 0.1), batch_sizes=(1, 2, 4), steps=800, blocks=16, per_block=128,
                      clones=4096, record_every=20, labels="random", seed=1)
DRIFT_QUICK = dict(lrs=(0.05, 0.1), batch_sizes=(1, 2), steps=100, blocks=4, per_block=32, clones=512,
                   record_every=10)
EQUAL_DEFAULTS = dict(lrs=(0.025, 0.05, 0.1, 0.2), batch_size=1, seeds=32, steps=8000, record_every=10,
                      target=0.1, train_size=256, seed=0)
EQUAL_QUICK = dict(lrs=(0.05, 0.2), seeds=4, steps=1500, target=0.2)
GEN_DEFAULTS = dict(lrs=(0.025, 0.05, 0.1, 0.2), batch_sizes=(1, 4, 16), seeds=16, steps=4000,
                    train_size=256, test_size=2000, seed=0)
GEN_QUICK = dict(lrs=(0.05, 0.2), batch_sizes=(1, 4), seeds=4, steps=300, test_size=500)


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------


def _clean(obj):
    """JSON-safe copy: NaN/inf → None, tuples → lists, numpy scalars → Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write(out: Path | None, name: str, fig, table: str, payload: dict) -> list[str]:
    if out is None:
        return []
    from thermosgd.figures.collapse import save_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [str(p) for p in save_figure(fig, out / name)]
    (out / f"{name}.md").write_text(table)
    (out / f"{name}.json").write_text(json.dumps(_clean(payload), indent=2) + "\n")
    return files + [str(out / f"{name}.md"), str(out / f"{name}.json")]


def _settings(defaults: dict, quick_values: dict, quick: bool, overrides: dict) -> dict:
    s = dict(defaults)
    if quick:
        s.update(quick_values)
    s.update({k: v for k, v in overrides.items() if v is not None})
    return s


def _positive_int(name: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise UsageError(f"--{name} must be >= {minimum}, got {value}")


def _positive_floats(name: str, values) -> None:
    if any(not (v > 0) or not math.isfinite(v) for v in values):
        raise UsageError(f"--{name} values must be positive and finite, got {list(values)}")
    if len(set(values)) != len(values):
        raise UsageError(f"--{name} has repeated values: {list(values)}")


# --------------------------------------------------------------------------
# Experiments
# --------------------------------------------------------------------------


def run_drift(out=None, *, quick: bool = False, **overrides) -> dict:
    """Part 4: measured noise-induced drift of b and V² beside the paper's prediction.

    Args:
        out: folder for ``drift.{png,pdf,md,json}`` (None: write nothing).
        quick: a seconds-long run (for tests and smoke checks).
        overrides: any of ``lrs, batch_sizes, steps, blocks, per_block, clones,
            record_every, labels, seed``.

    Returns:
        The JSON payload (summary, settings, table, files).
    """
    from thermosgd.analysis.drift import DriftSetup, drift_experiment, drift_table

    s = _settings(DRIFT_DEFAULTS, DRIFT_QUICK, quick, overrides)
    _positive_floats("lr", s["lrs"])
    if any(int(b) < 1 for b in s["batch_sizes"]) or len(set(s["batch_sizes"])) != len(s["batch_sizes"]):
        raise UsageError(f"--batch-size values must be distinct integers >= 1, got {list(s['batch_sizes'])}")
    _positive_int("steps", s["steps"], 4)
    _positive_int("blocks", s["blocks"], 2)
    _positive_int("replicas", s["per_block"], 1)
    _positive_int("clones", s["clones"], 2)
    _positive_int("record-every", s["record_every"])
    if s["record_every"] > s["steps"] // 4:
        raise UsageError(f"--record-every ({s['record_every']}) must be at most steps/4 ({s['steps'] // 4})")
    setup = DriftSetup(labels=s["labels"], seed=s["seed"])
    one, traj, summary = drift_experiment(
        setup, s["lrs"], s["batch_sizes"], steps=s["steps"], blocks=s["blocks"], per_block=s["per_block"],
        clones=s["clones"], record_every=s["record_every"], seed=s["seed"])
    table = drift_table(summary)
    payload = {"experiment": "drift", "settings": s, **summary.to_dict()}
    fig = None
    if out is not None:
        from thermosgd.figures.drift import drift_figure

        fig = drift_figure(traj, summary.to_dict(), title=(
            f"drift of b and V² beyond the mean gradient: {s['labels']} labels, "
            f"{s['blocks']}×{s['per_block']} replicas per (η, |B|), shared init"))
    payload["files"] = _write(out, "drift", fig, table, payload)
    payload["table"] = table
    return payload


def run_equal_error(out=None, *, quick: bool = False, **overrides) -> dict:
    """Part 5: σ and ‖V‖ when each η first reaches the same training error (same init).

    Args:
        out: folder for ``equal_error.{png,pdf,md,json}`` (None: write nothing).
        quick: a seconds-long run.
        overrides: any of ``lrs, batch_size, seeds, steps, record_every, target, train_size, seed``.

    Returns:
        The JSON payload.
    """
    from thermosgd.analysis.equal_error import at_first_crossing, equal_error_config, equal_error_summary, equal_error_table
    from thermosgd.twolayer.engine import train

    s = _settings(EQUAL_DEFAULTS, EQUAL_QUICK, quick, overrides)
    _positive_floats("lr", s["lrs"])
    if len(s["lrs"]) < 2:
        raise UsageError("--lr needs at least two learning rates to compare")
    _positive_int("seeds", s["seeds"], 2)
    _positive_int("steps", s["steps"])
    _positive_int("record-every", s["record_every"])
    _positive_int("batch-size", s["batch_size"])
    _positive_int("train-size", s["train_size"], 2)
    if not 0 < s["target"] < 1:
        raise UsageError(f"--target must be a training error in (0, 1), got {s['target']}")
    cfg = equal_error_config(lrs=s["lrs"], batch_size=s["batch_size"], seeds=s["seeds"], steps=s["steps"],
                             record_every=s["record_every"], train_size=s["train_size"], seed=s["seed"])
    ds = train(cfg)
    res = at_first_crossing(ds, s["target"])
    summary = equal_error_summary(res)
    table = equal_error_table(summary)
    payload = {"experiment": "equal-error", "settings": s, **summary}
    fig = None
    if out is not None:
        from thermosgd.figures.comparisons import equal_error_figure

        fig = equal_error_figure(res)
    payload["files"] = _write(out, "equal_error", fig, table, payload)
    payload["table"] = table
    return payload


def run_generalization(out=None, *, quick: bool = False, **overrides) -> dict:
    """Part 6: final test accuracy vs activation rate and ‖V‖ over an (η, |B|) grid.

    Args:
        out: folder for ``generalization.{png,pdf,md,json}`` (None: write nothing).
        quick: a seconds-long run.
        overrides: any of ``lrs, batch_sizes, seeds, steps, train_size, test_size, seed``.

    Returns:
        The JSON payload.
    """
    from thermosgd.analysis.generalization import (
        final_values, generalization_config, generalization_summary, generalization_table)
    from thermosgd.twolayer.engine import train

    s = _settings(GEN_DEFAULTS, GEN_QUICK, quick, overrides)
    _positive_floats("lr", s["lrs"])
    if any(int(b) < 1 for b in s["batch_sizes"]) or len(set(s["batch_sizes"])) != len(s["batch_sizes"]):
        raise UsageError(f"--batch-size values must be distinct integers >= 1, got {list(s['batch_sizes'])}")
    if len(s["lrs"]) * len(s["batch_sizes"]) < 3:
        raise UsageError("the (η, |B|) grid needs at least 3 cells for rank correlations")
    _positive_int("seeds", s["seeds"], 2)
    _positive_int("steps", s["steps"])
    _positive_int("train-size", s["train_size"], 2)
    _positive_int("test-size", s["test_size"], 10)
    cfg = generalization_config(lrs=s["lrs"], batch_sizes=s["batch_sizes"], seeds=s["seeds"], steps=s["steps"],
                                train_size=s["train_size"], test_size=s["test_size"], seed=s["seed"])
    fv = final_values(train(cfg))
    summary = generalization_summary(fv)
    table = generalization_table(summary)
    payload = {"experiment": "generalization", "settings": s, **summary}
    fig = None
    if out is not None:
        from thermosgd.figures.comparisons import generalization_figure

        fig = generalization_figure(summary, title=f"teacher task, {s['train_size']} training samples, "
                                                   f"{s['seeds']} seeds per cell")
    payload["files"] = _write(out, "generalization", fig, table, payload)
    payload["table"] = table
    return payload


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", help="write the figure (PNG, PDF), a markdown table and a JSON here")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--quick", action="store_true", help="a seconds-long run (smoke test)")
    p.add_argument("--seed", type=int, help="master seed")


def register(subparsers) -> None:
    """Add the ``drift``, ``equal-error`` and ``generalization`` subcommands."""
    p = subparsers.add_parser(
        "drift", help="measured drift of b and V² beyond the mean gradient vs the paper's η²/|B| prediction",
        description="Clone one state and take one SGD step per clone; and run SGD ensembles from one shared "
                    "initialization beside mean-gradient references. Report the noise-induced drift of b and "
                    "V² per step, the paper's thermophoretic drift, their ratio, the fitted η and |B| "
                    "exponents and err2(t). " + _EXIT)
    _common(p)
    p.add_argument("--lr", type=float, nargs="+", help="learning rates (default 0.025 0.05 0.1)")
    p.add_argument("--batch-size", type=int, nargs="+", help="batch sizes (default 1 2 4)")
    p.add_argument("--steps", type=int, help="SGD steps of the trajectories (default 800)")
    p.add_argument("--blocks", type=int, help="independent blocks of replicas (default 16)")
    p.add_argument("--replicas", type=int, help="replicas per block (default 128)")
    p.add_argument("--clones", type=int, help="clones for the one-step estimate (default 4096)")
    p.add_argument("--record-every", type=int, help="record every k steps (default 20)")
    p.add_argument("--labels", choices=("random", "teacher"), help="random labels (paper, default) or a teacher")
    p.set_defaults(func=_run_drift)

    p = subparsers.add_parser(
        "equal-error", help="σ and ‖V‖ when each learning rate first reaches the same training error",
        description="Sec. 5 after Eq. 28: same init, η1 < η2, trained to training error ε on a teacher task; "
                    "report activation rate and ‖V‖ at that point and how often σ1 ≥ σ2 and v1 ≥ v2. " + _EXIT)
    _common(p)
    p.add_argument("--lr", type=float, nargs="+", help="learning rates (default 0.025 0.05 0.1 0.2)")
    p.add_argument("--batch-size", type=int, help="batch size (default 1)")
    p.add_argument("--seeds", type=int, help="seeds (default 32)")
    p.add_argument("--steps", type=int, help="step budget (default 8000)")
    p.add_argument("--record-every", type=int, help="check the training error every k steps (default 10)")
    p.add_argument("--target", type=float, help="target training error ε (default 0.1)")
    p.add_argument("--train-size", type=int, help="training set size (default 256)")
    p.set_defaults(func=_run_equal_error)

    p = subparsers.add_parser(
        "generalization", help="test accuracy vs final activation rate and ‖V‖ over an (η, |B|) grid",
        description="Teacher task with held-out data: table of test accuracy, activation rate and ‖V‖ per "
                    "(η, |B|) cell and their Spearman rank correlations. " + _EXIT)
    _common(p)
    p.add_argument("--lr", type=float, nargs="+", help="learning rates (default 0.025 0.05 0.1 0.2)")
    p.add_argument("--batch-size", type=int, nargs="+", help="batch sizes (default 1 4 16)")
    p.add_argument("--seeds", type=int, help="seeds per cell (default 16)")
    p.add_argument("--steps", type=int, help="SGD steps (default 4000)")
    p.add_argument("--train-size", type=int, help="training set size (default 256)")
    p.add_argument("--test-size", type=int, help="held-out set size (default 2000)")
    p.set_defaults(func=_run_generalization)


def _emit(args, payload: dict) -> int:
    if args.json:
        print(json.dumps(_clean(payload)))
    else:
        sys.stdout.write(payload["table"])
        for f in payload["files"]:
            print(f"wrote {f}")
    return 0


def _tuple(v):
    return None if v is None else tuple(v)


def _run_drift(args) -> int:
    return _emit(args, run_drift(args.out, quick=args.quick, lrs=_tuple(args.lr), batch_sizes=_tuple(args.batch_size),
                                 steps=args.steps, blocks=args.blocks, per_block=args.replicas, clones=args.clones,
                                 record_every=args.record_every, labels=args.labels, seed=args.seed))


def _run_equal_error(args) -> int:
    return _emit(args, run_equal_error(args.out, quick=args.quick, lrs=_tuple(args.lr), batch_size=args.batch_size,
                                       seeds=args.seeds, steps=args.steps, record_every=args.record_every,
                                       target=args.target, train_size=args.train_size, seed=args.seed))


def _run_generalization(args) -> int:
    return _emit(args, run_generalization(args.out, quick=args.quick, lrs=_tuple(args.lr),
                                          batch_sizes=_tuple(args.batch_size), seeds=args.seeds, steps=args.steps,
                                          train_size=args.train_size, test_size=args.test_size, seed=args.seed))
