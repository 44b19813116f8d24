"""Deep presets (Fig. 2 middle/bottom, Figs. 11-14): train, save the results, draw the figures."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from thermosgd import presets
from thermosgd.analysis.run_config import run_config
from thermosgd.analysis.verdict import DEFAULT_MARGIN, Verdict, judge
from thermosgd.deep.runs import DeepSpec, train_deep
from thermosgd.figures import sweep_figure
from thermosgd.reproduce.twolayer import write_summary
from thermosgd.sweep.store import save_results, write_config


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
    ensemble: bool = True,
    margin: float = DEFAULT_MARGIN,
) -> list[Verdict]:
    """Train a deep preset, save ``results.nc`` + ``config.json`` in ``out``, draw ``out/figures/``.

    Args:
        preset: an entry of :mod:`thermosgd.presets` of kind ``"deep"``, or its name.
        out: results folder (created).
        seeds: number of seeds (default: the preset's).
        steps: SGD updates per run (default: the preset's).
        quick: the preset's seconds-long smoke-test size.
        data_dir: folder with the data files (default: ``$THERMOSGD_DATA``).
        dataset: replace the image data set, e.g. ``"digits"`` (a labeled substitute).
        include_diverged: keep diverged replicas in the collapse fit.
        progress: show progress.
        device: "cpu", "cuda" or "cuda:N" (docs/devices.md).
        ensemble: train all seeds × lrs of a batch size as one ensemble (default);
            False: one run after another (the reference; same curves to tolerance).
        margin: practical margin of the exponent's verdict (a fraction of the paper's value).

    Returns:
        The preset's verdict (fitted exponent of its plotted metric against the paper's),
        also written to ``summary.json`` and ``report.md``.
    """
    preset = presets.get(preset) if isinstance(preset, str) else preset
    spec = DeepSpec.from_preset(preset, seeds=seeds, steps=steps, quick=quick)
    ds = train_deep(
        spec, data_dir=data_dir, dataset=dataset, progress=progress, tiny=quick, device=device, ensemble=ensemble
    )
    out = Path(out)
    config = json.loads(ds.attrs["config"])
    write_config(config, out)
    save_results(ds, out, config)
    draw_preset_figures(ds, out / "figures")
    assert preset.over is not None  # a deep preset sweeps η or |B|
    verdict = judge(ds, preset.name, preset.metric, preset.over, include_diverged=include_diverged, margin=margin)
    write_summary(out, preset, ds, [verdict])
    print(f"[{preset.name}] {preset.metric}: {verdict.line()}")  # the result, with or without progress bars
    return [verdict]


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
