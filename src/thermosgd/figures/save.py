"""The one way figures are written: PNG and PDF side by side, at one resolution."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from thermosgd.sweep.store import atomic_file

DPI = 140


def save_figure(fig: Figure, stem: str | os.PathLike) -> list[Path]:
    """Write ``fig`` as ``STEM.png`` and ``STEM.pdf`` (parents created); returns both paths.

    Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot),
    so nothing here touches pyplot's global state or the user's backend.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    for path in paths:
        # Through an exclusively created temporary, renamed into place: a link planted under the
        # figure's name is replaced, never written through (sweep.store.atomic_file).
        with atomic_file(path) as fh:
            fig.savefig(fh, format=path.suffix[1:], dpi=DPI, bbox_inches="tight")
    return paths
