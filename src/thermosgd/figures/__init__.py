"""Figures: plotting only. Every function reads results (xarray) and draws."""

from thermosgd.figures.sweep import rescaled_steps, seed_summary, sweep_figure

__all__ = ["rescaled_steps", "seed_summary", "sweep_figure"]
