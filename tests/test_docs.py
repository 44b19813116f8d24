"""The documentation stays true: its code blocks run, its references match the code.

Every fenced code block in README.md, CONTRIBUTING.md and docs/ carries a marker on the
line before it (CONTRIBUTING.md, "Docs"): ``<!-- run -->`` blocks are run here, in page
order, in one temporary folder per page (bash with ``thermosgd`` on the PATH, python in one
namespace per page, toml validated as a sweep configuration; ``<!-- run: file=NAME -->``
also writes the block to NAME); ``<!-- excerpt -->`` blocks are only shown. ``text`` blocks
(output, diagrams, formulas) need no marker.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import thermosgd
from thermosgd import config

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *DOCS.rglob("*.md")])
MARKER = re.compile(r"<!--\s*(run|excerpt)(?::\s*file=([\w.-]+))?\s*-->")
FENCE = re.compile(r"^(```+)\s*([\w-]*)\s*$")
# The README's two set-up commands, byte for byte (issue 23: they never change).
SETUP = (
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e . && .venv/bin/thermosgd reproduce",
    "python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e '.[test]' && .venv/bin/python -m pytest",
)


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    marker: str | None  # "run", "excerpt" or None
    file: str | None  # NAME of <!-- run: file=NAME -->
    code: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, each with the marker on the line before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise AssertionError(f"{page.relative_to(ROOT)}:{i + 1}: unclosed code fence")
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.fullmatch(before.strip())
        out.append(
            Block(
                page=page,
                line=i + 1,
                lang=lang,
                marker=marker.group(1) if marker else None,
                file=marker.group(2) if marker else None,
                code="\n".join(lines[i + 1 : end]) + "\n",
            )
        )
        i = end + 1
    return out


def test_pages_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "CONTRIBUTING.md", "docs/index.md", "docs/methods/collapse.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_block_is_run_or_marked_as_excerpt(page):
    for block in blocks(page):
        assert block.lang, f"{block.where()}: a code block must name its language (text for output)"
        if block.lang != "text":
            assert block.marker, (
                f"{block.where()}: a {block.lang} block needs <!-- run --> or <!-- excerpt --> before it"
            )
        if block.marker == "run":
            assert block.lang in ("bash", "python", "toml"), f"{block.where()}: cannot run a {block.lang} block"


def _run_bash(block: Block, cwd: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"{block.where()} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    )
    assert proc.stdout.strip(), f"{block.where()} printed nothing"


def _run_block(block: Block, cwd: Path, namespace: dict) -> None:
    if block.file:
        (cwd / block.file).write_text(block.code, encoding="utf-8")
    if block.lang == "bash":
        _run_bash(block, cwd)
    elif block.lang == "python":
        exec(compile(block.code, block.where(), "exec"), namespace)
    elif block.lang == "toml":
        path = cwd / (block.file or "config.toml")
        path.write_text(block.code, encoding="utf-8")
        config.load_toml(path)  # a UsageError names the bad key


RUN_PAGES = [p for p in PAGES if any(b.marker == "run" for b in blocks(p))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_run_blocks_run(page, tmp_path, monkeypatch, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    try:
        for block in blocks(page):
            if block.marker == "run":
                _run_block(block, tmp_path, namespace)
    finally:
        plt.close("all")
    if any(b.marker == "run" and b.lang == "python" for b in blocks(page)):
        assert capsys.readouterr().out.strip(), "a page's python blocks should print what they show"


def test_there_is_something_to_run():
    langs = {b.lang for p in RUN_PAGES for b in blocks(p) if b.marker == "run"}
    assert {"bash", "python", "toml"} <= langs


def test_readme_setup_commands_unchanged_and_run_by_ci():
    readme = [b.code.strip() for b in blocks(ROOT / "README.md") if b.lang == "bash"]
    assert list(SETUP) == readme[:2], "the README's first two blocks are the two set-up commands, unchanged"
    assert SETUP[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8"), ".ci/run runs the README's test command"


def test_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def _hook(name: str = "config_reference") -> types.ModuleType:
    """docs/hooks/NAME.py, a MkDocs hook (not a package module)."""
    spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_documents_every_key():
    hook = _hook()
    text = hook.reference_markdown()  # raises naming any key without an Attributes entry
    for section, cls in config._SECTIONS.items():
        docs = hook.attribute_docs(cls)
        for fld in dataclasses.fields(cls):
            assert docs.get(fld.name, "").strip(), f"[{section}] {fld.name} is undocumented"
            assert f"### `{section}.{fld.name}`" in text
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert hook.MARKER in page
    assert hook.on_page_markdown(page, None, None, None).count("### `") == sum(
        len(dataclasses.fields(c)) for c in config._SECTIONS.values()
    )


def test_generated_defaults_load_back_into_the_schema(tmp_path):
    path = tmp_path / "defaults.toml"
    path.write_text(_hook().defaults_toml(), encoding="utf-8")
    assert config.load_toml(path) == config.SweepConfig()


def test_attribute_docs_parses_continuations_and_stops_at_the_next_section():
    class Example:
        """Summary.

        Attributes:
            alpha: first line
                continued.
            beta (int): second.

        Note:
            not an attribute: ignored.
        """

    assert _hook().attribute_docs(Example) == {"alpha": "first line continued.", "beta": "second."}


def test_cli_reference_has_every_command():
    from thermosgd.cli import build_parser

    hook = _hook("cli_reference")
    names = list(hook.subcommands(build_parser()))
    assert {"reproduce", "sweep", "walk", "collapse", "report", "status"} <= set(names)
    page = hook.on_page_markdown((DOCS / "cli.md").read_text(encoding="utf-8"), None, None, None)
    assert hook.MARKER not in page
    for name in names:
        assert f"## `thermosgd {name}`" in page
        assert f"usage: thermosgd {name}" in page


def test_sphinx_roles_become_code_spans():
    pytest.importorskip("griffe")  # the docs extra
    roles = _hook("griffe_roles").markdown_roles
    assert roles("see :func:`fit_collapse` and :class:`~thermosgd.walk.simulate.Reflect`") == (
        "see `fit_collapse` and `Reflect`"
    )
    assert roles("``x`` and :mod:`thermosgd.walk`") == "`x` and `thermosgd.walk`"


def _documented() -> set[str]:
    """Every ``::: target`` of the API pages."""
    found = set()
    for page in (DOCS / "api").glob("*.md"):
        found.update(re.findall(r"^:::\s*([\w.]+)", page.read_text(encoding="utf-8"), flags=re.M))
    return found


def _target(package: types.ModuleType, name: str) -> str | None:
    """The dotted path an API page documents ``package.name`` under (None: any path ending in name)."""
    obj = getattr(package, name)
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    return None


PACKAGES = ["thermosgd"] + [
    f"thermosgd.{p}" for p in ("instruments", "walk", "twolayer", "sweep", "analysis", "deep", "reproduce")
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_has_an_api_entry(name):
    import importlib

    package = importlib.import_module(name)
    documented = _documented()
    missing = []
    for public in package.__all__:
        if public == "__version__":
            continue
        target = _target(package, public)
        if target is None:
            ok = any(d.rsplit(".", 1)[-1] == public for d in documented)
        else:
            ok = target in documented
        if not ok:
            missing.append(f"{name}.{public} (as ::: {target or '...' + public})")
    assert not missing, "no API entry in docs/api/ for: " + ", ".join(missing)


def test_versions_agree():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    citation = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert thermosgd.__version__ == project["version"]
    assert re.search(rf"^version: {re.escape(project['version'])}$", citation, flags=re.M)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[.*\b{re.escape(project['version'])}\b", changelog, flags=re.M), "no CHANGELOG section"
