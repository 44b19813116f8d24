"""MkDocs hook: the configuration reference, generated from the one config schema at build time.

``docs/configuration.md`` holds the marker ``<!-- config-reference -->``; this hook
replaces it with every section and key of :mod:`thermosgd.config` (the dataclasses'
fields, defaults and ``Attributes:`` docstrings, the allowed values of its checks),
so the page cannot drift from the code. ``tests/test_docs.py`` checks that every key
is documented and that the generated defaults load back into ``SweepConfig()``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

MARKER = "<!-- config-reference -->"


def attribute_docs(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of a Google-style class docstring, as {name: text}.

    Args:
        cls: a class whose docstring may have an ``Attributes:`` section.

    Returns:
        Each attribute's description with its continuation lines joined by spaces.
    """
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    docs: dict[str, str] = {}
    inside, indent, name = False, None, None
    for line in lines:
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside or not line.strip():
            continue
        current = len(line) - len(line.lstrip())
        if current == 0:  # the next section (or prose) ends the attributes
            break
        indent = current if indent is None else indent
        match = re.match(r"(\w+)\s*(\([^)]*\))?:\s*(.*)", line.strip())
        if current == indent and match:
            name = match.group(1)
            docs[name] = match.group(3)
        elif name is not None:
            docs[name] += " " + line.strip()
    return docs


def _markdown_text(text: str) -> str:
    """reStructuredText roles and double backticks as Markdown code spans."""
    text = re.sub(r":(?:func|class|mod|attr|meth|data):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


# How each field's Python type is written in a TOML file (a list key also takes one value).
_TOML_TYPES = {
    "int": "integer",
    "float": "number",
    "bool": "true or false",
    "str": "string",
    "tuple[float, ...]": "number or list of numbers",
    "tuple[int, ...]": "integer or list of integers",
    "int | str": '"auto" or integer',
}


def _toml_type(section: str, key: str, python_type: str) -> str:
    if (section, key) == ("train", "seeds"):  # a count, or the seeds themselves
        return "integer (a count: seeds 0 … n−1) or list of integers"
    return _TOML_TYPES.get(python_type, python_type)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def defaults_toml() -> str:
    """Every section and key with its default, as a TOML file that loads back into ``SweepConfig()``."""
    from thermosgd.config import SweepConfig

    out = []
    for section, values in SweepConfig().to_dict().items():
        out.append(f"[{section}]")
        out.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _constraint(section: str, key: str) -> str:
    from thermosgd import config

    choices = config._CHOICES.get((section, key))
    if choices:
        return "one of " + ", ".join(f'`"{c}"`' for c in choices)
    if (section, key) in config._POSITIVE:
        return "> 0"
    if (section, key) in config._NONNEGATIVE:
        return "≥ 0"
    return ""


def section_markdown(section: str, cls: type) -> str:
    """One ``## [section]`` of the reference: the class summary and every key.

    Raises:
        ValueError: a field without an entry in the class's ``Attributes:``
            docstring (the build, and the docs test, fail on an undocumented key).
    """
    docs = attribute_docs(cls)
    summary = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    parts = [f"## [{section}]", "", _markdown_text(summary), ""]
    defaults = cls()  # every key of the schema has a default
    for fld in dataclasses.fields(cls):
        if fld.name not in docs:
            raise ValueError(f"[{section}] {fld.name} has no entry in {cls.__name__}'s Attributes docstring")
        facts = [_toml_type(section, fld.name, str(fld.type)), f"default `{_toml_value(getattr(defaults, fld.name))}`"]
        constraint = _constraint(section, fld.name)
        if constraint:
            facts.append(constraint)
        parts += [f"### `{section}.{fld.name}`", "", " · ".join(facts), "", _markdown_text(docs[fld.name]), ""]
    return "\n".join(parts)


def reference_markdown() -> str:
    """The whole generated reference: a TOML file of the defaults, then each section's keys."""
    from thermosgd import config

    parts = [
        "## Every key with its default",
        "",
        "```toml",
        defaults_toml().rstrip(),
        "```",
        "",
    ]
    parts += [section_markdown(section, cls) for section, cls in config._SECTIONS.items()]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: replace the marker on the page that holds it."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference_markdown())
