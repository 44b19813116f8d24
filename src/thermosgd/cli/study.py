"""``thermosgd study``: the η × |B| × seed experiment for any nn.Module, from a study TOML."""

from __future__ import annotations

from pathlib import Path

from thermosgd.cli.common import add_device_arg, add_executor_args, executor_kwargs, out_folder
from thermosgd.errors import UsageError


def register(sub) -> None:
    p = sub.add_parser(
        "study",
        help="study your own model: lr × batch size × seeds of any nn.Module, from a TOML file",
        description="Run (or resume) the study described by STUDY.toml into --out. The model comes "
        'from [model] factory = "module:function" in the TOML\'s folder (see docs/study.md).',
    )
    p.add_argument("config", type=Path, metavar="STUDY.toml")
    p.add_argument("--out", type=out_folder, help="results folder (required unless --dry-run)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the grid, its units and the estimated time and memory (from a short trial run); write nothing",
    )
    add_executor_args(p)
    add_device_arg(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_study)


def _study(args) -> int:
    from thermosgd.studies.engine import device
    from thermosgd.studies.run import plan_study, run_study
    from thermosgd.studies.spec import resolve

    study = resolve(args.config, device=args.device)
    device(study)  # a missing GPU: one line, before the dry run's trial or anything written
    if args.dry_run:
        _dry_run(study, args.out, plan_study(study, **executor_kwargs(args)))
        return 0
    if args.out is None:
        raise UsageError("--out DIR is required (or use --dry-run)")
    run_study(study, args.out, progress=not args.no_progress, **executor_kwargs(args))
    print(f"results in {args.out}")
    return 0


def _dry_run(study, out: Path | None, plan) -> None:
    """Print the grid, the units and the estimate; with --out, the refusal a real run would
    give, or how many units are already done there."""
    from thermosgd.studies.run import check_folder
    from thermosgd.sweep.run import status
    from thermosgd.sweep.store import CONFIG_FILE

    cfg = study.cfg
    t = cfg.train
    print(f"model       {cfg.model.factory or 'a factory callable'}")
    print(f"data        {cfg.data.source}" + (f" (dim {cfg.data.dim}, online)" if study.data.online else ""))
    print(f"lr          {list(t.lr)}")
    print(f"batch_size  {list(t.batch_size)}")
    print(f"seeds       {len(t.seeds)} ({t.seeds[0]} … {t.seeds[-1]})")
    print(f"steps       {t.steps}, noise {t.noise}" + ("" if t.noise == "sgd" else f" (G = {t.gd_batch})"))
    print(f"device      {t.device}")
    print(f"plan        {plan.line(study)} (from a short trial run here, ±3×)")
    if out is not None:
        check_folder(study, out)
        if (out / CONFIG_FILE).exists():
            st = status(out)
            print(f"done        {st.done} of {st.units} units already in {out}")
