"""The page as HTML: valid, self-contained, one summary row per section, numbers as the CLI writes them."""

from __future__ import annotations

import json
import re

import html5lib
import pytest

from thermosgd.cli import main
from thermosgd.report import collect, render, write_report
from thermosgd.report.records import Collapse, Report, Section


def _dom(page: str):
    # strict=True: any parse error (misnested or unclosed tags, bad attributes, ...) raises.
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page)


def _cls(node, name):
    return name in (node.get("class") or "").split()


def test_page_is_valid_html(fake_page):
    _dom(fake_page.read_text(encoding="utf-8"))


def test_summary_has_one_row_per_section_and_links_resolve(fake_page):
    dom = _dom(fake_page.read_text(encoding="utf-8"))
    sections = [s for s in dom.iter("section") if _cls(s, "experiment")]
    (summary,) = [t for t in dom.iter("table") if _cls(t, "summary")]
    rows = summary.find("tbody").findall("tr")
    assert len(rows) == len(sections) == len(collect(fake_page.parent).sections)
    assert [r.get("data-section") for r in rows] == [s.get("id") for s in sections]
    ids = [e.get("id") for e in dom.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    for a in dom.iter("a"):
        assert a.get("href", "").startswith("#") and a.get("href")[1:] in ids


def test_page_is_self_contained(fake_page):
    dom = _dom(fake_page.read_text(encoding="utf-8"))
    assert not list(dom.iter("link"))
    assert all(s.get("src") is None for s in dom.iter("script"))
    imgs = list(dom.iter("img"))
    assert imgs and all(i.get("src").startswith("data:image/png;base64,") for i in imgs)
    text = fake_page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)


def test_collapse_data_survives_any_text():
    evil = "</script><script>alert(1)</script><!-- & é"
    sec = Section(
        id="sec-x",
        experiment="x",
        name="x",
        title="t",
        claim="c",
        source="s",
        measured=True,
        collapses=[
            Collapse(
                id="collapse-x",
                title=evil,
                data={
                    "over": "lr",
                    "symbol": "η",
                    "exponent_symbol": "α",
                    "metric": "m",
                    "metric_label": evil,
                    "reference": 0.05,
                    "sign": 1.0,
                    "bounds": [-2.0, 5.0],
                    "paper": 2.0,
                    "fitted": None,
                    "ci": [None, None],
                    "span": [0.0, 1.0],
                    "curves": [],
                },
            )
        ],
    )
    page = render(Report(runs_dir="r", generated="now", sections=[sec], environment=[]))
    assert "<script>alert(1)" not in page
    dom = _dom(page)
    (data,) = [s for s in dom.iter("script") if _cls(s, "collapse-data")]
    assert json.loads(data.text)["metric_label"] == evil


@pytest.mark.parametrize("ci, shown", [([1.7, 2.2], "α = 1.95 [1.70, 2.20]"), ([None, None], "α = 1.95 (no CI)")])
def test_the_fitted_button_states_the_interval_or_none(ci, shown):
    sec = Section(
        id="sec-x",
        experiment="x",
        name="x",
        title="t",
        claim="c",
        source="s",
        measured=True,
        collapses=[
            Collapse(
                id="collapse-x",
                title="t",
                data={
                    "over": "lr",
                    "symbol": "η",
                    "exponent_symbol": "α",
                    "metric": "m",
                    "metric_label": "m",
                    "reference": 0.05,
                    "sign": 1.0,
                    "bounds": [-2.0, 5.0],
                    "paper": 2.0,
                    "fitted": 1.95,
                    "ci": ci,
                    "span": [0.0, 1.0],
                    "curves": [],
                },
            )
        ],
    )
    dom = _dom(render(Report(runs_dir="r", generated="now", sections=[sec], environment=[])))
    (button,) = [b for b in dom.iter("button") if _cls(b, "to-fitted")]
    text = " ".join("".join(button.itertext()).split())
    assert text.endswith("fitted: " + shown) and "n/a" not in text


def test_numbers_are_the_cli_verdict_numbers(fake_runs):
    from thermosgd.analysis.verdict import Verdict

    fit = json.loads((fake_runs / "fig3" / "summary.json").read_text())["collapse"]["activation_rate"]
    line = Verdict(
        preset="fig3",
        metric="activation_rate",
        over="lr",
        status="agrees",
        paper=2.0,
        exponent=fit["exponent"],
        ci_low=fit["ci_low"],
        ci_high=fit["ci_high"],
        fit=fit,
    ).line()
    assert "fitted α = 1.95, 95% CI [1.70, 2.20]; paper α = 2" in line
    page = write_report(fake_runs).read_text(encoding="utf-8")
    assert "α = 1.95 [1.70, 2.20]" in page


def test_report_command(fake_runs, tmp_path, capsys):
    assert main(["report", str(fake_runs)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(fake_runs / "index.html") and "verdict" in out[0]
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_reproduce_writes_the_page(tmp_path, monkeypatch):
    """End to end: a real (tiny) run, then the page that ``reproduce`` writes next to it."""
    from thermosgd.reproduce import reproduce

    monkeypatch.chdir(tmp_path)
    reproduce(["fig5"], seeds=2, steps=20, progress=False)
    page = tmp_path / "runs" / "index.html"
    dom = _dom(page.read_text(encoding="utf-8"))
    sec = dom.find(".//section[@id='sec-fig5']")
    assert sec is not None and len([f for f in sec.iter("figure") if _cls(f, "collapse")]) == 2
    assert json.loads((tmp_path / "runs" / "fig5" / ".thermosgd-wall.json").read_text())["seconds"] > 0
    report = collect(tmp_path / "runs")
    fig5 = next(s for s in report.sections if s.name == "fig5")
    assert fig5.measured and all(c.verdict != "not measured" for c in fig5.claims)
