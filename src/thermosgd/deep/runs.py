"""Training runs of the paper's deep-network experiments: Fig. 2 (middle, bottom), Figs. 11-14.

The presets themselves (sizes, data, models) are entries of :mod:`thermosgd.presets`.

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
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from thermosgd.checks import torch_device
from thermosgd.data import ImageData, load_dataset
from thermosgd.deep.ensemble import (
    LastWeightNorm,
    ProbeActivationRates,
    ProbeGradientVariance,
    ProbeLoss,
    ProbeTraceBound,
)
from thermosgd.deep.models import cnn, mlp, two_layer
from thermosgd.deep.train import Run, TrainSet, stream_seed, train_sweep
from thermosgd.errors import UsageError
from thermosgd.instruments import log_spaced
from thermosgd.presets import Preset

PAPER = "Wei & Schwab, Implicit Regularization of SGD via Thermophoresis"


@dataclass(frozen=True)
class DeepSpec:
    """What one deep run trains: a preset's parameters at a chosen size.

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
        online: Gaussian data only: fresh samples every step instead of a finite set.
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
    online: bool = False

    @classmethod
    def from_preset(
        cls, preset: Preset, *, seeds: int | None = None, steps: int | None = None, quick: bool = False
    ) -> DeepSpec:
        """The spec of a deep preset of :mod:`thermosgd.presets` at the requested size."""
        if preset.kind != "deep":
            raise UsageError(f"preset {preset.name} is a {preset.kind} preset, not a deep one")
        seeds, steps = preset.size(seeds=seeds, steps=steps, quick=quick)
        p = preset.settings(quick=quick)
        return cls(
            name=preset.name,
            description=preset.description,
            model=p["model"],
            dataset=p["dataset"],
            over=preset.over,  # type: ignore[arg-type]  # every deep preset sweeps lr or batch_size
            lrs=tuple(p["lrs"]),
            batch_sizes=tuple(p["batch_sizes"]),
            seeds=seeds,
            steps=steps,
            figures=(preset.metric,),
            n_train=p["n_train"],
            probe_size=p["probe_size"],
            points=p["points"],
            width=p["width"],
            gaussian_dim=p["gaussian_dim"],
            online=bool(p.get("online", False)),
        )


class OnlineGaussian:
    """An endless stream of fresh Gaussian samples with random balanced labels, addressed by index.

    Sample ``i`` is ``x_i ~ N(0, I_dim)``, ``y_i ~ Bernoulli(½)``, drawn from a generator
    seeded by ``(seed, i)`` alone, so any sampler of :class:`TrainSet` works unchanged:
    with ``2**48`` addresses, minibatch indices drawn uniformly never repeat in practice
    (a repeat within 10⁶ draws has probability < 2·10⁻³), which makes SGD online —
    fresh samples every step. The probe set (indices ``0..n-1``) stays fixed.
    """

    SIZE = 2**48

    def __init__(self, dim: int, seed: int):
        self.dim, self.seed = dim, seed

    def __len__(self) -> int:
        return self.SIZE

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for i in index.tolist():
            g = torch.Generator().manual_seed(stream_seed(self.seed, 3 + int(i)))
            xs.append(torch.randn(self.dim, generator=g))
            ys.append(torch.randint(2, (1,), generator=g).to(torch.float32))
        return torch.stack(xs), torch.stack(ys)


