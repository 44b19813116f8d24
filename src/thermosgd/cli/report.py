"""``thermosgd report``: one self-contained HTML page for a folder of results."""

from __future__ import annotations

from pathlib import Path

from thermosgd.cli.common import add_margin_arg, margin_value


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write RUNS_DIR/index.html: every result on one page (offline, shareable)",
        description="Read every result folder under RUNS_DIR (what `thermosgd reproduce` writes) and write "
        "RUNS_DIR/index.html: a summary of the paper's claims against the measurements, one section per "
        "experiment with figures and an interactive collapse plot, and the provenance. The page is one file "
        "with everything embedded; open it in a browser or send it as an attachment. The page is written only "
        "where results of thermosgd live, and never over an index.html that thermosgd did not write. Folders "
        "that cannot be read are skipped with a one-line warning. Exit code 2 on bad input.",
    )
    p.add_argument(
        "runs_dir",
        nargs="?",
        default="runs",
        type=Path,
        metavar="RUNS_DIR",
        help="folder of result folders, or one result folder (default: runs)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the page's path, not the summary table")
    add_margin_arg(p, recorded=True)
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from thermosgd.errors import UsageError
    from thermosgd.report import collect, summary_table, write_report  # numpy, matplotlib: lazily

    if not args.runs_dir.is_dir():
        raise UsageError(
            f"{args.runs_dir} is not a folder; give the folder `thermosgd reproduce` wrote (default runs/)"
        )
    margin = margin_value(args, recorded=True)
    report = collect(args.runs_dir, margin=margin)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    page = write_report(args.runs_dir, report)
    if not args.quiet:
        print(summary_table(report) + "\n")
    print(page)
    return 0
