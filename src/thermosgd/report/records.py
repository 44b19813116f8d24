"""Plain records the page and the terminal summary are made from.

Every number in them is already a string, written once by :mod:`thermosgd.fmt`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Claim",
    "Table",
    "Figure",
    "Collapse",
    "Section",
    "Report",
]


@dataclass
class Claim:
    """One measured number set against the paper's.

    Attributes:
        label: what is compared, e.g. "activation rate: η exponent α (Fig. 3)".
        paper: the paper's value, e.g. "α = 2".
        measured: e.g. "α = 1.52 [1.10, 3.86]".
        verdict: one of :data:`thermosgd.analysis.verdict.VERDICTS`.
        note: why, and what was left out per swept value.
        left_out: short count of replicas left out, e.g. "8 replicas left out" ("" if none).
    """

    label: str
    paper: str
    measured: str
    verdict: str
    note: str = ""
    left_out: str = ""


@dataclass
class Table:
    """A table of strings."""

    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    """An embedded PNG (``data:`` URI) and its caption."""

    caption: str
    src: str


@dataclass
class Collapse:
    """Data of one interactive collapse plot (seed-mean curves with bands).

    Attributes:
        id: HTML id, unique on the page.
        title: heading above the plot.
        data: JSON-ready dict read by the page's script: ``over``, ``symbol``,
            ``metric``, ``reference``, ``sign``, ``bounds``, ``paper``, ``fitted``,
            ``ci`` and ``curves`` (per swept value: ``label``, ``value``, ``color``,
            ``t``, ``mean``, ``lo``, ``hi``; ``lo``/``hi`` = mean ∓ one standard error).
    """

    id: str
    title: str
    data: dict


@dataclass
class Section:
    """One experiment: the claim, what was run, what was measured, figures, provenance."""

    id: str
    experiment: str
    name: str
    title: str
    claim: str
    source: str
    folder: str = ""
    measured: bool = False
    run: list[tuple[str, str]] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings: smoke size, substitute data, missing files
    reading: list[str] = field(default_factory=list)  # how to read the numbers (definitions)
    tables: list[Table] = field(default_factory=list)
    details: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    collapses: list[Collapse] = field(default_factory=list)
    config: str = ""
    command: str = ""
    wall_time: str = ""
    machine: str = ""


@dataclass
class Report:
    """The whole page."""

    runs_dir: str
    generated: str
    sections: list[Section]
    environment: list[tuple[str, str]]
    unrecognized: list[str] = field(default_factory=list)
    margin_text: str = "as recorded by each run (default ±10%)"
    warnings: list[str] = field(default_factory=list)
