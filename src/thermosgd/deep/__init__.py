"""Deep-network experiments of the paper (Fig. 2 middle/bottom, Figs. 11-14)."""

from thermosgd.deep.experiments import DEEP_PRESETS, DeepPreset, run_deep_preset
from thermosgd.deep.train import Run, TrainSet, train_run, train_sweep

__all__ = ["DEEP_PRESETS", "DeepPreset", "Run", "TrainSet", "run_deep_preset", "train_run", "train_sweep"]
