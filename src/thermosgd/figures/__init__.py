"""Figures: plotting only. Every function reads results (xarray or JSON-ready dicts) and draws.

Figures are :class:`matplotlib.figure.Figure` objects built without pyplot;
:func:`save_figure` writes PNG and PDF at one resolution.
"""

from thermosgd.figures.collapse import collapse_figure, collapse_panel
from thermosgd.figures.save import save_figure
from thermosgd.figures.sweep import rescaled_steps, seed_summary, sweep_figure

__all__ = ["collapse_figure", "collapse_panel", "rescaled_steps", "save_figure", "seed_summary", "sweep_figure"]
