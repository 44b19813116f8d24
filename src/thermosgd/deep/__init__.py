"""Deep-network runs of the paper (Fig. 2 middle/bottom, Figs. 11-14): models and training.

The presets live in :mod:`thermosgd.presets`; :func:`thermosgd.reproduce` writes their
results and figures.
"""

from thermosgd.deep.runs import DeepSpec, train_deep
from thermosgd.deep.train import Run, TrainSet, train_run, train_sweep

__all__ = ["DeepSpec", "Run", "TrainSet", "train_deep", "train_run", "train_sweep"]
