"""What a results dataset says about its own run, parsed once from ``ds.attrs["config"]``.

The figures, the summaries and the report receive a :class:`RunConfig` instead of each
re-reading the JSON; a field added here is available to all of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import xarray as xr

__all__ = ["RunConfig", "run_config", "config_of", "DATASET_NAME"]

#: How a data set is named in titles and tables.
DATASET_NAME = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "digits": "digits", "gaussian": "Gaussian"}


@dataclass(frozen=True)
class RunConfig:
    """The parts of a run's configuration that analysis, figures and report read.

    Attributes:
        kind: ``"deep"`` or ``"twolayer"`` (``""`` when the results do not say).
        preset: the preset that ran it (``""`` for a custom sweep).
        description: the preset's description (``""`` if none).
        over: the swept parameter of the preset's claim, if recorded.
        figures: the metrics a deep preset draws.
        dataset: the data the run trained on (deep), e.g. ``"digits"``.
        dataset_paper: the data the paper used for this preset.
        substitute: the run used substitute data instead of the paper's.
        inputs: the two-layer model's input dimension M (None for deep runs).
        input_distribution: ``"gaussian"`` or ``"uniform"`` (two-layer), else None.
        raw: the whole configuration, as stored.
    """

    kind: str = ""
    preset: str = ""
    description: str = ""
    over: str | None = None
    figures: tuple[str, ...] = ()
    dataset: str = ""
    dataset_paper: str = ""
    substitute: bool = False
    inputs: int | None = None
    input_distribution: str | None = None
    raw: Mapping | None = None

    @property
    def substitute_label(self) -> str:
        """``"substitute: digits"`` for a run on substitute data, else ``""``."""
        return f"substitute: {self.dataset}" if self.substitute else ""

    def input_second_moment(self) -> float | None:
        """E‖x‖² of a two-layer run's inputs (Gaussian N(0, I): M; U(0,1): M/3), or None."""
        if self.inputs is None:
            return None
        return {"gaussian": float(self.inputs), "uniform": self.inputs / 3.0}.get(self.input_distribution or "")

    def on_data(self, text: str) -> str:
        """``text`` with the paper's data set named as replaced, e.g. "… on digits (substitute for CIFAR-10)"."""
        if not self.substitute:
            return text
        paper = DATASET_NAME.get(self.dataset_paper, self.dataset_paper)
        used = f"{DATASET_NAME.get(self.dataset, self.dataset)} (substitute for {paper})"
        return text.replace(paper, used) if paper and paper in text else f"{text} [{self.substitute_label}]"


def config_of(raw) -> RunConfig:
    """A :class:`RunConfig` from a configuration dict (``config.json``); tolerant of missing or odd fields."""
    if not isinstance(raw, Mapping):
        return RunConfig()
    model, data = raw.get("model"), raw.get("data")
    model = model if isinstance(model, Mapping) else {}
    data = data if isinstance(data, Mapping) else {}
    figures = raw.get("figures")
    inputs = model.get("inputs")
    dataset, paper = str(raw.get("dataset") or ""), str(raw.get("dataset_paper") or "")
    return RunConfig(
        kind=str(raw.get("kind") or ("twolayer" if model else "")),
        preset=str(raw.get("preset") or ""),
        description=str(raw.get("description") or ""),
        over=raw.get("over") if raw.get("over") in ("lr", "batch_size") else None,
        figures=tuple(str(f) for f in figures) if isinstance(figures, list) else (),
        dataset=dataset,
        dataset_paper=paper,
        substitute=bool(raw.get("substitute")) or bool(paper and dataset and paper != dataset),
        inputs=inputs if isinstance(inputs, int) and not isinstance(inputs, bool) else None,
        input_distribution=data.get("inputs") if isinstance(data.get("inputs"), str) else None,
        raw=raw,
    )


def run_config(ds: xr.Dataset) -> RunConfig:
    """The :class:`RunConfig` of a results dataset (empty when ``attrs["config"]`` is absent or not JSON)."""
    try:
        return config_of(json.loads(ds.attrs.get("config", "{}")))
    except (TypeError, ValueError, RecursionError):
        return RunConfig()
