"""Read a runs folder (what ``thermosgd reproduce`` writes) into section records.

Each result folder is recognised by what it holds (``.thermosgd-run.json``,
``config.json``, ``summary.json``, ``walk_report.json``, ...) and read by the
reader of its kind (:mod:`thermosgd.report.readers`), tolerantly: a field that
a run did not write shows as "not measured", never as an error. Experiments of
the paper with no folder get a "not measured" section saying how to run them.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path

from thermosgd import fmt, presets
from thermosgd.analysis.verdict import NOT_MEASURED, check_margin
from thermosgd.report.catalogue import Experiment, by_key, experiments, preset_of
from thermosgd.report.common import EXPONENT, PAPER_EXPONENT, SYMBOL, exponent_label, read_json
from thermosgd.report.provenance import (
    embedded_figures,
    environment,
    file_time_span,
    markdown_details,
    recorded_machine,
    recorded_wall_time,
    rerun_command,
)
from thermosgd.report.readers import EXPECTED, reader
from thermosgd.report.records import Claim, Report, Section

__all__ = ["collect", "identify"]


def collect(runs_dir: str | os.PathLike, margin: float | None = None) -> Report:
    """Read every result folder under ``runs_dir`` into a :class:`Report`.

    Args:
        runs_dir: a folder of result folders (``runs/``), or one result folder.
        margin: judge every exponent with this practical margin (a fraction of the paper's
            value); None: the margin each run recorded in its ``summary.json`` (default 0.1).

    Returns:
        Sections in the paper's order: one per result folder found, plus a
        "not measured" section for each experiment of the paper without one
        (none when ``runs_dir`` is itself one result folder).
    """
    runs_dir = Path(runs_dir)
    if margin is not None:
        check_margin(margin)
    found: dict[str, list[Path]] = {}
    unrecognized = []
    single = identify(runs_dir) is not None  # one result folder: its section only
    folders = [runs_dir] if single else sorted(p for p in runs_dir.iterdir() if p.is_dir())
    for folder in folders:
        key = identify(folder)
        if key is None:
            if not folder.name.startswith("."):
                unrecognized.append(folder.name)
            continue
        found.setdefault(key, []).append(folder)
    sections: list[Section] = []
    used_ids: set[str] = set()
    for exp in experiments():
        for folder in found.get(exp.key, []):
            sections.append(_section(exp, folder, runs_dir, used_ids, margin))
        if exp.key not in found and not exp.optional and not single:
            sections.append(_missing(exp, runs_dir, used_ids))
    return Report(
        runs_dir=str(runs_dir),
        generated=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        sections=sections,
        environment=environment(),
        unrecognized=unrecognized,
        margin_text="as recorded by each run (default ±10%)" if margin is None else f"±{fmt.percent(margin)}",
    )


def identify(folder: Path) -> str | None:
    """The experiment key of a result folder, or None if it holds no known results."""
    marker = read_json(folder / ".thermosgd-run.json") or {}
    if by_key(str(marker.get("experiment", ""))):
        return marker["experiment"]
    config = read_json(folder / "config.json") or {}
    summary = read_json(folder / "summary.json") or {}
    for name in (config.get("preset"), summary.get("experiment"), summary.get("preset")):
        key = _experiment_of(name)
        if key:
            return key
    for file, key in (
        ("walk_report.json", "walk"),
        ("drift.json", "drift"),
        ("equal_error.json", "equal-error"),
        ("generalization.json", "generalization"),
        ("mechanism.json", "mechanism"),
    ):
        if (folder / file).exists():
            return key
    if "model" in config and "train" in config:  # a two-layer sweep: by folder name, else by its grid
        return _experiment_of(folder.name) or _twolayer_by_config(config)
    return None


def _experiment_of(name) -> str | None:
    if not name:
        return None
    if by_key(name):
        return name
    for exp in experiments():
        if name in exp.figures or name == exp.name:
            return exp.key
    return None


def _twolayer_by_config(config: dict) -> str | None:
    """Match a sweep's model, inputs and grid against the two-layer presets."""
    model, data, train = config.get("model", {}), config.get("data", {}), config.get("train", {})
    for p in presets.PRESETS.values():
        raw = p.params
        if p.kind != "twolayer" or not raw:
            continue
        pm, pd, pt = raw.get("model", {}), raw.get("data", {}), raw.get("train", {})
        same = (
            all(model.get(k) == v for k, v in pm.items())
            and data.get("inputs") == pd.get("inputs")
            and [float(x) for x in train.get("lr", [])] == [float(x) for x in pt.get("lr", [])]
            and [int(x) for x in train.get("batch_size", [])] == [int(x) for x in pt.get("batch_size", [])]
        )
        if same:
            return _experiment_of(p.name)
    return None


