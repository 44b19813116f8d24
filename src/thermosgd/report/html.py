"""Render the report records as one self-contained HTML page (Jinja2).

Figures are embedded as base64 PNG, the interactive collapse plots as JSON data
drawn by a short plain-JavaScript SVG plotter that is inlined in the page: no
network access is needed to view it.
"""

from __future__ import annotations

import json
import os
import stat
from importlib import metadata, resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from thermosgd import fmt
from thermosgd.analysis.verdict import RULES, VERDICTS
from thermosgd.errors import UsageError
from thermosgd.jsonsafe import json_safe
from thermosgd.report.collect import collect
from thermosgd.report.records import Report
from thermosgd.sweep.store import write_text

__all__ = ["render", "write_report", "check_page", "INDEX", "PAGE_MARKER"]

INDEX = "index.html"
#: Every page this package writes has it in its head (``report.html.j2``); a file without it is not ours.
PAGE_MARKER = b'<meta name="generator" content="thermosgd'
_HEAD_BYTES = 4096


def _json_script(data) -> Markup:
    """JSON safe inside ``<script>``: no ``</script>`` or HTML comment can close it early; NaN and ±inf
    (e.g. a damaged run's bounds) become null, as strict JSON requires."""
    text = json.dumps(json_safe(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
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


def check_page(runs_dir: str | os.PathLike, report: Report | None = None) -> None:
    """Refuse (:class:`UsageError`, one line) to write ``runs_dir/index.html`` over a file that is not ours.

    An existing ``index.html`` must be a regular file (not a link) whose head holds
    :data:`PAGE_MARKER`. Without one, the page is written only where a run of ours
    lives: ``report`` must hold a measured section (skipped when ``report`` is None, so
    ``reproduce`` can check before it runs).
    """
    path = Path(runs_dir) / INDEX
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        info = None
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{path} is not a regular file written by thermosgd; remove it or choose another folder")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as f:
                head = f.read(_HEAD_BYTES)
        except OSError as exc:
            raise UsageError(f"{path} cannot be read ({exc.strerror}); it is left as it is") from None
        if PAGE_MARKER not in head:
            raise UsageError(
                f"{path} was not written by thermosgd; it is left as it is (move it, or choose another folder)"
            )
        return
    if report is not None and not any(s.measured for s in report.sections):
        raise UsageError(
            f"{runs_dir} holds no thermosgd results, so no page is written there "
            "(give the folder `thermosgd reproduce` wrote, default runs/)"
        )


def write_report(runs_dir: str | os.PathLike, report: Report | None = None) -> Path:
    """Write ``runs_dir/index.html``: every result folder under ``runs_dir`` on one page.

    Args:
        runs_dir: the folder ``thermosgd reproduce`` writes into (``runs/``), or one result folder.
        report: records already collected from ``runs_dir`` (collected here when None).

    Returns:
        The path of the page. It is replaced atomically, so a reader never sees half a page.

    Raises:
        UsageError: ``runs_dir`` is not a folder, holds no results of ours, or its
            ``index.html`` is not a page of ours (:func:`check_page`).
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir} is not a folder; give the folder `thermosgd reproduce` wrote (default runs/)")
    if report is None:
        report = collect(runs_dir)
    check_page(runs_dir, report)
    page = render(report)
    # Through the store's writer: an exclusively created temporary renamed into place, so a link
    # planted as index.html is replaced, never written through.
    return write_text(runs_dir / INDEX, page)
