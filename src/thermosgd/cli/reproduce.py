"""``thermosgd reproduce``: the paper's experiments by name (see ``--list``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from thermosgd import presets, progress
from thermosgd.cli.common import (
    add_device_arg,
    add_executor_args,
    add_fused_arg,
    add_margin_arg,
    executor_kwargs,
    margin_value,
    out_folder,
)


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run the paper's experiments and write results + figures",
        description="Run preset experiments of the paper. Without NAME: the default set "
        "(every figure; the image presets on scikit-learn's digits, marked 'substitute: digits', unless the paper's "
        "files are in $THERMOSGD_DATA) at a small size, under runs/ (--quick: runs-quick/).",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="preset(s); see --list")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    p.add_argument("--steps", type=int, help="SGD iterations (default: the preset's)")
    p.add_argument("--out", type=out_folder, help="output folder (default runs/NAME; with --quick runs-quick/NAME)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with Fashion-MNIST / CIFAR-10 files (default $THERMOSGD_DATA)",
    )
    p.add_argument(
        "--substitute-digits",
        action="store_true",
        help="deep image presets: use scikit-learn's bundled 8x8 digits even where Fashion-MNIST / CIFAR-10 "
        "are present (without --data-dir and with the files absent from $THERMOSGD_DATA, digits is the default); "
        "labeled 'substitute: digits' in every table, title, file name and summary",
    )
    add_executor_args(p)
    add_device_arg(p)
    add_fused_arg(p)
    p.add_argument(
        "--quick", action="store_true", help="seconds-long smoke-test size for every preset (not for conclusions)"
    )
    p.add_argument(
        "--include-diverged",
        action="store_true",
        help="keep replicas flagged as diverged (runaway or non-finite) in the collapse fits",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (verdict lines and the closing table still print)"
    )
    add_margin_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.list:
        print(presets.listing())
        return 0
    margin_value(args)  # a bad --margin fails before anything runs
    if args.seeds is not None:
        presets.check_count("seeds", args.seeds, presets.MAX_SEEDS)
    if args.steps is not None:
        presets.check_count("steps", args.steps, presets.MAX_STEPS)
    for name in args.names:
        presets.get(name)  # unknown names fail before anything runs
    if args.device is not None:
        from thermosgd.checks import torch_device

        torch_device(args.device, "--device")
    if args.fused:
        from thermosgd.twolayer import fused

        fused.require()  # numba missing: one line before anything runs

    margin = margin_value(args)
    assert margin is not None  # not a "recorded" option: the default applies

    data_dir = args.data_dir or (Path(os.environ["THERMOSGD_DATA"]) if os.environ.get("THERMOSGD_DATA") else None)
    with progress.no_bars() if args.no_progress else contextlib.nullcontext():
        _run(args, data_dir, margin)
    return 0


def _run(args, data_dir, margin: float) -> None:
    from thermosgd.reproduce import reproduce  # heavy: torch, xarray, matplotlib

    reproduce(
        args.names or None,
        out=args.out,
        seeds=args.seeds,
        steps=args.steps,
        data_dir=data_dir,
        substitute_digits=args.substitute_digits,
        quick=args.quick,
        include_diverged=args.include_diverged,
        progress=True,  # the lines and the closing table; --no-progress silences the bars only
        device=args.device or "cpu",
        fused=args.fused is not False,
        margin=margin,
        **executor_kwargs(args),
    )
