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

from thermosgd import fmt
from thermosgd.analysis.verdict import NOT_MEASURED, check_margin
from thermosgd.report.catalogue import CUSTOM_STUDY, CUSTOM_SWEEP, Experiment, by_key, experiments, preset_of
from thermosgd.report.common import EXPONENT, PAPER_EXPONENT, SYMBOL, exponent_label, json_problem, read_json
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
    unrecognized: list[str] = []
    warnings: list[str] = []
    single = _identify_or_warn(runs_dir, []) is not None  # one result folder: its section only
    folders = [runs_dir] if single else _subfolders(runs_dir, warnings)
    for folder in folders:
        key = _identify_or_warn(folder, warnings)
        if key is None:
            if not folder.name.startswith("."):
                unrecognized.append(folder.name)
                if (folder / "config.json").exists() and not any(str(folder) in w for w in warnings):
                    warnings.append(f"skipped {folder}: its config.json is not a thermosgd configuration")
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
        warnings=warnings,
        margin_text="as recorded by each run (default ±10%)" if margin is None else f"±{fmt.percent(margin)}",
    )


def _subfolders(runs_dir: Path, warnings: list[str]) -> list[Path]:
    out = []
    for p in sorted(runs_dir.iterdir()):
        try:
            if p.is_dir():
                out.append(p)
        except OSError as exc:
            warnings.append(f"skipped {p}: {exc.strerror or type(exc).__name__}")
    return out


def _identify_or_warn(folder: Path, warnings: list[str]) -> str | None:
    """:func:`identify`, or None with a one-line warning for a folder that cannot be read or is damaged."""
    try:
        key = identify(folder)
    except Exception as exc:  # noqa: BLE001 - one unreadable folder must not take the page down
        warnings.append(f"skipped {folder}: {type(exc).__name__}: {exc}")
        return None
    problems = [
        why for name in ("config.json", "summary.json", ".thermosgd-run.json") if (why := _problem(folder, name))
    ]
    if problems:
        warnings.append(f"skipped {folder}: " + "; ".join(problems))
        return None
    return key


def _problem(folder: Path, name: str) -> str:
    return json_problem(folder / name)[1]


def identify(folder: Path) -> str | None:
    """The experiment key of a result folder, or None if it holds no known results.

    A two-layer sweep is known by its ``summary.json`` (written by ``reproduce``) or its
    folder's name (``runs/fig3``); any other two-layer sweep (``thermosgd sweep my.toml
    --out runs/mine``) is a custom ``"sweep"``, never taken for a preset by its grid.
    """
    marker = read_json(folder / ".thermosgd-run.json") or {}
    if by_key(str(marker.get("experiment", ""))):
        return marker["experiment"]
    config = read_json(folder / "config.json") or {}
    summary = read_json(folder / "summary.json") or {}
    for name in (config.get("preset"), summary.get("experiment"), summary.get("preset")):
        key = _experiment_of(name) if isinstance(name, str) else None
        if key:
            return key
    for file, key in (
        ("walk_report.json", "walk"),
        ("drift.json", "drift"),
        ("equal_error.json", "equal-error"),
        ("generalization.json", "generalization"),
        ("mechanism.json", "mechanism"),
        ("hessian-bound.json", "hessian-bound"),
        ("decomposition.json", "decomposition"),
    ):
        if (folder / file).exists():
            return key
    if _is_twolayer_config(config):
        return _experiment_of(folder.name) or CUSTOM_SWEEP
    if isinstance(config.get("study"), dict) and "inputs_sha256" in config:  # a study's stamp
        return CUSTOM_STUDY
    return None


def _is_twolayer_config(config: dict) -> bool:
    """Our two-layer sweep config (not another tool's ``{"model": "gpt2", "train": ...}``)."""
    model, train = config.get("model"), config.get("train")
    return (
        isinstance(model, dict)
        and isinstance(train, dict)
        and all(isinstance(model.get(k), int) for k in ("inputs", "hidden"))
        and isinstance(train.get("lr"), list)
        and isinstance(train.get("batch_size"), list)
    )


def _experiment_of(name) -> str | None:
    if not name:
        return None
    if by_key(name):
        return name
    for exp in experiments():
        if name in exp.figures or name == exp.name:
            return exp.key
    return None


def _section(exp: Experiment, folder: Path, runs_dir: Path, used_ids: set, margin: float | None) -> Section:
    custom = exp.key in (CUSTOM_SWEEP, CUSTOM_STUDY)  # labelled by its folder: it is no preset of the paper
    sec = Section(
        id=_unique_id(folder.name if folder != runs_dir else exp.name, used_ids),
        experiment=exp.key,
        name=folder.resolve().name if custom else exp.name,
        title=f"{exp.title}: {folder}" if custom else exp.title,
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
    sec.figures = embedded_figures(folder, exp.figures)
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
