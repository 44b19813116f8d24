"""Render the report records as one self-contained HTML page (Jinja2).

Figures are embedded as base64 PNG, the interactive collapse plots as JSON data
drawn by a short plain-JavaScript SVG plotter that is inlined in the page: no
network access is needed to view it.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import metadata, resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from thermosgd import fmt
from thermosgd.analysis.verdict import RULES, VERDICTS
from thermosgd.errors import UsageError
from thermosgd.report.collect import collect
from thermosgd.report.records import Report

__all__ = ["render", "write_report", "INDEX"]

INDEX = "index.html"


def _json_script(data) -> Markup:
    """JSON safe inside ``<script>``: no ``</script>`` or HTML comment can close it early."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("thermosgd.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    env.filters.update(
        json_script=_json_script,
        verdict_class=lambda v: "v-" + str(v).replace(" ", "-"),
        basename=lambda p: os.path.basename(str(p).rstrip("/")),
        exponent=fmt.exponent,
        sig=fmt.sig,
        interval=fmt.interval,
    )
    return env


def _asset(name: str) -> Markup:
    # CSS and JS are inlined verbatim, not parsed as templates.
    return Markup(resources.files("thermosgd.report").joinpath("templates", name).read_text(encoding="utf-8"))


def render(report: Report) -> str:
    """The page for ``report`` as an HTML string."""
    try:
        version = metadata.version("thermosgd")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "(source)"
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        verdicts=VERDICTS,
        rules=RULES,
        version=version,
        css=_asset("report.css"),
        js=_asset("collapse.js"),
    )


def write_report(runs_dir: str | os.PathLike, report: Report | None = None) -> Path:
    """Write ``runs_dir/index.html``: every result folder under ``runs_dir`` on one page.

    Args:
        runs_dir: the folder ``thermosgd reproduce`` writes into (``runs/``), or one result folder.
        report: records already collected from ``runs_dir`` (collected here when None).

    Returns:
        The path of the page. It is replaced atomically, so a reader never sees half a page.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir} is not a folder; give the folder `thermosgd reproduce` wrote (default runs/)")
    if report is None:
        report = collect(runs_dir)
    page = render(report)
    path = runs_dir / INDEX
    fd, tmp = tempfile.mkstemp(dir=runs_dir, prefix=".index-", suffix=".html.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
