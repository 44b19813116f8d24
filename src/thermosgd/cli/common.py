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
        "drawn on the CPU either way (README: Devices)",
    )


def add_fused_arg(p: argparse.ArgumentParser) -> None:
    """``--fused``: the compiled CPU loop for noise = "sgd" two-layer training ([train] fused)."""
    p.add_argument(
        "--fused",
        action="store_true",
        help='two-layer runs with noise = "sgd" on the CPU: use the compiled loop ([train] fused = '
        'true; needs numba, pip install "thermosgd[fast]"); equal to the default path to '
        "floating-point tolerance, not bit for bit (README: Fused CPU step)",
    )


def executor_kwargs(args: argparse.Namespace) -> dict:
    """The executor options as keyword arguments of ``run_sweep`` / ``reproduce``."""
    return {"executor": args.executor or "auto", "workers": args.workers, "scheduler": args.scheduler}
