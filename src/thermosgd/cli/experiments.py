"""``thermosgd drift | equal-error | generalization``: the prediction-vs-measurement experiments.

Each subcommand runs one experiment at its preset's size (``--quick`` for
seconds), prints a markdown table (or one JSON object with ``--json``) and, with
``--out DIR``, writes ``DIR/<name>.{png,pdf,md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys

from thermosgd.cli.common import out_folder

_EXIT = "Exit code 2 on bad input."


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", metavar="DIR", type=out_folder, help="write the figure (PNG, PDF), a markdown table and a JSON here"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--quick", action="store_true", help="a seconds-long run (smoke test)")
    p.add_argument("--seed", type=int, help="master seed")


def register(subparsers) -> None:
    """Add the ``drift``, ``equal-error`` and ``generalization`` subcommands."""
    p = subparsers.add_parser(
        "drift",
        help="measured drift of b and V² beyond the mean gradient vs the paper's η²/|B| prediction",
        description="Clone one state and take one SGD step per clone; and run SGD ensembles from one shared "
        "initialization beside mean-gradient references. Report the noise-induced drift of b and "
        "V² per step, the paper's thermophoretic drift, their ratio, the fitted η and |B| "
        "exponents and err2(t). " + _EXIT,
    )
    _common(p)
    p.add_argument("--lr", type=float, nargs="+", help="learning rates (default 0.025 0.05 0.1)")
    p.add_argument("--batch-size", type=int, nargs="+", help="batch sizes (default 1 2 4)")
    p.add_argument("--steps", type=int, help="SGD steps of the trajectories (default 800)")
    p.add_argument("--blocks", type=int, help="independent blocks of replicas (default 16)")
    p.add_argument("--replicas", type=int, help="replicas per block (default 128)")
    p.add_argument("--clones", type=int, help="clones for the one-step estimate (default 4096)")
    p.add_argument("--record-every", type=int, help="record every k steps (default 20)")
    p.add_argument("--labels", choices=("random", "teacher"), help="random labels (paper, default) or a teacher")
    p.set_defaults(func=_guarded(_run_drift, "drift"))

    p = subparsers.add_parser(
        "equal-error",
        help="σ and ‖V‖ when each learning rate first reaches the same training error",
        description="Sec. 5 after Eq. 28: same init, η1 < η2, trained to training error ε on a teacher task; "
        "report activation rate and ‖V‖ at that point and how often σ1 ≥ σ2 and v1 ≥ v2. " + _EXIT,
    )
    _common(p)
    p.add_argument("--lr", type=float, nargs="+", help="learning rates (default 0.025 0.05 0.1 0.2)")
    p.add_argument("--batch-size", type=int, help="batch size (default 1)")
    p.add_argument("--seeds", type=int, help="seeds (default 32)")
    p.add_argument("--steps", type=int, help="step budget (default 8000)")
    p.add_argument("--record-every", type=int, help="check the training error every k steps (default 10)")
    p.add_argument("--target", type=float, help="target training error ε (default 0.1)")
    p.add_argument("--train-size", type=int, help="training set size (default 256)")
    p.set_defaults(func=_guarded(_run_equal_error, "equal-error"))

    p = subparsers.add_parser(
        "generalization",
        help="test accuracy vs final activation rate and ‖V‖ over an (η, |B|) grid",
        description="Teacher task with held-out data: table of test accuracy, activation rate and ‖V‖ per "
        "(η, |B|) cell and their Spearman rank correlations. " + _EXIT,
    )
    _common(p)
    p.add_argument("--lr", type=float, nargs="+", help="learning rates (default 0.025 0.05 0.1 0.2)")
    p.add_argument("--batch-size", type=int, nargs="+", help="batch sizes (default 1 4 16)")
    p.add_argument("--seeds", type=int, help="seeds per cell (default 16)")
    p.add_argument("--steps", type=int, help="SGD steps (default 4000)")
    p.add_argument("--train-size", type=int, help="training set size (default 256)")
    p.add_argument("--test-size", type=int, help="held-out set size (default 2000)")
    p.set_defaults(func=_guarded(_run_generalization, "generalization"))


def _guarded(run, command: str):
    """``run`` with the sweep's folder rule on ``--out``: refused before the experiment runs unless new,
    empty or an earlier ``thermosgd COMMAND --out`` (touching nothing); marked as COMMAND's once written."""

    def guarded(args) -> int:
        from thermosgd.sweep.store import check_output_folder, mark_command_folder, unlink_links

        if args.out is not None:
            args.out = check_output_folder(args.out, "command", command)
            if args.out.is_dir():  # the figure writer would follow a link planted under one of our names
                stem = command.replace("-", "_")
                unlink_links(args.out, [f"{stem}.{ext}" for ext in ("png", "pdf", "md", "json")])
        code = run(args)
        if args.out is not None:  # checked before the run; its files are ours now
            mark_command_folder(args.out, command)
        return code

    return guarded


def _emit(args, payload: dict) -> int:
    if args.json:
        from thermosgd.jsonsafe import json_safe

        print(json.dumps(json_safe(payload)))
    else:
        sys.stdout.write(payload["table"])
        for f in payload["files"]:
            print(f"wrote {f}")
    return 0


def _tuple(v):
    return None if v is None else tuple(v)


def _run_drift(args) -> int:
    from thermosgd.reproduce.experiments import run_drift

    return _emit(
        args,
        run_drift(
            args.out,
            quick=args.quick,
            lrs=_tuple(args.lr),
            batch_sizes=_tuple(args.batch_size),
            steps=args.steps,
            blocks=args.blocks,
            per_block=args.replicas,
            clones=args.clones,
            record_every=args.record_every,
            labels=args.labels,
            seed=args.seed,
        ),
    )


def _run_equal_error(args) -> int:
    from thermosgd.reproduce.experiments import run_equal_error

    return _emit(
        args,
        run_equal_error(
            args.out,
            quick=args.quick,
            lrs=_tuple(args.lr),
            batch_size=args.batch_size,
            seeds=args.seeds,
            steps=args.steps,
            record_every=args.record_every,
            target=args.target,
            train_size=args.train_size,
            seed=args.seed,
        ),
    )


def _run_generalization(args) -> int:
    from thermosgd.reproduce.experiments import run_generalization

    return _emit(
        args,
        run_generalization(
            args.out,
            quick=args.quick,
            lrs=_tuple(args.lr),
            batch_sizes=_tuple(args.batch_size),
            seeds=args.seeds,
            steps=args.steps,
            train_size=args.train_size,
            test_size=args.test_size,
            seed=args.seed,
        ),
    )
