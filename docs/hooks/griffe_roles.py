"""griffe extension: reStructuredText roles in docstrings rendered as Markdown code.

The docstrings are Google style but cross-reference with Sphinx roles
(``:func:`fit_collapse```, ``:class:`~thermosgd.walk.simulate.Reflect```) and double
backticks, which Markdown would print literally. This rewrites them as code spans when
mkdocstrings loads the package: ``fit_collapse``, ``Reflect`` (a leading ``~`` keeps the last
component, as in Sphinx). Loaded by ``mkdocs.yml`` (``extensions``); the source is unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|attr|meth|data|obj|exc|const):`(~?)([^`<]+?)(?:\s*<[^>]+>)?`")


def markdown_roles(text: str) -> str:
    """``text`` with Sphinx roles and double backticks as Markdown code spans."""

    def code(match: re.Match) -> str:
        tilde, target = match.groups()
        return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"

    return _ROLE.sub(code, text).replace("``", "`")


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_roles(obj.docstring.value)
