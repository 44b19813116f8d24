"""The paper's experiments as data: one entry per figure.

Figure numbers follow the fuller version of the paper (``001_…``); Fig. 2's top
row is Fig. 1's top row in the earlier version (``000_…``). Default sizes are
small so that ``thermosgd reproduce`` finishes in minutes on two cores; pass
``--seeds`` and ``--steps`` for paper-sized runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from thermosgd.errors import UsageError
from thermosgd.sweep.config import SweepConfig, from_dict

ETAS = [0.025, 0.05, 0.075, 0.1]


@dataclass(frozen=True)
class Preset:
    """One reproducible figure.

    Attributes:
        name: CLI name, e.g. "fig3".
        kind: "twolayer" (vectorized engine), "deep" (instruments on deep nets)
            or "walk" (random-walk lab).
        description: what the figure shows.
        experiment: presets sharing an experiment share one run; running any of
            them writes all of the experiment's figures.
        over: the swept hyperparameter, "lr" or "batch_size".
        metric: the metric this figure plots.
        config: raw configuration sections (two-layer presets).
        seeds, steps: default size.
        in_default_set: part of plain ``thermosgd reproduce`` (needs no data files).
    """

    name: str
    kind: str
    description: str
    experiment: str = ""
    over: str = "lr"
    metric: str = "activation_rate"
    config: dict = field(default_factory=dict)
    seeds: int = 8
    steps: int = 3000
    in_default_set: bool = True


def _twolayer(name, description, experiment, over, metric, *, M, N, inputs, bias, lr, bs, steps=3000, default=True):
    return Preset(
        name=name, kind="twolayer", description=description, experiment=experiment, over=over,
        metric=metric, steps=steps, in_default_set=default,
        config={
            "model": {"inputs": M, "hidden": N, "bias": bias},
            "data": {"inputs": inputs, "labels": "random"},
            "train": {"loss": "bce", "lr": lr, "batch_size": bs},
        },
    )


_G = dict(M=10, N=10, inputs="gaussian", bias=True)
_U = dict(M=10, N=10, inputs="uniform", bias=False)
TWOLAYER = [
    _twolayer("fig2-top", "activation rate, 100 inputs × 100 hidden, Gaussian inputs, |B|=1, η sweep "
              "(Fig. 2 top of 001 = Fig. 1 top of 000)", "fig2-top", "lr", "activation_rate",
              M=100, N=100, inputs="gaussian", bias=True, lr=ETAS, bs=[1]),
    _twolayer("fig3", "activation rate, 10×10, Gaussian inputs, bias, |B|=1, η sweep (App. A.6)",
              "gauss-lr", "lr", "activation_rate", lr=ETAS, bs=[1], **_G),
    _twolayer("fig4", "‖V‖₂, 10×10, Gaussian inputs, bias, |B|=1, η sweep (App. A.6)",
              "gauss-lr", "lr", "v_norm", lr=ETAS, bs=[1], default=False, **_G),
    _twolayer("fig5", "activation rate, 10×10, Gaussian inputs, bias, η=0.05, |B| ∈ {1,2,3}",
              "gauss-batch", "batch_size", "activation_rate", lr=[0.05], bs=[1, 2, 3], **_G),
    _twolayer("fig6", "‖V‖₂, 10×10, Gaussian inputs, bias, η=0.05, |B| ∈ {1,2,3}",
              "gauss-batch", "batch_size", "v_norm", lr=[0.05], bs=[1, 2, 3], default=False, **_G),
    _twolayer("fig7", "activation rate, 10×10, U(0,1) inputs, no bias, |B|=1, η sweep",
              "uniform-lr", "lr", "activation_rate", lr=ETAS, bs=[1], **_U),
    _twolayer("fig8", "‖V‖₂, 10×10, U(0,1) inputs, no bias, |B|=1, η sweep",
              "uniform-lr", "lr", "v_norm", lr=ETAS, bs=[1], default=False, **_U),
    _twolayer("fig9", "activation rate, 10×10, U(0,1) inputs, no bias, η=0.05, |B| ∈ {1,2,3}",
              "uniform-batch", "batch_size", "activation_rate", lr=[0.05], bs=[1, 2, 3], **_U),
    _twolayer("fig10", "‖V‖₂, 10×10, U(0,1) inputs, no bias, η=0.05, |B| ∈ {1,2,3}",
              "uniform-batch", "batch_size", "v_norm", lr=[0.05], bs=[1, 2, 3], default=False, **_U),
]

PRESETS: dict[str, Preset] = {p.name: p for p in TWOLAYER}


WALK = Preset(
    name="walk", kind="walk", experiment="walk",
    description="random-walk lab (Sec. 3): density evolution, measured vs Eq. 10 flux, "
    "stationary density vs g (log-log)",
)
DEEP = [
    Preset(name="fig2-middle", kind="deep", experiment="fig2-middle",
           description="6-layer fully connected (width 100), Gaussian inputs, random labels, "
           "η sweep: gradient variance vs rescaled iterations"),
    Preset(name="fig2-bottom", kind="deep", experiment="fig2-bottom", in_default_set=False,
           description="6-layer CNN (10 channels, 5×5, stride 1) on Fashion-MNIST, η sweep: "
           "gradient variance (needs the IDX files)"),
    Preset(name="fig11", kind="deep", experiment="fig11", in_default_set=False,
           description="two-layer, 300 hidden, CIFAR-10, |B|=1000, η sweep: activation rate "
           "(needs the CIFAR-10 binary files)"),
    Preset(name="fig12", kind="deep", experiment="fig12", in_default_set=False,
           description="two-layer, 300 hidden, CIFAR-10, |B|=1000, η sweep: ‖V‖"),
    Preset(name="fig13", kind="deep", experiment="fig13", in_default_set=False,
           description="two-layer, 300 hidden, CIFAR-10, η=0.02, |B| sweep: activation rate"),
    Preset(name="fig14", kind="deep", experiment="fig14", in_default_set=False,
           description="two-layer, 300 hidden, CIFAR-10, η=0.02, |B| sweep: ‖V‖"),
]
ANALYSIS = [
    Preset(name="drift", kind="analysis", experiment="drift", in_default_set=False,
           description="beyond the figures (Sec. 5, Eq. 27): measured excess drift of b and V² "
           "vs the predicted thermophoretic drift, its η and |B| exponents, and err2 over time"),
    Preset(name="equal-error", kind="analysis", experiment="equal-error", in_default_set=False,
           description="Sec. 5 after Eq. 28: activation rate and ‖V‖ when each η first reaches "
           "the same training error on a teacher task"),
    Preset(name="generalization", kind="analysis", experiment="generalization", in_default_set=False,
           description="beyond the paper: test accuracy vs final activation rate and ‖V‖ over an "
           "(η, |B|) grid on a teacher task"),
]
for _p in [WALK, *DEEP, *ANALYSIS]:
    PRESETS[_p.name] = _p


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; run `thermosgd reproduce --list` (known: {', '.join(PRESETS)})")
    return PRESETS[name]


def experiment_presets(preset: Preset) -> list[Preset]:
    """All presets that share ``preset``'s run, in registry order."""
    return [p for p in PRESETS.values() if p.experiment == preset.experiment and p.kind == preset.kind]


def twolayer_config(preset: Preset, *, seeds: int | None = None, steps: int | None = None) -> SweepConfig:
    """The sweep configuration of a two-layer preset at the requested size."""
    seeds = preset.seeds if seeds is None else seeds
    steps = preset.steps if steps is None else steps
    if seeds <= 0:
        raise UsageError(f"--seeds must be positive, got {seeds}")
    if steps <= 0:
        raise UsageError(f"--steps must be positive, got {steps}")
    raw = {k: dict(v) for k, v in preset.config.items()}
    every = max(1, steps // 500)
    raw["train"].update(seeds=seeds, steps=steps, record_every=every, probe_every=10 * every)
    return from_dict(raw)  # [sweep] seeds_per_unit = "auto": units sized by work
