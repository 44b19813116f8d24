"""``thermosgd sweep`` and ``thermosgd status``."""

from __future__ import annotations

from pathlib import Path

from thermosgd.cli.common import add_device_arg, add_executor_args, add_fused_arg, executor_kwargs, out_folder
from thermosgd.config import load_toml
from thermosgd.errors import UsageError


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a custom grid from a TOML config",
        description="Run (or resume) the sweep described by CONFIG.toml into --out.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG.toml")
    p.add_argument("--out", type=out_folder, help="results folder (required unless --dry-run)")
    p.add_argument(
        "--dry-run", action="store_true", help="print the grid, its units and estimated memory and time; run nothing"
    )
    add_executor_args(p)
    add_device_arg(p)
    add_fused_arg(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_sweep)

    s = sub.add_parser(
        "status",
        help="how many units of a sweep folder are done, missing, corrupt",
        description="Units done, missing and corrupt, diverged replicas, and whether a "
        "sweep is writing to FOLDER now. Reads only.",
    )
    s.add_argument("folder", type=Path)
    s.set_defaults(func=_status)


def _sweep(args) -> int:
    from thermosgd.figures import sweep_figure
    from thermosgd.sweep.run import run_sweep

    cfg = load_toml(args.config)
    if args.device is not None:
        from thermosgd.checks import torch_device

        torch_device(args.device, "--device")
        cfg = cfg.replace(train={"device": args.device})
    if args.fused:
        from thermosgd.twolayer import fused

        fused.require()  # numba missing: one line before anything runs
    if args.fused is not None:
        cfg = cfg.replace(train={"fused": args.fused})
    if args.dry_run:
        _dry_run(cfg, args.out, executor_kwargs(args))
        return 0
    if args.out is None:
        raise UsageError("--out DIR is required (or use --dry-run)")
    ds = run_sweep(cfg, args.out, progress=not args.no_progress, **executor_kwargs(args))
    for over in ("lr", "batch_size"):
        if ds.sizes[over] > 1:
            for metric in ("activation_rate", "v_norm"):
                sweep_figure(ds, metric, over=over, out_stem=args.out / "figures" / f"{metric}-vs-{over}")
    print(f"results in {args.out}")
    return 0


def _dry_run(cfg, out: Path | None, executor: dict) -> None:
    """Print the grid, the units and the estimated cost; with --out, what a real run would
    still do there. Refuses (like a real run) a sweep that would not fit."""
    from thermosgd.checks import torch_device
    from thermosgd.sweep.run import check_config, plan_sweep, status
    from thermosgd.sweep.store import CONFIG_FILE, check_output_folder

    torch_device(cfg.train.device, "[train] device")  # the refusal a real run would give (no such GPU)

    plan = plan_sweep(cfg, **executor)
    units = plan.units
    t = cfg.train
    seeds = list(t.seeds) if len(t.seeds) <= 20 else f"{t.seeds[0]} … {t.seeds[-1]} ({len(t.seeds)} seeds)"
    print(f"lr          {list(t.lr)}")
    print(f"batch_size  {list(t.batch_size)}")
    print(f"seeds       {seeds}")
    print(f"steps       {t.steps} (record every {t.record_every}, probe every {cfg.probe_every_steps})")
    print(f"noise       {t.noise}" + ("" if t.noise == "sgd" else f" (G = {t.gd_batch} samples per step)"))
    print(f"replicas    {len(t.lr) * len(t.batch_size) * len(t.seeds)}")
    auto = ", auto" if cfg.sweep.seeds_per_unit == "auto" else ""
    print(
        f"units       {len(units)} ({len(units[0].seeds)} seeds per unit{auto}; "
        f"engine calls of {plan.call_seeds} seeds)"
    )
    where = plan.executor if plan.workers is None else f"{plan.executor}, {plan.workers} workers"
    print(f"estimate    {plan.cost.describe()} ({where}; engine model, ±2×)")
    if out is not None:
        check_output_folder(out, "sweep")  # the refusal a real run would give
    if out is not None and (out / CONFIG_FILE).exists():
        check_config(out, cfg)  # the refusal a real run would give
        st = status(out)
        print(f"done        {st.done} of {st.units} units already in {out}")


def _status(args) -> int:
    from thermosgd.sweep.run import status

    print(status(args.folder).line())
    return 0
