"""The page's summary table as plain text, printed at the end of ``thermosgd reproduce``."""

from __future__ import annotations

from thermosgd.analysis.verdict import closing_table
from thermosgd.report.records import Report

__all__ = ["summary_table"]

_HEADER = ("experiment", "what is compared", "paper", "measured", "verdict")


def summary_table(report: Report, *, width: int = 48) -> str:
    """One line per claim, grouped by experiment, the same rows as the page's summary.

    Args:
        report: collected records.
        width: longest "what is compared" / "measured" text before it is cut with "…".

    Returns:
        The table, lines joined by newlines (no trailing newline).
    """
    table = closing_table((s.name, s.title, s.measured, s.claims) for s in report.sections)
    rows = [(r.experiment, _cut(r.label, width), r.paper, _cut(r.measured, width), r.verdict) for r in table]
    widths = [max(len(r[k]) for r in [_HEADER, *rows]) for k in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [_HEADER, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
