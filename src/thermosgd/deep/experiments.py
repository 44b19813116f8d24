"""The paper's deep-network experiments as data: Fig. 2 (middle, bottom), Figs. 11-14.

Labels:
    * Gaussian inputs (``fig2-middle``): random binary labels, balanced exactly
      (half 0, half 1, shuffled), a scalar-output net and the logistic (BCE) loss, as in
      the paper's theory (Sec. 4-5).
    * Image data (Fashion-MNIST, CIFAR-10, digits substitute): all 10 classes, with
      10 output logits and the multi-class softmax cross-entropy of A.5 (Eq. 37-40).
      No binary relabeling. For the two-layer net ``f(x) = V relu(Wx + b)`` of
      Figs. 11-14, ``V`` is ``(10, 300)`` and ``v_norm`` is its Frobenius norm.

Images are scaled to ``[0, 1]`` (pixel / 255; digits / 16) and not centered.
Instruments run on a fixed probe set: the first ``probe_size`` training samples.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from thermosgd.data import ImageData, load_dataset
from thermosgd.deep.models import cnn, mlp, two_layer
from thermosgd.deep.train import Run, TrainSet, stream_seed, train_sweep
from thermosgd.errors import UsageError
from thermosgd.deep.ensemble import (
    LastWeightNorm,
    ProbeActivationRates,
    ProbeGradientVariance,
    ProbeLoss,
    ProbeTraceBound,
)
from thermosgd.instruments import log_spaced
from thermosgd.sweep.store import save_dataset, write_config

PAPER = "Wei & Schwab, Implicit Regularization of SGD via Thermophoresis"


@dataclass(frozen=True)
class DeepPreset:
    """One deep experiment of the paper, with modest default sizes.

    Attributes:
        name: preset name, e.g. ``"fig11"``.
        description: what it reproduces.
        model: ``"mlp"`` (6 Linear layers, width 100), ``"cnn"`` (5 conv 10ch 5x5 + Linear)
            or ``"two-layer"`` (``V relu(Wx + b)``, 300 hidden).
        dataset: ``"gaussian"``, ``"fashion-mnist"`` or ``"cifar10"``.
        over: swept hyperparameter, ``"lr"`` or ``"batch_size"``.
        lrs: learning rates.
        batch_sizes: minibatch sizes.
        seeds: number of seeds (0, 1, ...).
        steps: SGD updates per run.
        figures: metrics drawn, one figure each.
        n_train: training-set size (``None``: the whole split).
        probe_size: samples the instruments are evaluated on.
        points: about this many log-spaced recording steps.
        width: hidden width (mlp) or hidden units (two-layer).
        gaussian_dim: input dimension for Gaussian data.
    """

    name: str
    description: str
    model: str
    dataset: str
    over: str
    lrs: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    seeds: int
    steps: int
    figures: tuple[str, ...]
    n_train: int | None = None
    probe_size: int = 128
    points: int = 30
    width: int = 100
    gaussian_dim: int = 100

    def tiny(self) -> DeepPreset:
        """A few-second version for tests: 2 sweep values, 1 seed, a handful of steps."""
        return dataclasses.replace(
            self, lrs=self.lrs[:2], seeds=1, steps=6, n_train=48, probe_size=8, points=4,
            batch_sizes=(4, 8) if self.over == "batch_size" else (4,),
        )


_FIG2 = "Fig. 2 {row}: gradient variance vs (rescaled) iterations for an eta sweep"
DEEP_PRESETS: dict[str, DeepPreset] = {
    p.name: p
    for p in [
        DeepPreset("fig2-middle", _FIG2.format(row="middle") + "; 6-layer fully connected net (width 100) "
                   "on Gaussian inputs with random binary labels, |B| = 1",
                   model="mlp", dataset="gaussian", over="lr", lrs=(0.025, 0.05, 0.1), batch_sizes=(1,),
                   seeds=2, steps=3000, figures=("grad_var",), n_train=1000, probe_size=128),
        DeepPreset("fig2-bottom", _FIG2.format(row="bottom") + "; 6-layer CNN (5 conv layers, 10 channels, "
                   "5x5 kernels, stride 1, then fully connected) on Fashion-MNIST, |B| = 32",
                   model="cnn", dataset="fashion-mnist", over="lr", lrs=(0.025, 0.05, 0.1), batch_sizes=(32,),
                   seeds=2, steps=600, figures=("grad_var",), n_train=None, probe_size=128, points=20),
        DeepPreset("fig11", "Fig. 11: activation rate vs (rescaled) iterations, eta sweep; two-layer net with "
                   "300 hidden units on CIFAR-10, |B| = 1000",
                   model="two-layer", dataset="cifar10", over="lr", lrs=(0.01, 0.02, 0.04), batch_sizes=(1000,),
                   seeds=2, steps=150, figures=("activation_rate",), probe_size=1000, points=20, width=300),
        DeepPreset("fig12", "Fig. 12: ||V|| vs (rescaled) iterations, eta sweep; two-layer net with "
                   "300 hidden units on CIFAR-10, |B| = 1000",
                   model="two-layer", dataset="cifar10", over="lr", lrs=(0.01, 0.02, 0.04), batch_sizes=(1000,),
                   seeds=2, steps=150, figures=("v_norm",), probe_size=1000, points=20, width=300),
        DeepPreset("fig13", "Fig. 13: activation rate vs (rescaled) iterations, |B| sweep at eta = 0.02; "
                   "two-layer net with 300 hidden units on CIFAR-10",
                   model="two-layer", dataset="cifar10", over="batch_size", lrs=(0.02,),
                   batch_sizes=(250, 500, 1000), seeds=2, steps=150, figures=("activation_rate",),
                   probe_size=1000, points=20, width=300),
        DeepPreset("fig14", "Fig. 14: ||V|| vs (rescaled) iterations, |B| sweep at eta = 0.02; "
                   "two-layer net with 300 hidden units on CIFAR-10",
                   model="two-layer", dataset="cifar10", over="batch_size", lrs=(0.02,),
                   batch_sizes=(250, 500, 1000), seeds=2, steps=150, figures=("v_norm",),
                   probe_size=1000, points=20, width=300),
    ]
}


def _gaussian_set(preset: DeepPreset, seed: int) -> TrainSet:
    gen = torch.Generator().manual_seed(stream_seed(seed, 2))
    n = preset.n_train or 1000
    x = torch.randn(n, preset.gaussian_dim, generator=gen)
    labels = (torch.arange(n) < n // 2).to(torch.float32)  # exactly balanced
    y = labels[torch.randperm(n, generator=gen)].unsqueeze(1)
    return TrainSet(x, y)


def _image_set(preset: DeepPreset, images: ImageData) -> TrainSet:
    n = len(images.labels) if preset.n_train is None else min(preset.n_train, len(images.labels))
    return TrainSet(torch.from_numpy(images.images[:n]), torch.from_numpy(images.labels[:n]), images.scale)


def _model(preset: DeepPreset, shape: tuple[int, ...], out_dim: int, seed: int) -> nn.Module:
    dim = 1
    for s in shape:
        dim *= s
    if preset.model == "mlp":
        return mlp(dim, preset.width, 6, out_dim, seed=seed)
    if preset.model == "two-layer":
        return two_layer(dim, preset.width, out_dim, seed=seed)
    channels, size = shape[0], shape[-1]
    return cnn(channels, size, out_dim, seed=seed, padding=0 if size >= 25 else 2)


def _instruments(preset: DeepPreset, model: nn.Module, data: TrainSet, loss_fn) -> dict:
    """The preset's instruments on its probe set (called on one module, each is the
    ``thermosgd.instruments`` function it names; an ensemble measures all replicas at once)."""
    probe = torch.arange(min(preset.probe_size, len(data)))
    xp, yp = data.batch(probe)
    tools = {"loss": ProbeLoss(loss_fn, xp, yp), "activation_rate": ProbeActivationRates(xp)}
    if "grad_var" in preset.figures or preset.model != "two-layer":
        tools["grad_var"] = ProbeGradientVariance(loss_fn, xp, yp)
    if preset.model == "two-layer":
        tools["v_norm"] = LastWeightNorm()
    if preset.model in ("mlp", "two-layer"):
        tools["trace_bound"] = ProbeTraceBound(loss_fn, xp)
    return tools


def run_deep_preset(
    name: str,
    *,
    out: Path,
    seeds: int | None = None,
    steps: int | None = None,
    data_dir: Path | None = None,
    progress: bool = True,
    tiny: bool = False,
    dataset: str | None = None,
    ensemble: bool = True,
) -> Path:
    """Train a deep preset, save ``results.nc`` + ``config.json`` in ``out``, draw ``out/figures/``.

    Args:
        name: a key of :data:`DEEP_PRESETS`.
        out: results folder (created).
        seeds: number of seeds (default: the preset's).
        steps: SGD updates per run (default: the preset's).
        data_dir: folder with the data files (default: ``$THERMOSGD_DATA``).
        progress: show a progress bar.
        tiny: a few-second version (for tests and smoke runs).
        dataset: replace the image data set, e.g. ``"digits"`` for scikit-learn's 8x8
            digits as a labeled substitute when the paper's files are not available.
        ensemble: train all seeds × lrs of a batch size as one ensemble (default);
            False: one run after another (the reference; same curves to tolerance).

    Returns:
        ``out``.
    """
    if name not in DEEP_PRESETS:
        raise UsageError(f"unknown deep preset {name!r}; choose one of {', '.join(DEEP_PRESETS)}")
    preset = DEEP_PRESETS[name].tiny() if tiny else DEEP_PRESETS[name]
    if seeds is not None or steps is not None:
        if (seeds is not None and seeds < 1) or (steps is not None and steps < 1):
            raise UsageError(f"seeds and steps must be >= 1, got seeds={seeds}, steps={steps}")
        preset = dataclasses.replace(preset, seeds=seeds or preset.seeds, steps=steps or preset.steps)
    source = dataset or preset.dataset
    if preset.dataset == "gaussian" and source != "gaussian":
        raise UsageError(f"preset {name} uses synthetic Gaussian data; it takes no data-set substitute")
    if preset.dataset == "gaussian":
        images, out_dim, loss_fn = None, 1, nn.BCEWithLogitsLoss()
        shape: tuple[int, ...] = (preset.gaussian_dim,)
        labels = "random binary labels {0, 1}, exactly balanced; scalar output, BCE-with-logits loss"
    else:
        images = load_dataset(source, data_dir, split="train")
        out_dim, loss_fn, shape = len(images.classes), nn.CrossEntropyLoss(), tuple(images.images.shape[1:])
        labels = f"all {len(images.classes)} classes, {out_dim} logits, softmax cross-entropy (A.5, Eq. 37-40)"
    substitute = bool(images is not None and images.substitute)

    def setup(seed: int) -> Run:
        data = _gaussian_set(preset, seed) if images is None else _image_set(preset, images)
        model = _model(preset, shape, out_dim, seed)
        return Run(model, data, _instruments(preset, model, data, loss_fn))

    config = {
        "kind": "deep",
        "preset": preset.name,
        "paper": PAPER,
        "description": preset.description,
        **{k: v for k, v in dataclasses.asdict(preset).items() if k not in ("name", "description")},
        "dataset": source,
        "dataset_paper": preset.dataset,
        "substitute": substitute,
        "labels": labels,
        "input_shape": list(shape),
        "tiny": tiny,
        "optimizer": "plain SGD, minibatches drawn uniformly with replacement",
    }
    if substitute:
        config["note"] = f"SUBSTITUTE DATA: {source} instead of the paper's {preset.dataset}"
    schedule = log_spaced(preset.steps, preset.points)
    ds = train_sweep(setup, loss_fn, lrs=preset.lrs, batch_sizes=preset.batch_sizes, seeds=range(preset.seeds),
                     steps=preset.steps, schedule=schedule, config=config, progress=progress, desc=name,
                     ensemble=ensemble)
    if "grad_var" in ds:
        # Not the two-layer sweeps' minibatch variance (which divides by |B|, Eq. 18).
        ds.attrs["grad_var_definition"] = (
            "mean over parameter entries of the unbiased per-sample gradient variance over the "
            f"probe set ({preset.probe_size} samples), not divided by |B|"
        )
    out = Path(out)
    save_dataset(ds, out / "results.nc")
    write_config(config, out)
    draw_preset_figures(ds, out / "figures")
    return out


def draw_preset_figures(ds, folder: Path) -> list[Path]:
    """The preset's figures from its results (``ds.attrs["config"]`` says which), into ``folder``."""
    from thermosgd.figures import sweep_figure

    config = json.loads(ds.attrs["config"])
    name = config["preset"]
    tag = "_digits-substitute" if config.get("substitute") else ""
    title = f"{name}: {config['description']}"
    if config.get("substitute"):
        title = f"[SUBSTITUTE DATA: {config['dataset']}, not {config['dataset_paper']}] {title}"
    files: list[Path] = []
    for metric in config["figures"]:
        stem = folder / (f"{name}{tag}" if len(config["figures"]) == 1 else f"{name}_{metric}{tag}")
        files += sweep_figure(ds, metric, over=config["over"], out_stem=stem, title=_wrap(title))
    return files


def _wrap(text: str, width: int = 110) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))
