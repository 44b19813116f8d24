"""Deep presets (Fig. 2 middle/bottom, Figs. 11-14) as studies: train, save the results, draw the figures.

A deep preset is a study (:mod:`thermosgd.studies`): its model factory is a
network of :mod:`thermosgd.deep.models`, its data the Gaussian inputs of
``[data] source = "gaussian"`` or an image data set's training split given as
tensors, and the study runner trains it (resumably) into ``OUT/study/``. The
preset's own ``results.nc`` in ``OUT`` is the study's results under the names the
figures, verdicts and report read (``last_weight_norm`` is ``v_norm`` for the
two-layer net), with the preset's configuration in ``attrs["config"]``.

Labels:
    * Gaussian inputs (``fig2-middle``): random binary labels, balanced exactly
      (half 0, half 1, shuffled) on a finite set, Bernoulli(½) online; a scalar-output
      net and the logistic (BCE) loss, as in the paper's theory (Sec. 4-5).
    * Image data (Fashion-MNIST, CIFAR-10, digits substitute): all 10 classes, with
      10 output logits and the multi-class softmax cross-entropy of A.5 (Eq. 37-40).
      No binary relabeling. For the two-layer net ``f(x) = V relu(Wx + b)`` of
      Figs. 11-14, ``V`` is ``(10, 300)`` and ``v_norm`` is its Frobenius norm.

Images are scaled to ``[0, 1]`` (pixel / 255; digits / 16) and not centered.
Instruments run on a fixed probe set: the first ``probe_size`` training samples
(online: ``probe_size`` fresh samples drawn once). Studies run in this process
(their model is a Python factory), on the CPU or on the ``device`` asked for.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from torch import nn

from thermosgd import presets
from thermosgd.analysis.run_config import DATASET_NAME, run_config
from thermosgd.analysis.verdict import DEFAULT_MARGIN, Verdict, judge
from thermosgd.data import ImageData, load_dataset
from thermosgd.deep.models import cnn, mlp, two_layer
from thermosgd.errors import UsageError
from thermosgd.figures import sweep_figure
from thermosgd.reproduce.twolayer import write_summary
from thermosgd.studies.run import study
from thermosgd.sweep.store import save_results, write_config

PAPER = "Wei & Schwab, Implicit Regularization of SGD via Thermophoresis"
SUBSTITUTE = "digits"  # scikit-learn's bundled 8x8 digits, used when the paper's image files are absent
_MLP_DEPTH = 6  # Linear layers of Fig. 2 middle's net (Sec. 6)
# The study's name of a variable -> the name the figures, verdicts and report read.
_RENAMES = {"last_weight_norm": "v_norm"}
GRAD_VAR_DEFINITION = (
    "mean over parameter entries of the unbiased per-sample gradient variance over the probe set "
    "({probe} samples), not divided by |B| (unlike the two-layer sweeps' minibatch variance, Eq. 18)"
)


def image_data_missing(preset: presets.Preset, data_dir: Path | None) -> bool:
    """True when ``preset`` trains on an image data set whose files are not in ``data_dir``
    (default ``$THERMOSGD_DATA``): the default command then runs it on the digits substitute."""
    name = preset.params.get("dataset", "gaussian")
    if preset.kind != "deep" or name in ("gaussian", SUBSTITUTE):
        return False
    try:
        load_dataset(name, data_dir, split="train")
    except UsageError:
        return True
    return False


def batch_note(batch_sizes, n_train: int, dataset: str) -> tuple[str, str]:
    """Words on batch sizes that are a large part of the training set (the digits substitute's |B| = 1000):
    ``(short label, sentence)``, or ``("", "")`` when every |B| is at most a quarter of the set."""
    big = [b for b in batch_sizes if b > n_train // 4]
    if not big:
        return "", ""
    label = f"|B| ≤ {max(big)} of {n_train} samples"
    sentence = (
        f"|B| = {', '.join(map(str, big))} of the {n_train} {DATASET_NAME.get(dataset, dataset)} training samples: "
        "minibatches are drawn with replacement, so the noise covariance is still Σ/|B|, but each step sees a "
        "large share of a small set, which the network fits quickly (the paper's |B| ≤ 1000 was 2% of CIFAR-10's "
        "50000); read this row as a test on other data, not as the paper's figure"
    )
    return label, sentence


def _factory(model: str, shape: tuple[int, ...], out_dim: int, width: int) -> Callable[..., nn.Module]:
    """The preset's network for a seed (the deep models seed themselves from ``seed``)."""
    dim = int(np.prod(shape))

    def build(seed: int) -> nn.Module:
        if model == "mlp":
            return mlp(dim, width, _MLP_DEPTH, out_dim, seed=seed)
        if model == "two-layer":
            return two_layer(dim, width, out_dim, seed=seed)
        size = shape[-1]
        return cnn(shape[0], size, out_dim, seed=seed, padding=0 if size >= 25 else 2)

    return build


def _images(p: dict, images: ImageData) -> tuple[np.ndarray, np.ndarray]:
    n = len(images.labels) if p["n_train"] is None else min(p["n_train"], len(images.labels))
    return images.images[:n].astype(np.float32) * np.float32(images.scale), images.labels[:n]


def deep_study(
    preset: presets.Preset,
    *,
    seeds: int | None = None,
    steps: int | None = None,
    quick: bool = False,
    data_dir: Path | None = None,
    dataset: str | None = None,
) -> tuple[dict, Callable[..., nn.Module], Any, dict]:
    """A deep preset as a study at the requested size.

    Returns:
        ``(spec, factory, data, config)``: the study's TOML-shaped dict, its model
        factory, its training set as ``(x, y)`` arrays (None for Gaussian data) and
        the preset's configuration (``attrs["config"]`` of its results).
    """
    if preset.kind != "deep":
        raise UsageError(f"preset {preset.name} is a {preset.kind} preset, not a deep one")
    seeds, steps = preset.size(seeds=seeds, steps=steps, quick=quick)
    p = preset.settings(quick=quick)
    source = dataset or p["dataset"]
    if p["dataset"] == "gaussian" and source != "gaussian":
        raise UsageError(f"preset {preset.name} uses synthetic Gaussian data; it takes no data-set substitute")
    data: Any = None
    if source == "gaussian":
        online = bool(p.get("online", False))
        shape: tuple[int, ...] = (p["gaussian_dim"],)
        out_dim, loss, n_train = 1, "bce", p["n_train"] or 1000
        data_cfg = {"source": "gaussian", "dim": p["gaussian_dim"], "online": online, "train_size": n_train}
        labels = (
            "random binary labels {0, 1}, "
            + ("Bernoulli(1/2), fresh samples every step (online)" if online else "exactly balanced")
            + "; scalar output, BCE-with-logits loss"
        )
    else:
        images = load_dataset(source, data_dir, split="train")
        data = _images(p, images)
        shape, out_dim, loss = tuple(images.images.shape[1:]), len(images.classes), "cross_entropy"
        n_train = len(data[1])
        data_cfg = {"source": "gaussian"}  # unused: the study trains on the tensors it is given
        labels = f"all {out_dim} classes, {out_dim} logits, softmax cross-entropy (A.5, Eq. 37-40)"
    spec = {
        "data": {**data_cfg, "probe_size": min(p["probe_size"], n_train)},
        "train": {
            "loss": loss,
            "lr": list(p["lrs"]),
            "batch_size": list(p["batch_sizes"]),
            "seeds": seeds,
            "steps": steps,
        },
        "record": {"points": p["points"]},
    }
    substitute = source != p["dataset"]
    config = {
        "kind": "deep",
        "preset": preset.name,
        "paper": PAPER,
        "description": preset.description,
        **{k: v for k, v in p.items() if k not in ("lrs", "batch_sizes")},
        "over": preset.over,
        "lrs": list(p["lrs"]),
        "batch_sizes": list(p["batch_sizes"]),
        "seeds": seeds,
        "steps": steps,
        "figures": [preset.metric],
        "dataset": source,
        "dataset_paper": p["dataset"],
        "substitute": substitute,
        "labels": labels,
        "input_shape": list(shape),
        "tiny": quick,
        "optimizer": "plain SGD, minibatches drawn uniformly with replacement",
        "trained_by": "thermosgd.studies (results of the study in study/)",
    }
    if substitute:
        config["note"] = f"SUBSTITUTE DATA: {source} instead of the paper's {p['dataset']}"
        label, note = batch_note(p["batch_sizes"], n_train, source)
        if note:
            config["batch_label"], config["batch_note"] = label, note
    return spec, _factory(p["model"], shape, out_dim, p["width"]), data, config


def preset_results(ds: xr.Dataset, config: dict) -> xr.Dataset:
    """The study's results under the names the figures, verdicts and report read, with the preset's config."""
    out = ds.rename({k: v for k, v in _RENAMES.items() if k in ds})
    if config["model"] != "two-layer" and "v_norm" in out:  # ‖V‖ is the two-layer net's claim only
        out = out.rename({"v_norm": "last_weight_norm"})
    out.attrs = {
        "kind": "deep",
        "config": json.dumps(config),
        "grad_var_definition": GRAD_VAR_DEFINITION.format(probe=config["probe_size"]),
        "activation_rate_method": ds.attrs.get("activation_rate_method", ""),
    }
    return out


def reproduce_deep(
    preset: presets.Preset | str,
    out: Path,
    *,
    seeds: int | None = None,
    steps: int | None = None,
    quick: bool = False,
    data_dir: Path | None = None,
    dataset: str | None = None,
    include_diverged: bool = False,
    progress: bool = True,
    device: str = "cpu",
    margin: float = DEFAULT_MARGIN,
) -> list[Verdict]:
    """Run a deep preset as a study, save ``results.nc`` + ``config.json`` in ``out``, draw ``out/figures/``.

    Args:
        preset: an entry of :mod:`thermosgd.presets` of kind ``"deep"``, or its name.
        out: results folder (created); the study itself goes to ``out/study`` (resumable).
        seeds: number of seeds (default: the preset's).
        steps: SGD updates per run (default: the preset's).
        quick: the preset's seconds-long smoke-test size.
        data_dir: folder with the data files (default: ``$THERMOSGD_DATA``).
        dataset: replace the image data set, e.g. ``"digits"`` (a labeled substitute).
        include_diverged: keep diverged replicas in the collapse fit.
        progress: show progress.
        device: where the study trains: "cpu", "cuda" or "cuda:N" (docs/devices.md); recorded
            in the preset's configuration unless "cpu".
        margin: practical margin of the exponent's verdict (a fraction of the paper's value).

    Returns:
        The preset's verdict (fitted exponent of its plotted metric against the paper's),
        also written to ``summary.json`` and ``report.md``.
    """
    preset = presets.get(preset) if isinstance(preset, str) else preset
    spec, factory, data, config = deep_study(
        preset, seeds=seeds, steps=steps, quick=quick, data_dir=data_dir, dataset=dataset
    )
    config["probe_size"] = spec["data"]["probe_size"]
    if device != "cpu":  # absent on the CPU, so folders written before the option still match
        config["device"] = device
    out = Path(out)
    ds = study(spec, out / "study", model=factory, data=data, device=device, progress=progress)
    ds = preset_results(ds, config)
    write_config(config, out)
    save_results(ds, out, config)
    draw_preset_figures(ds, out / "figures")
    assert preset.over is not None  # a deep preset sweeps η or |B|
    verdict = judge(ds, preset.name, preset.metric, preset.over, include_diverged=include_diverged, margin=margin)
    if config.get("batch_note"):
        verdict = _with_note(verdict, config["batch_note"])
    write_summary(out, preset, ds, [verdict])
    print(f"[{preset.name}] {preset.metric}: {verdict.line()}")  # the result, with or without progress bars
    return [verdict]


def _with_note(verdict: Verdict, note: str) -> Verdict:
    return dataclasses.replace(verdict, note=f"{verdict.note}; {note}" if verdict.note else note)


def draw_preset_figures(ds, folder: Path) -> list[Path]:
    """The preset's figures from its results (``ds.attrs["config"]`` says which), into ``folder``."""
    run = run_config(ds)
    name = run.preset
    tag = f"_{run.dataset}-substitute" if run.substitute else ""
    # The description names the paper's data; on a substitute it says which data replaced it.
    title = run.on_data(
        f"{name} ({run.substitute_label}): {run.description}" if run.substitute else f"{name}: {run.description}"
    )
    files: list[Path] = []
    for metric in run.figures:
        stem = folder / (f"{name}{tag}" if len(run.figures) == 1 else f"{name}_{metric}{tag}")
        files += sweep_figure(
            ds, metric, over=run.over or "lr", out_stem=stem, title="\n".join(textwrap.wrap(title, 90))
        )
    return files