def _gaussian_set(preset: DeepSpec, seed: int) -> TrainSet | OnlineGaussian:
    if preset.online:
        return OnlineGaussian(preset.gaussian_dim, seed)
    gen = torch.Generator().manual_seed(stream_seed(seed, 2))
    n = preset.n_train or 1000
    x = torch.randn(n, preset.gaussian_dim, generator=gen)
    labels = (torch.arange(n) < n // 2).to(torch.float32)  # exactly balanced
    y = labels[torch.randperm(n, generator=gen)].unsqueeze(1)
    return TrainSet(x, y)


def _image_set(preset: DeepSpec, images: ImageData) -> TrainSet:
    n = len(images.labels) if preset.n_train is None else min(preset.n_train, len(images.labels))
    return TrainSet(torch.from_numpy(images.images[:n]), torch.from_numpy(images.labels[:n]), images.scale)


def _model(preset: DeepSpec, shape: tuple[int, ...], out_dim: int, seed: int) -> nn.Module:
    dim = 1
    for s in shape:
        dim *= s
    if preset.model == "mlp":
        return mlp(dim, preset.width, 6, out_dim, seed=seed)
    if preset.model == "two-layer":
        return two_layer(dim, preset.width, out_dim, seed=seed)
    channels, size = shape[0], shape[-1]
    return cnn(channels, size, out_dim, seed=seed, padding=0 if size >= 25 else 2)


def _instruments(preset: DeepSpec, model: nn.Module, data: TrainSet | OnlineGaussian, loss_fn, device=None) -> dict:
    """The preset's instruments on its probe set (called on one module, each is the
    ``thermosgd.instruments`` function it names; an ensemble measures all replicas at once)."""
    probe = torch.arange(min(preset.probe_size, len(data)))
    xp, yp = (v.to(device or "cpu") for v in data.batch(probe))
    tools = {"loss": ProbeLoss(loss_fn, xp, yp), "activation_rate": ProbeActivationRates(xp)}
    if "grad_var" in preset.figures or preset.model != "two-layer":
        tools["grad_var"] = ProbeGradientVariance(loss_fn, xp, yp)
    if preset.model == "two-layer":
        tools["v_norm"] = LastWeightNorm()
    if preset.model in ("mlp", "two-layer"):
        tools["trace_bound"] = ProbeTraceBound(loss_fn, xp)
    return tools


def train_deep(
    spec: DeepSpec,
    *,
    data_dir: Path | None = None,
    dataset: str | None = None,
    progress: bool = True,
    tiny: bool = False,
    device: str = "cpu",
    ensemble: bool = True,
):
    """Train every (η, |B|, seed) run of a deep spec; returns the results as an ``xarray.Dataset``.

    Args:
        spec: what to train (:meth:`DeepSpec.from_preset`).
        data_dir: folder with the data files (default: ``$THERMOSGD_DATA``).
        dataset: replace the image data set, e.g. ``"digits"`` for scikit-learn's 8x8
            digits as a labeled substitute when the paper's files are not available.
        progress: show progress.
        tiny: recorded in the config (the spec was built at the quick size).
        device: "cpu", "cuda" or "cuda:N". Initial weights, data and minibatch
            indices are drawn on the CPU as always, then moved (docs/devices.md).
        ensemble: train all seeds × lrs of a batch size as one ensemble (default);
            False: one run after another (the reference; same curves to tolerance).

    Returns:
        Dataset with dims ``(lr, batch_size, seed, step)``; ``attrs["config"]`` is the
        JSON of the run's configuration (what :func:`thermosgd.load` and the figures read).
    """
    preset = spec
    dev = torch_device(device, "device")
    source = dataset or preset.dataset
    if preset.dataset == "gaussian" and source != "gaussian":
        raise UsageError(f"preset {preset.name} uses synthetic Gaussian data; it takes no data-set substitute")
    loss_fn: nn.Module
    if preset.dataset == "gaussian":
        images, out_dim, loss_fn = None, 1, nn.BCEWithLogitsLoss()
        shape: tuple[int, ...] = (preset.gaussian_dim,)
        labels = (
            "random binary labels {0, 1}, "
            + ("Bernoulli(1/2), fresh samples every step (online)" if preset.online else "exactly balanced")
            + "; scalar output, BCE-with-logits loss"
        )
    else:
        images = load_dataset(source, data_dir, split="train")
        out_dim, loss_fn, shape = len(images.classes), nn.CrossEntropyLoss(), tuple(images.images.shape[1:])
        labels = f"all {len(images.classes)} classes, {out_dim} logits, softmax cross-entropy (A.5, Eq. 37-40)"
    substitute = bool(images is not None and images.substitute)

    def setup(seed: int) -> Run:
        data = _gaussian_set(preset, seed) if images is None else _image_set(preset, images)
        model = _model(preset, shape, out_dim, seed)
        return Run(model.to(dev), data, _instruments(preset, model, data, loss_fn, dev))  # type: ignore[arg-type]

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
    if device != "cpu":  # absent on the CPU, so CPU configs read as before
        config["device"] = device
    if substitute:
        config["note"] = f"SUBSTITUTE DATA: {source} instead of the paper's {preset.dataset}"
    schedule = log_spaced(preset.steps, preset.points)
    ds = train_sweep(
        setup,
        loss_fn,
        lrs=preset.lrs,
        batch_sizes=preset.batch_sizes,
        seeds=range(preset.seeds),
        steps=preset.steps,
        schedule=schedule,
        config=config,
        progress=progress,
        desc=preset.name,
        device=dev,
        ensemble=ensemble,
    )
    if "grad_var" in ds:
        # Not the two-layer sweeps' minibatch variance (which divides by |B|, Eq. 18).
        ds.attrs["grad_var_definition"] = (
            "mean over parameter entries of the unbiased per-sample gradient variance over the "
            f"probe set ({preset.probe_size} samples), not divided by |B|"
        )
    return ds
