"""Figures as the page shows them: legible panels, legends of drawn curves only, one title, one vocabulary."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import xarray as xr

from thermosgd.figures.sweep import figure_title, sweep_figure
from thermosgd.report.provenance import embedded_figures


def _sweep(all_diverged_at=None):
    rng = np.random.default_rng(0)
    lrs, t = np.array([0.025, 0.05, 0.1]), np.arange(0, 201, 10)
    m = (
        0.5
        - 0.1 * (1 - np.exp(-t * (lrs[:, None, None, None] / 0.05) ** 2 / 80))
        + 0.01 * rng.standard_normal((3, 1, 4, t.size))
    )
    div = np.zeros((3, 1, 4), bool)
    if all_diverged_at is not None:
        div[list(lrs).index(all_diverged_at)] = True
    return xr.Dataset(
        {"activation_rate": (("lr", "batch_size", "seed", "step"), m), "diverged": (("lr", "batch_size", "seed"), div)},
        coords={"lr": lrs, "batch_size": [1], "seed": np.arange(4), "step": t},
    )


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("fig2-middle: Fig. 2 middle: gradient variance, eta sweep", "fig2-middle: gradient variance, η sweep"),
        ("fig11 (substitute: digits): Fig. 11: ||V|| vs iterations", "fig11 (substitute: digits): ‖V‖ vs iterations"),
        ("fig3: activation rate, |B|=1, η sweep", "fig3: activation rate, |B|=1, η sweep"),
        ("beta and theta stay", "beta and theta stay"),
    ],
)
def test_titles_say_it_once_in_the_page_symbols(title, expected):
    assert figure_title(title) == expected


def test_legend_lists_only_drawn_curves_and_the_png_fits_the_page(tmp_path):
    from matplotlib.image import imread

    png, _ = sweep_figure(_sweep(all_diverged_at=0.1), "activation_rate", over="lr", out_stem=tmp_path / "f", title="t")
    height, width = imread(png).shape[:2]
    # Two panels a row: at most ~1.6× the 1000 px the page shows, so 10 pt text stays readable there.
    assert width <= 1600 and height < 1.2 * width


def test_legend_names_are_the_drawn_curves(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    seen = []
    real = Figure.savefig

    def savefig(self, *a, **k):
        seen.append([t.get_text() for ax in self.axes if ax.get_legend() for t in ax.get_legend().get_texts()])
        return real(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", savefig)
    sweep_figure(_sweep(all_diverged_at=0.1), "activation_rate", over="lr", out_stem=tmp_path / "f")
    assert seen[0] == ["η = 0.025", "η = 0.05"]  # η = 0.1 diverged everywhere: no curve, no entry


def test_a_section_shows_its_own_figure_first(tmp_path):
    from matplotlib.figure import Figure

    (tmp_path / "figures").mkdir()
    for name in ("fig10", "fig9", "collapse_fig9"):
        fig = Figure(figsize=(1, 1))
        fig.savefig(tmp_path / "figures" / f"{name}.png")
    assert [f.caption for f in embedded_figures(tmp_path, ("fig9", "fig10"))] == ["fig9", "fig10", "collapse fig9"]
    assert base64.b64decode(embedded_figures(tmp_path)[0].src.split(",", 1)[1])[:4] == b"\x89PNG"