def _section(exp: Experiment, folder: Path, runs_dir: Path, used_ids: set, margin: float | None) -> Section:
    sec = Section(
        id=_unique_id(folder.name if folder != runs_dir else exp.name, used_ids),
        experiment=exp.key,
        name=exp.name,
        title=exp.title,
        claim=exp.claim,
        source=exp.source,
        folder=str(folder),
        measured=True,
    )
    try:
        reader(exp)(sec, exp, folder, margin)
    except Exception as exc:  # noqa: BLE001 - one unreadable folder must not take the page down
        sec.notes.append(
            f"This folder could not be read completely ({type(exc).__name__}: {exc}); "
            "what is shown is what could be read."
        )
    if not sec.claims:
        sec.claims.append(Claim("the paper's claim", "", fmt.NA, NOT_MEASURED, "no measured value in this folder"))
    sec.figures = embedded_figures(folder)
    sec.details += markdown_details(folder)
    sec.wall_time = recorded_wall_time(folder) or sec.wall_time or file_time_span(folder)
    sec.machine = recorded_machine(folder)
    if not sec.command:
        sec.command = rerun_command(exp, folder)
    return sec


def _missing(exp: Experiment, runs_dir: Path, used_ids: set) -> Section:
    needs = ""
    if exp.key in ("fig2-bottom",):
        needs = " (needs the Fashion-MNIST IDX files in --data-dir, or --substitute-digits)"
    elif exp.key in ("fig11", "fig12", "fig13", "fig14"):
        needs = " (needs the CIFAR-10 binary files in --data-dir, or --substitute-digits)"
    out = runs_dir / exp.name
    sec = Section(
        id=_unique_id(exp.name, used_ids),
        experiment=exp.key,
        name=exp.name,
        title=exp.title,
        claim=exp.claim,
        source=exp.source,
        measured=False,
        command=f"thermosgd reproduce {exp.name} --out {out}",
    )
    why = f"not run: no results folder{needs}"
    for name in exp.figures:
        p = preset_of(name)
        if p is not None and p.over in SYMBOL:
            sec.claims.append(
                Claim(
                    exponent_label(p.metric, p.over, name),
                    f"{EXPONENT[p.over]} = {fmt.sig(PAPER_EXPONENT[p.over])}",
                    "not run",
                    NOT_MEASURED,
                    why,
                )
            )
    for label, paper in EXPECTED.get(exp.key, ()):
        sec.claims.append(Claim(label, paper, "not run", NOT_MEASURED, why))
    if not sec.claims:
        sec.claims.append(Claim("the paper's claim", "", "not run", NOT_MEASURED, why))
    sec.notes.append(
        f"No results for this experiment under {runs_dir}{needs}. "
        f"Run `{sec.command}`, then `thermosgd report {runs_dir}`."
    )
    return sec


def _unique_id(name: str, used: set) -> str:
    base = "sec-" + re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-").lower()
    out, i = base, 2
    while out in used:
        out, i = f"{base}-{i}", i + 1
    used.add(out)
    return out
