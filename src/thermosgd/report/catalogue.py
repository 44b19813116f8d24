"""The paper's claims, one per experiment, in the order the page shows them.

Each experiment is what one ``thermosgd reproduce`` run writes into one folder
(``fig3`` also holds Fig. 4). When the preset table
(:mod:`thermosgd.presets`) carries a preset's claim text (attribute
``claim``), that text is used; the sentences below are the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Experiment", "EXPERIMENTS", "by_key", "OPTIONAL"]


@dataclass(frozen=True)
class Experiment:
    """One section of the report.

    Attributes:
        key: the experiment id (``presets.Preset.experiment``).
        name: the preset that runs it, and the folder ``reproduce`` writes (``runs/NAME``).
        figures: the figure presets whose results live in that folder, e.g. ``("fig3", "fig4")``.
        title: section heading.
        claim: the paper's claim in one sentence.
        source: where in the paper it comes from (section, equation, figure).
    """

    key: str
    name: str
    figures: tuple[str, ...]
    title: str
    claim: str
    source: str


_LR = "the curves for different learning rates η overlap when plotted against t·η² (α = 2)"
_BS = "the curves for different batch sizes overlap when plotted against t/|B| (β = 1)"

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        "walk", "walk", ("walk",), "Random walk with position-dependent noise",
        "A walker whose step size g(q) depends on its position drifts toward smaller g: beside "
        "diffusion, the probability flux has a thermophoretic term with a negative Soret "
        "coefficient ∝ η², so mass collects where the noise is small.",
        "Sec. 3, Eq. 9–12"),
    Experiment(
        "fig2-top", "fig2-top", ("fig2-top",), "Two-layer net, 100×100, learning-rate sweep",
        "In a two-layer ReLU net (100 Gaussian inputs, 100 hidden units, random labels, |B| = 1) "
        f"the activation rate decreases during training and {_LR}.",
        "Sec. 6, Fig. 2 top; Eq. 28"),
    Experiment(
        "gauss-lr", "fig3", ("fig3", "fig4"), "Two-layer net, Gaussian inputs, learning-rate sweep",
        "With 10 Gaussian inputs, 10 hidden units and a bias, the activation rate (Fig. 3) and "
        f"‖V‖ (Fig. 4) decrease during training and {_LR}.",
        "App. A.6, Figs. 3–4; Eq. 28"),
    Experiment(
        "gauss-batch", "fig5", ("fig5", "fig6"), "Two-layer net, Gaussian inputs, batch-size sweep",
        "At η = 0.05 with |B| ∈ {1, 2, 3}, the activation rate (Fig. 5) and ‖V‖ (Fig. 6) "
        f"decrease and {_BS}.",
        "App. A.6, Figs. 5–6; Eq. 28"),
    Experiment(
        "uniform-lr", "fig7", ("fig7", "fig8"), "Two-layer net, U(0,1) inputs, learning-rate sweep",
        "With non-negative U(0,1) inputs and no bias, the activation rate (Fig. 7) and ‖V‖ "
        f"(Fig. 8) decrease and {_LR}.",
        "App. A.6, Figs. 7–8; Eq. 28"),
    Experiment(
        "uniform-batch", "fig9", ("fig9", "fig10"), "Two-layer net, U(0,1) inputs, batch-size sweep",
        "With U(0,1) inputs, no bias, η = 0.05 and |B| ∈ {1, 2, 3}, the activation rate (Fig. 9) "
        f"and ‖V‖ (Fig. 10) decrease and {_BS}.",
        "App. A.6, Figs. 9–10; Eq. 28"),
    Experiment(
        "fig2-middle", "fig2-middle", ("fig2-middle",), "Deep fully connected net, learning-rate sweep",
        "In a 6-layer fully connected net (width 100) on Gaussian inputs with random labels, the "
        f"gradient variance decreases during training and {_LR}.",
        "Sec. 6, Fig. 2 middle"),
    Experiment(
        "fig2-bottom", "fig2-bottom", ("fig2-bottom",), "Deep CNN on Fashion-MNIST, learning-rate sweep",
        "In a 6-layer CNN (10 channels, 5×5 kernels) on Fashion-MNIST, the gradient variance "
        f"decreases during training and {_LR}.",
        "Sec. 6, Fig. 2 bottom"),
    Experiment(
        "fig11", "fig11", ("fig11",), "CIFAR-10, two-layer net, learning-rate sweep: activation rate",
        "A two-layer net with 300 hidden units on CIFAR-10 (|B| = 1000): the activation rate "
        f"decreases and {_LR}.",
        "App. A.6, Fig. 11"),
    Experiment(
        "fig12", "fig12", ("fig12",), "CIFAR-10, two-layer net, learning-rate sweep: ‖V‖",
        f"The same net on CIFAR-10 (|B| = 1000): ‖V‖ decreases and {_LR}.",
        "App. A.6, Fig. 12"),
    Experiment(
        "fig13", "fig13", ("fig13",), "CIFAR-10, two-layer net, batch-size sweep: activation rate",
        f"The same net at η = 0.02: the activation rate decreases and {_BS}.",
        "App. A.6, Fig. 13"),
    Experiment(
        "fig14", "fig14", ("fig14",), "CIFAR-10, two-layer net, batch-size sweep: ‖V‖",
        f"The same net at η = 0.02: ‖V‖ decreases and {_BS}.",
        "App. A.6, Fig. 14"),
    Experiment(
        "drift", "drift", ("drift",), "Drift of b and V² against Eq. 27",
        "SGD noise pushes the biases b toward negative values and V² down, at the thermophoretic "
        "rate J_t = η²ψ/|B|: the drift scales as η² (α = 2) and 1/|B| (β = 1).",
        "Sec. 5, Eq. 23–27"),
    Experiment(
        "equal-error", "equal-error", ("equal-error",), "Activation rate and ‖V‖ at equal training error",
        "Of two runs that reach the same training error, the one with the larger η has an "
        "activation rate and ‖V‖ no larger than the one with the smaller η.",
        "Sec. 5, after Eq. 28"),
    Experiment(
        "generalization", "generalization", ("generalization",), "Sparsity and test accuracy (beyond the paper)",
        "Beyond the paper's experiments: larger η²/|B| gives a sparser net (lower activation rate), "
        "and a sparser net generalizes better, as the paper's discussion of sparsity suggests.",
        "Sec. 5, discussion after Eq. 28 (not tested in the paper)"),
    Experiment(
        "mechanism", "mechanism", ("mechanism",), "Noise-ablation controls (beyond the paper)",
        "The decrease needs SGD noise whose variance depends on the parameters (a temperature "
        "gradient): noise-free or constant-variance noise should not produce it.",
        "Sec. 3 and Eq. 23–27 (control experiment, not in the paper)"),
)

# Shown only when their folder exists.
OPTIONAL = frozenset({"mechanism"})


def by_key(key: str) -> Experiment | None:
    """The catalogue entry for experiment ``key``, or None."""
    return next((e for e in EXPERIMENTS if e.key == key), None)
