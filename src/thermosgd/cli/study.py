"""``thermosgd study``: the η × |B| × seed experiment for any nn.Module, from a study TOML."""

from __future__ import annotations

from pathlib import Path

from thermosgd.cli.common import add_executor_args, executor_kwargs, out_folder
from thermosgd.errors import UsageError


def register(sub) -> None:
    p = sub.add_parser(
        "study",
        help="study your own model: lr × batch size × seeds of any nn.Module, from a TOML file",
        description="Run (or resume) the study described by STUDY.toml into --out. The model comes "
        'from [model] factory = "module:function" in the TOML\'s folder (see NOTES-study.md).',
    )
    p.add_argument("config", type=Path, metavar="STUDY.toml")
    p.add_argument("--out", type=out_folder, help="results folder (required unless --dry-run)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the grid, its units and the estimated time and memory (from a short trial run); write nothing",
    )
    add_executor_args(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_study)


def _study(args) -> int:
    from thermosgd.studies.run import plan_study, run_study
    from thermosgd.studies.spec import resolve

    study = resolve(args.config)
    if args.dry_run:
        if args.out is not None:
            from thermosgd.studies.run import check_folder

            check_folder(study, args.out)  # the refusal a real run would give
        print(plan_study(study, **executor_kwargs(args)).line(study))
        return 0
    if args.out is None:
        raise UsageError("--out DIR is required (or use --dry-run)")
    run_study(study, args.out, progress=not args.no_progress, **executor_kwargs(args))
    print(f"results in {args.out}")
    return 0
