"""MkDocs hook: the command-line reference, generated from the argparse parser at build time.

``docs/cli.md`` holds the marker ``<!-- cli-reference -->``; this hook replaces it with the
``--help`` of ``thermosgd`` and of every subcommand, as :func:`thermosgd.cli.build_parser`
defines them, so the page lists every command and option the installed code accepts.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

MARKER = "<!-- cli-reference -->"


def _help(parser: argparse.ArgumentParser) -> str:
    # argparse wraps to $COLUMNS: fix it, so the page does not depend on the terminal that built it.
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        return parser.format_help().rstrip()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of ``parser``, by name, in the order ``--help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def reference_markdown() -> str:
    """``thermosgd --help``, then one section per subcommand with its ``--help``."""
    from thermosgd.cli import build_parser

    parser = build_parser()
    parts = ["## `thermosgd`", "", "```text", _help(parser), "```", ""]
    for name, sub in subcommands(parser).items():
        parts += [f"## `thermosgd {name}`", "", "```text", _help(sub), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: replace the marker on the page that holds it."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference_markdown())
