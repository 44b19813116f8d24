"""The report's sections: one per experiment of the preset table, in its (the paper's) order.

Claims, swept parameters, metrics and exponents come from
:mod:`thermosgd.presets`; this module only adds a short heading per experiment
and the place in the paper it comes from. An experiment that is not in the
table yet (the mechanism controls) can be listed in :data:`EXTRA`; it gets a
section only when its folder exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from thermosgd import presets

__all__ = ["CUSTOM_STUDY", "CUSTOM_SWEEP", "Experiment", "experiments", "by_key", "preset_of"]

#: The key of a two-layer sweep that no preset ran (``thermosgd sweep my.toml --out runs/mine``).
CUSTOM_SWEEP = "sweep"
#: The key of a study of the user's own model (``thermosgd study my.toml --out runs/mine``).
CUSTOM_STUDY = "study"


@dataclass(frozen=True)
class Experiment:
    """One section of the report.

    Attributes:
        key: the experiment id (``presets.Preset.experiment``).
        name: the preset that runs it, and the folder ``reproduce`` writes (``runs/NAME``).
        kind: the presets' kind: ``"walk"``, ``"twolayer"``, ``"deep"``, ``"analysis"`` or another.
        figures: the presets whose results live in that folder, e.g. ``("fig3", "fig4")``.
        title: section heading.
        claim: the paper's claim(s), one sentence per figure, with equation or figure.
        source: where in the paper, short.
        optional: shown only when a folder holds its results.
    """

    key: str
    name: str
    kind: str
    figures: tuple[str, ...]
    title: str
    claim: str
    source: str
    optional: bool = False


# Short headings and sources; the claims themselves are in the preset table.
_TITLE = {
    "walk": ("Random walk with position-dependent noise", "Sec. 3, Eq. 9–12"),
    "fig2-top": ("Two-layer net, 100×100, learning-rate sweep", "Sec. 6, Fig. 2 top"),
    "gauss-lr": ("Two-layer net, Gaussian inputs, learning-rate sweep", "App. A.6, Figs. 3–4"),
    "gauss-batch": ("Two-layer net, Gaussian inputs, batch-size sweep", "App. A.6, Figs. 5–6"),
    "uniform-lr": ("Two-layer net, U(0,1) inputs, learning-rate sweep", "App. A.6, Figs. 7–8"),
    "uniform-batch": ("Two-layer net, U(0,1) inputs, batch-size sweep", "App. A.6, Figs. 9–10"),
    "fig2-middle": ("Deep fully connected net, learning-rate sweep", "Sec. 6, Fig. 2 middle"),
    "fig2-middle-online": (
        "Deep fully connected net, online data, learning-rate sweep",
        "Sec. 6, Fig. 2 middle (fresh samples every step)",
    ),
    "fig2-bottom": ("Deep CNN on Fashion-MNIST, learning-rate sweep", "Sec. 6, Fig. 2 bottom"),
    "fig11": ("CIFAR-10, two-layer net, learning-rate sweep: activation rate", "App. A.6, Fig. 11"),
    "fig12": ("CIFAR-10, two-layer net, learning-rate sweep: ‖V‖", "App. A.6, Fig. 12"),
    "fig13": ("CIFAR-10, two-layer net, batch-size sweep: activation rate", "App. A.6, Fig. 13"),
    "fig14": ("CIFAR-10, two-layer net, batch-size sweep: ‖V‖", "App. A.6, Fig. 14"),
    "drift": ("Drift of b and V² against Eq. 27", "Sec. 5, Eq. 23–27"),
    "equal-error": ("Activation rate and ‖V‖ at equal training error", "Sec. 5, after Eq. 28"),
    "generalization": ("Sparsity and test accuracy (beyond the paper)", "Sec. 5 discussion, App. A.5"),
    "hessian-bound": ("Hessian trace and its upper bound (earlier version, App. A.8)", "App. A.8 of 000, Eq. 62–64"),
    "mechanism": ("Noise-ablation controls (beyond the paper)", "Sec. 3, Eq. 23–27; a control, not in the paper"),
    "mechanism-deep": (
        "Noise-ablation controls on a deep net (beyond the paper)",
        "Sec. 3, Eq. 23–27 and Sec. 6, Fig. 2 middle (online); a control, not in the paper",
    ),
}

# Experiments the report knows that the preset table may not have yet.
EXTRA = (
    Experiment(
        "mechanism",
        "mechanism",
        "mechanism",
        ("mechanism",),
        title=_TITLE["mechanism"][0],
        claim="The decrease needs SGD noise whose variance depends on the parameters (a temperature gradient, "
        "Sec. 3, Eq. 23–27): noise-free or constant-variance noise should not produce it.",
        source=_TITLE["mechanism"][1],
        optional=True,
    ),
    Experiment(
        CUSTOM_SWEEP,
        CUSTOM_SWEEP,
        "twolayer",
        (),
        title="Custom two-layer sweep",
        claim="A sweep from your own configuration (thermosgd sweep): no claim of the paper is attached to it, "
        "so it gets no verdict here; `thermosgd collapse` fits its exponents.",
        source="thermosgd sweep",
        optional=True,
    ),
    Experiment(
        CUSTOM_STUDY,
        CUSTOM_STUDY,
        "study",
        (),
        title="Study of your model",
        claim="A study of a model of your own (thermosgd study): no claim of the paper is attached to it, "
        "so it gets no verdict here; `thermosgd collapse` fits its exponents.",
        source="thermosgd study",
        optional=True,
    ),
)


def experiments() -> list[Experiment]:
    """Every experiment: the preset table's, grouped by run, in table order, then :data:`EXTRA`."""
    out: dict[str, Experiment] = {}
    for p in presets.TABLE:
        if p.experiment in out:
            continue
        group = [q for q in presets.TABLE if q.experiment == p.experiment]
        claims = []
        for q in group:
            if q.claim and q.claim not in claims:
                claims.append(q.claim)
        title, source = _TITLE.get(p.experiment, (p.description, ""))
        out[p.experiment] = Experiment(
            p.experiment,
            p.name,
            p.kind,
            tuple(q.name for q in group),
            title,
            " ".join(claims),
            source,
            optional=p.experiment in {e.key for e in EXTRA},
        )
    for extra in EXTRA:
        out.setdefault(extra.key, extra)
    return list(out.values())


def by_key(key: str) -> Experiment | None:
    """The experiment ``key``, or None."""
    return next((e for e in experiments() if e.key == key), None)


def preset_of(name: str):
    """The preset ``name``, or None (e.g. an experiment not in the table)."""
    return presets.PRESETS.get(name)
