"""Pieces shared by the subcommands: the parser class and the executor options."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from thermosgd.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{self.prog}: {message}")


def out_folder(text: str) -> Path:
    """argparse type of every ``--out``: an empty string would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a folder path, not empty")
    return Path(os.path.expanduser(text))  # once, here: xarray would expand a quoted '~' for some files only


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--executor``, ``--workers``, ``--scheduler`` (rules: :func:`thermosgd.sweep.executors.resolve_kind`)."""
    g = p.add_argument_group("where work units run")
    g.add_argument(
        "--executor",
        choices=["auto", "inline", "processes", "dask"],
        default=None,
        help="default: auto (worker processes on every core when the sweep is long enough for "
        "that to pay, else this process), or Dask when --workers or --scheduler is given",
    )
    g.add_argument("--workers", type=int, help="worker processes (a local Dask cluster unless --executor processes)")
    g.add_argument("--scheduler", help="address of a running Dask scheduler, tcp://HOST:PORT")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    """``--device``: where the training arithmetic runs (random numbers are drawn on the CPU)."""
    p.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help='"cpu" (default), "cuda" or "cuda:N"; replaces [train] device. Random numbers are '
        "drawn on the CPU either way (docs/devices.md)",
    )


def add_fused_arg(p: argparse.ArgumentParser) -> None:
    """``--fused`` / ``--no-fused``: the compiled kernels (the default where they apply) or the torch path."""
    p.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="two-layer runs: --fused requires the compiled kernels (numba; the default wherever they apply, "
        "every noise model on the CPU), --no-fused takes the torch reference path ([train] fused = false); equal "
        "to floating-point tolerance, not bit for bit",
    )


def executor_kwargs(args: argparse.Namespace) -> dict:
    """The executor options as keyword arguments of ``run_sweep`` / ``reproduce``."""
    return {"executor": args.executor or "auto", "workers": args.workers, "scheduler": args.scheduler}


# Library argument -> flag, where the flag is not the argument's name with dashes.
_FLAGS = {"lrs": "--lr", "batch_sizes": "--batch-size", "per_block": "--replicas"}


def flag(param: str) -> str:
    """The command-line flag that sets the library argument ``param`` (``n_boot`` -> ``--n-boot``)."""
    return _FLAGS.get(param, "--" + param.replace("_", "-"))


def add_margin_arg(p: argparse.ArgumentParser, *, recorded: bool = False) -> None:
    """``--margin``: the practical margin of exponent verdicts, a fraction of the paper's value."""
    default = "the margin each run recorded (0.1 if none)" if recorded else "0.1, i.e. ±10%%"
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        metavar="FRACTION",
        help="practical margin of an exponent's verdict, a fraction of the paper's value in [0, 1): "
        f"'close' when the CI misses the paper's value but lies within ±FRACTION of it (default: {default})",
    )


def margin_value(args: argparse.Namespace, *, recorded: bool = False) -> float | None:
    """``--margin`` checked; when not given, the default margin (``recorded``: None, the runs' own).
    A bad value is a one-line usage error naming the flag."""
    from thermosgd.analysis.verdict import DEFAULT_MARGIN, check_margin

    if args.margin is None:
        return None if recorded else DEFAULT_MARGIN
    try:
        return check_margin(args.margin)
    except UsageError:
        raise UsageError(f"--margin takes a fraction in [0, 1) (e.g. 0.1 for ±10%), got {args.margin:g}") from None
