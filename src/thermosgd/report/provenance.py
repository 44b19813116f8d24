"""Provenance and attachments: embedded figures, the run's own tables, wall time, machine, rerun command."""

from __future__ import annotations

import base64
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

from thermosgd import fmt
from thermosgd.report.catalogue import Experiment
from thermosgd.report.common import number, read_json
from thermosgd.report.records import Figure, Table

__all__ = [
    "WALL_TIME",
    "embedded_figures",
    "markdown_details",
    "markdown_tables",
    "recorded_wall_time",
    "recorded_machine",
    "file_time_span",
    "environment",
    "rerun_command",
]

WALL_TIME = ".thermosgd-wall.json"  # written by thermosgd.reproduce after each run


def embedded_figures(folder: Path, first: tuple[str, ...] = ()) -> list[Figure]:
    """The folder's PNG figures as ``data:`` URIs (the PDFs stay in the folder).

    Args:
        folder: a result folder.
        first: figure names shown first, in this order (a section's own figures: fig9's before fig10's);
            the rest follow in natural order (fig9 before fig10).
    """
    rank = {name: i for i, name in enumerate(first)}

    def key(p: Path):
        own = next((rank[n] for n in rank if p.stem == n or p.stem.startswith(n + "_")), len(rank))
        return own, [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem)]

    pngs = sorted(folder.glob("*.png"), key=key) + sorted((folder / "figures").glob("*.png"), key=key)
    return [
        Figure(p.stem.replace("_", " "), "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode())
        for p in pngs
    ]


def markdown_details(folder: Path) -> list[Table]:
    """The tables of the folder's own markdown report(s), for the full detail."""
    tables = []
    for md in sorted(folder.glob("*.md")):
        try:
            tables += markdown_tables(md.read_text(), source=md.name)
        except (OSError, UnicodeDecodeError):
            continue
    return tables


def markdown_tables(text: str, source: str = "") -> list[Table]:
    """The pipe tables of a markdown text, each captioned by the heading above it.

    Only what the package's own reports write: ``#`` headings and
    ``| a | b |`` tables with a ``|---|`` rule; ``\\|`` is a literal bar.
    """
    tables, caption, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("#"):
            caption = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|?\s*:?-{3,}.*", lines[i + 1].strip()):
            header = _cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i].strip()))
                i += 1
            tables.append(Table(f"{caption} ({source})" if source else caption, header, rows))
            continue
        i += 1
    return tables


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|") if not line.strip().endswith("\\|") else line.strip())
    return [re.sub(r"\*\*|`", "", p.strip().replace("\\|", "|")) for p in parts]


def recorded_wall_time(folder: Path) -> str:
    """The wall time ``thermosgd reproduce`` recorded for its last run on this folder, or ""."""
    data = read_json(folder / WALL_TIME) or {}
    if number(data.get("seconds")) is None:
        return ""
    when = f", finished {data['finished']}" if data.get("finished") else ""
    return f"{fmt.fixed(data['seconds'], 1)} s{when}"


def recorded_machine(folder: Path) -> str:
    """The machine ``thermosgd reproduce`` recorded for its last run here, or ""."""
    machine = (read_json(folder / WALL_TIME) or {}).get("machine")
    if not isinstance(machine, dict):
        return ""
    return "; ".join(f"{k} {v}" for k, v in machine.items())


def file_time_span(folder: Path) -> str:
    """A wall time the run did not record: the span of the folder's file times."""
    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file() and p.name != ".lock"]
    if len(times) < 2:
        return "not recorded"
    return f"≈ {fmt.fixed(max(times) - min(times), 0)} s (from file times; not recorded by the run)"


def environment() -> list[tuple[str, str]]:
    """Versions and the machine that wrote the report."""
    rows = []
    for pkg in ("thermosgd", "torch", "numpy", "scipy", "xarray", "matplotlib", "jinja2"):
        try:
            rows.append((pkg, metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            rows.append((pkg, "not installed"))
    rows.append(("python", platform.python_version()))
    rows.append(("system", f"{platform.system()} {platform.release()} ({platform.machine()})"))
    rows.append(("CPU", f"{_cpu_name()}, {os.cpu_count()} logical cores"))
    rows.append(("GPU", _gpu()))
    return rows


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _gpu() -> str:
    torch = sys.modules.get("torch")  # loading torch only to ask would cost `thermosgd report` seconds
    if torch is None:
        return "not checked (torch not loaded); see each run's machine"
    try:
        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "Apple MPS"
    except Exception:  # noqa: BLE001 - a broken driver must not stop the report
        return "unknown"
    return "none visible to torch"


def rerun_command(exp: Experiment, folder: Path) -> str:
    """The ``thermosgd reproduce`` command that reruns this folder's experiment."""
    run = read_json(folder / ".thermosgd-run.json") or {}
    flags = " --quick" if run.get("quick") else ""
    for k in ("seeds", "steps"):
        if run.get(k):
            flags += f" --{k} {run[k]}"
    if run.get("substitute_digits"):
        flags += " --substitute-digits"
    elif exp.key in ("fig2-bottom", "fig11", "fig12", "fig13", "fig14"):
        flags += " --data-dir DATA"
    return f"thermosgd reproduce {exp.name}{flags} --out {folder}"
