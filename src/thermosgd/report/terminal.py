"""The page's summary table as plain text, printed at the end of ``thermosgd reproduce``."""

from __future__ import annotations

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
    rows = []
    for s in report.sections:
        if not s.measured:  # not run here: one line, not one per claim
            rows.append((s.name, _cut(s.title, width), "-", "not run", s.claims[0].verdict if s.claims else ""))
            continue
        for i, c in enumerate(s.claims):
            measured = f"{c.measured} ({c.left_out})" if c.left_out else c.measured
            rows.append(
                (s.name if i == 0 else "", _cut(c.label, width), c.paper or "-", _cut(measured, width), c.verdict)
            )
    widths = [max(len(r[k]) for r in [_HEADER, *rows]) for k in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [_HEADER, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
