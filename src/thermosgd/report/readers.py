"""One reader per kind of result folder: it fills a section with what was run and what was measured.

Each reads its folder's JSON tolerantly (``.get`` everywhere): a missing or
malformed field leaves a claim "not measured", never an exception.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from thermosgd import fmt
from thermosgd.analysis.run_config import DATASET_NAME, config_of
from thermosgd.analysis.summary import RunSummary
from thermosgd.analysis.verdict import (
    DEFAULT_MARGIN,
    FALLS,
    NOT_MEASURED,
    RISES,
    RULES,
    VERDICTS,
    judge_correlation,
    judge_difference,
    judge_exponent,
    judge_sign,
)
from thermosgd.errors import UsageError
from thermosgd.report.catalogue import CUSTOM_STUDY, CUSTOM_SWEEP, Experiment
from thermosgd.report.common import (
    EXPONENT,
    METRIC,
    PAPER_EXPONENT,
    SYMBOL,
    exponent_label,
    number,
    pm_sig,
    preset_metric,
    pretty_json,
    read_json,
    seed_count,
    settings_rows,
)
from thermosgd.report.curves import collapses
from thermosgd.report.records import Claim, Section, Table
from thermosgd.report.verdicts import claim_of, fit_claim, judged_fit, pooled_claim, verdict_records

__all__ = ["reader", "EXPECTED"]

_WALK_CLAIMS = (
    ("thermophoretic flux, measured / Eq. 10", "1"),
    ("η exponent of the thermophoretic flux", "2"),
    ("diffusive flux, measured / Eq. 10", "1"),
    ("stationary density ρ ∝ g^(−k): k", "1 (Eq. 10)"),
)
_DRIFT = (("b_early", "drift of b (early window)"), ("V2_shift_early", "drift of V², mean-shift part (early window)"))
EXPECTED = {
    "walk": _WALK_CLAIMS,
    "drift": tuple(
        (f"{what}: {SYMBOL[o]} exponent {EXPONENT[o]}", f"{EXPONENT[o]} = {fmt.sig(PAPER_EXPONENT[o])}")
        for _, what in _DRIFT
        for o in ("lr", "batch_size")
    ),
    "equal-error": (
        ("activation rate at the smaller η > at the larger η", "difference > 0"),
        ("‖V‖ at the smaller η > at the larger η", "difference > 0"),
    ),
    "hessian-bound": tuple(
        (f"{setting}: {what}", paper)
        for setting in ("two-layer", "mlp")
        for what, paper in (
            ("trace ≤ bound + 3 s.e. at every step", "no violation"),
            ("trace falls with the activation rate", "falls"),
            ("bound falls with the activation rate", "falls"),
            ("trace: η exponent α of its fall", "α = 2 (as the activation rate)"),
            ("bound: η exponent α of its fall", "α = 2 (as the activation rate)"),
        )
    ),
    "generalization": (
        ("activation rate falls as η²/|B| grows", "Spearman ρ < 0"),
        ("test accuracy rises as the activation rate falls", "Spearman ρ < 0"),
        ("test accuracy rises as ‖V‖ falls", "Spearman ρ < 0"),
    ),
}


def reader(exp: Experiment):
    """The function that fills ``exp``'s section from its folder: ``reader(exp)(section, exp, folder, margin)``
    (``margin``: judge exponents with this practical margin instead of the one each run recorded)."""
    by_key = {
        "walk": _walk,
        "drift": _drift,
        "equal-error": _equal_error,
        "generalization": _generalization,
        "mechanism": _generic,
        CUSTOM_SWEEP: _custom_sweep,
        CUSTOM_STUDY: _custom_study,
    }
    return by_key.get(exp.key) or {"twolayer": _twolayer, "deep": _deep}.get(exp.kind, _generic)


def _summary(sec: Section, folder: Path) -> dict:
    """``summary.json`` checked by its one reader (:meth:`RunSummary.from_dict`); ``{}`` with a note when a
    field is missing or renamed, so the claims read "not measured" with the reason, never silently."""
    summary = read_json(folder / "summary.json") or {}
    if summary:
        try:
            RunSummary.from_dict(summary)
        except UsageError as exc:
            sec.notes.append(f"summary.json could not be read ({exc}); rerun the command below to rewrite it.")
            return {}
    return summary


def _twolayer(sec: Section, exp: Experiment, folder: Path, margin: float | None = None) -> None:
    config = read_json(folder / "config.json") or {}
    summary = _summary(sec, folder)
    train = config.get("train", {})
    over = summary.get("over") or ("batch_size" if len(train.get("batch_size", [])) > 1 else "lr")
    sec.config = pretty_json(config)
    sec.run = _twolayer_run(config, summary)
    seeds, steps = seed_count(train.get("seeds")), train.get("steps")
    smoke = bool(seeds is not None and seeds <= 2) or bool(steps is not None and steps <= 100)
    if smoke:
        sec.notes.append("Smoke-test size (few seeds or steps): the verdicts below are not for conclusions.")
    fits = summary.get("collapse") or {}
    verdicts = verdict_records(summary)
    metrics = []
    for name in exp.figures:
        metric = preset_metric(name)
        if metric and metric not in metrics:
            metrics.append(metric)
    metrics += [m for m in [*fits, *verdicts] if m not in metrics]
    for metric in metrics:
        figure = next((f for f in exp.figures if preset_metric(f) == metric), None)
        sec.claims.append(
            fit_claim(
                exponent_label(metric, over, figure), fits.get(metric), over, summary, verdicts.get(metric), margin
            )
        )
    if summary.get("metrics"):
        sec.tables.append(_initial_final(summary, over))
    sec.collapses += collapses(
        sec, folder, metrics, over, {m: judged_fit(fits.get(m), verdicts.get(m)) for m in metrics}
    )
    if not (folder / "summary.json").exists():
        sec.notes.append(
            "summary.json is missing: the sweep has not finished or was run with `thermosgd sweep`; "
            "run `thermosgd reproduce` on it to fit the exponents."
        )
    if seeds is not None and steps is not None:
        sec.command = f"thermosgd reproduce {exp.name} --seeds {seeds} --steps {steps} --out {folder}"


def _custom_sweep(sec: Section, exp: Experiment, folder: Path, margin: float | None = None) -> None:
    """A sweep no preset ran: what was run, its curves, and the command that fits it (no paper claim)."""
    config = read_json(folder / "config.json") or {}
    train = config.get("train", {})
    sec.config = pretty_json(config)
    sec.run = _twolayer_run(config, {})
    what = f"a custom sweep ({{lr}} η × {{batch_size}} |B| × {seed_count(train.get('seeds'))} seeds)"
    _no_claim(sec, folder, train, what, ["activation_rate", "v_norm"])


def _custom_study(sec: Section, exp: Experiment, folder: Path, margin: float | None = None) -> None:
    """A study of the user's model: named by its folder and factory, what was run, its curves and the
    command that fits it (no paper claim)."""
    stamp = read_json(folder / "config.json") or {}
    study = stamp.get("study", {})
    model, data, train = (study.get(k, {}) for k in ("model", "data", "train"))
    factory = model.get("factory") or "a model factory given in Python"
    sec.name = f"{sec.name} (study of {factory})"
    sec.config = pretty_json(stamp)
    source = data.get("source", "?")
    if source == "gaussian":
        source += ", online" if data.get("online") else f", {data.get('train_size')} training samples"
    sec.run = [
        ("model", factory),
        ("data", source),
        ("loss", str(train.get("loss", "?"))),
        ("η", ", ".join(f"{v:g}" for v in train.get("lr", []))),
        ("|B|", ", ".join(str(v) for v in train.get("batch_size", []))),
        ("seeds", str(seed_count(train.get("seeds")))),
        ("steps", str(train.get("steps"))),
        ("noise model", str(train.get("noise", "sgd"))),
    ]
    _no_claim(sec, folder, train, f"a study of {factory}", ["grad_var", "activation_rate"])


def _no_claim(sec: Section, folder: Path, train: dict, what: str, metrics: list[str]) -> None:
    """A run no preset made: the ``collapse`` command that fits it (over the swept parameter), a claim row
    that says the report judges only the paper's presets, and its curves. ``what`` may name ``{lr}`` and
    ``{batch_size}``, the sizes of the grid."""
    sizes = {k: len(v) for k in ("lr", "batch_size") if isinstance(v := train.get(k), list)}
    over = "batch_size" if sizes.get("lr", 0) < 2 and sizes.get("batch_size", 0) >= 2 else "lr"
    sec.command = f"thermosgd collapse {shlex.quote(str(folder))} --metric {metrics[0]} --over {over}"
    if sizes.get("lr", 0) >= 2 and sizes.get("batch_size", 0) >= 2:
        sec.command += " --select batch_size=" + str(train["batch_size"][0])
    what = what.format(lr=sizes.get("lr", "?"), batch_size=sizes.get("batch_size", "?"))
    sec.claims.append(
        Claim(
            "collapse exponent",
            "no claim of the paper",
            fmt.NA,
            NOT_MEASURED,
            f"{what}: the report fits only the paper's presets; `{sec.command}` fits this one",
        )
    )
    if (folder / "results.nc").exists():
        sec.collapses += collapses(sec, folder, metrics, over, {})


def _twolayer_run(config: dict, summary: dict) -> list[tuple[str, str]]:
    model, data, train = config.get("model", {}), config.get("data", {}), config.get("train", {})
    rows = []
    if model:
        bias = "with bias" if model.get("bias") else "no bias"
        rows.append(
            (
                "model",
                f"two-layer ReLU net, {model.get('inputs')} inputs × {model.get('hidden')} hidden, "
                f"{bias}, init {model.get('init', '?')} (scale {model.get('init_scale', 1)})",
            )
        )
    if data:
        inputs = {"gaussian": "Gaussian N(0, I) inputs", "uniform": "U(0,1) inputs"}.get(
            data.get("inputs"), f"{data.get('inputs')} inputs"
        )
        size = (
            "online (fresh samples every step)"
            if not data.get("train_size")
            else f"finite training set of {data.get('train_size')}"
        )
        rows.append(("data", f"{inputs}, {data.get('labels', '?')} labels, {size}"))
    if train:
        rows.append(("loss", str(train.get("loss", "?"))))
        rows.append(("η", ", ".join(f"{v:g}" for v in train.get("lr", []))))
        rows.append(("|B|", ", ".join(str(v) for v in train.get("batch_size", []))))
        rows.append(("seeds", str(seed_count(train.get("seeds")))))
        rows.append(("steps", str(train.get("steps"))))
        rows.append(("noise model", _noise(train)))
        shared = [k.replace("share_", "") for k in ("share_init", "share_data") if train.get(k)]
        if shared:
            rows.append(("shared across η and |B|", " and ".join(shared) + " streams (paired comparison)"))
        if train.get("device"):
            rows.append(("device", str(train["device"])))
    if "diverged" in summary:
        rows.append(("diverged replicas", str(summary["diverged"])))
    return rows


def _noise(train: dict) -> str:
    noise = train.get("noise", "sgd")
    text = {
        "sgd": "SGD: minibatch of |B| samples",
        "gd": f"GD control: mean gradient over {train.get('gd_batch', '?')} samples",
        "gaussian": "Gaussian noise with SGD's parameter-dependent covariance",
        "frozen": "Gaussian noise with the covariance frozen at initialization",
    }.get(noise, str(noise))
    return text


def _initial_final(summary: dict, over: str) -> Table:
    metrics = [m for m, rows in summary["metrics"].items() if rows]
    values = []
    for m in metrics:
        values += [v for v in summary["metrics"][m] if v not in values]
    rows = []
    for v in values:
        cells = [v]
        for m in metrics:
            r = summary["metrics"][m].get(v) or {}
            cells.append(f"{fmt.sig(r.get('initial'))} → {fmt.sig(r.get('final'))}")
        rows.append(cells)
    return Table(
        "Seed mean at the first and last recorded step (non-diverged replicas)",
        [SYMBOL.get(over, over)] + [METRIC.get(m, m) for m in metrics],
        rows,
    )


def _deep(sec: Section, exp: Experiment, folder: Path, margin: float | None = None) -> None:
    config = read_json(folder / "config.json") or {}
    summary = _summary(sec, folder)
    over = config.get("over", "lr")
    sec.config = pretty_json(config)
    run = config_of(config)
    if run.substitute:  # named in the section's title and in the closing table too
        batch = config.get("batch_label")  # |B| near the substitute's set size: said on the row itself
        sec.name = f"{exp.name} ({run.substitute_label}; {batch})" if batch else f"{exp.name} ({run.substitute_label})"
        if config.get("batch_note"):
            sec.notes.append(str(config["batch_note"]))
        sec.title = run.on_data(sec.title)
        sec.notes.append(
            f"Substitute data: {run.dataset} instead of the paper's {run.dataset_paper}. "
            "This tests the mechanism on other data, not the paper's figure."
        )
    if config.get("tiny"):
        sec.notes.append("Smoke-test size (--quick): not for conclusions.")
    sec.run = [
        (k, v)
        for k, v in (
            ("model", f"{config.get('model', '?')} (width {config.get('width', '?')})"),
            (
                "data",
                (
                    run.on_data(DATASET_NAME.get(run.dataset_paper, run.dataset_paper))
                    if run.substitute
                    else run.dataset or "?"
                )
                + (
                    ", online (fresh samples every step)"
                    if config.get("online")
                    else f", {config['n_train']} training samples"
                    if config.get("n_train")
                    else ""
                ),
            ),
            ("labels", str(config.get("labels", "?"))),
            ("η", ", ".join(f"{v:g}" for v in config.get("lrs", []))),
            ("|B|", ", ".join(str(v) for v in config.get("batch_sizes", []))),
            ("seeds", str(config.get("seeds", "?"))),
            ("steps", str(config.get("steps", "?"))),
            ("noise model", str(config.get("optimizer", "plain SGD"))),
        )
    ]
    metrics = [m for m in [preset_metric(exp.name)] if m] or list(config.get("figures") or [])
    fits = summary.get("collapse") or {}
    verdicts = verdict_records(summary)
    metrics += [m for m in [*fits, *verdicts] if m not in metrics]
    for metric in metrics:
        claim = fit_claim(
            exponent_label(metric, over, exp.name), fits.get(metric), over, summary, verdicts.get(metric), margin
        )
        if metric not in fits and not summary:
            claim = replace(claim, note="no fitted exponent in this run (summary.json absent)")
        sec.claims.append(claim)
    if summary.get("metrics"):
        sec.tables.append(_initial_final(summary, over))
    sec.collapses += collapses(
        sec, folder, metrics, over, {m: judged_fit(fits.get(m), verdicts.get(m)) for m in metrics}
    )
    marker = read_json(folder / ".thermosgd-run.json")
    if marker is None and config.get("seeds") and config.get("steps"):
        sec.command = (
            f"thermosgd reproduce {exp.name} --seeds {config['seeds']} --steps {config['steps']} --out {folder}"
        )


def _walk(sec: Section, exp: Experiment, folder: Path, margin: float | None = None) -> None:
    rep = read_json(folder / "walk_report.json") or {}
    cases = [c for c in rep.get("cases", []) if isinstance(c, dict)]
    if number(rep.get("seconds")) is not None:
        sec.wall_time = f"{fmt.fixed(rep['seconds'], 1)} s"
    sec.config = pretty_json(
        {k: v for k, v in rep.items() if k not in ("cases", "seconds", "files")}
        | {"cases": [{k: c.get(k) for k in ("name", "g", "dim", "shared", "noise", "point")} for c in cases]}
    )
    first = cases[0] if cases else {}
    stat = first.get("stationary") or {}
    sec.run = [
        ("size", "quick (seconds)" if rep.get("quick") else "default"),
        ("seed", str(rep.get("seed", "?"))),
        ("cases", "; ".join(f"{c.get('name')}: g = {c.get('g')}, {c.get('dim')}-D" for c in cases)),
        (
            "noise ζ",
            ", ".join(
                sorted(
                    {
                        f"{c.get('noise')}, "
                        + ("shared by all coordinates" if c.get("shared") else "independent per coordinate")
                        for c in cases
                    }
                )
            ),
        ),
        ("η (flux)", fmt.sig((first.get("thermophoretic") or {}).get("main", {}).get("eta"))),
        (
            "stationary run",
            f"{stat.get('particles', '?')} particles × {stat.get('steps', '?')} steps"
            f" at η = {fmt.sig(stat.get('eta'))}",
        ),
    ]
    sec.reading.append(
        "Verdicts: " + RULES["ratio"] + " FP = Fokker–Planck (Itô) limit of the same walk, not from the paper."
    )

    _walk_claims(sec, cases, margin)
    sec.tables.append(_walk_table(cases))
    marker = read_json(folder / ".thermosgd-run.json") or {}
    sec.command = (
        f"thermosgd reproduce walk{' --quick' if marker.get('quick', rep.get('quick')) else ''} --out {folder}"
    )


def _ratio(d, key="ratio_eq10"):
    d = d or {}
    return d.get(key), d.get(key + "_stderr")


def _walk_items(group: list[dict]) -> list[list[tuple]]:
    """Per claim of :data:`_WALK_CLAIMS`: ``(case, value, s.e., prediction)`` of each case in ``group``."""
    return [
        [(c.get("name"), *_ratio((c.get("thermophoretic") or {}).get("main")), 1.0) for c in group],
        [
            (
                c.get("name"),
                (c.get("thermophoretic") or {}).get("exponent"),
                (c.get("thermophoretic") or {}).get("exponent_stderr"),
                (c.get("thermophoretic") or {}).get("exponent_eq10", 2.0),
            )
            for c in group
        ],
        [(c.get("name"), *_ratio(c.get("diffusive")), 1.0) for c in group],
        [
            (
                c.get("name"),
                (c.get("stationary") or {}).get("k_fit"),
                (c.get("stationary") or {}).get("k_stderr"),
                (c.get("stationary") or {}).get("k_eq10"),
            )
            for c in group
            if c.get("stationary")
        ],
    ]


def _walk_claims(sec: Section, cases: list[dict], margin: float | None) -> None:
    """One claim per dimension and kind: a 1-D result is not judged together with a 2-D one."""
    dims = sorted({c.get("dim") for c in cases}, key=str) or [None]
    for k, (label, paper) in enumerate(_WALK_CLAIMS):
        for dim in dims:
            group = [c for c in cases if c.get("dim") == dim]
            rows = _walk_items(group)[k]
            if not rows and len(dims) > 1:
                continue
            tag = f" ({dim}-D)" if len(dims) > 1 else ""
            sec.claims.append(pooled_claim(label + tag, paper, rows, margin))


def _walk_table(cases: list[dict]) -> Table:
    """Measured against predicted, per case."""
    rows = []
    for c in cases:
        th, di, st = (c.get("thermophoretic") or {}), (c.get("diffusive") or {}), (c.get("stationary") or {})
        main = th.get("main") or {}
        rows.append(
            [
                str(c.get("name")),
                str(c.get("g")),
                fmt.plus_minus(*_ratio(main)),
                fmt.plus_minus(*_ratio(main, "ratio_fokker_planck")),
                fmt.plus_minus(*_ratio(di)),
                fmt.plus_minus(*_ratio(di, "ratio_fokker_planck")),
                fmt.plus_minus(st.get("k_fit"), st.get("k_stderr")) if st else fmt.NA,
                fmt.exponent(st.get("k_eq10")) if st else fmt.NA,
                fmt.exponent(st.get("k_fokker_planck")) if st else fmt.NA,
                fmt.plus_minus(th.get("exponent"), th.get("exponent_stderr")),
            ]
        )
    return Table(
        "Measured vs predicted, per case (± one standard error)",
        [
            "case",
            "g",
            "thermophoretic J: meas / Eq. 10",
            "meas / FP",
            "diffusive J: meas / Eq. 10",
            "meas / FP",
            "k fitted",
            "k Eq. 10",
            "k FP",
            "η exponent (Eq. 10: 2)",
        ],
        rows,
    )


def _drift(sec: Section, exp: Experiment, folder: Path, margin: float | None = None) -> None:
    rep = read_json(folder / "drift.json") or {}
    settings = rep.get("settings") or {}
    sec.config = pretty_json(settings)
    sec.run = settings_rows(settings)
    fits = rep.get("fits") or {}
    for key, what in _DRIFT:
        fit = fits.get(key)
        for exp_key, sym, over in (("alpha", "α", "lr"), ("beta", "β", "batch_size")):
            label = f"{what}: {SYMBOL[over]} exponent {sym}"
            if not isinstance(fit, dict) or number(fit.get(exp_key)) is None:
                sec.claims.append(
                    Claim(label, f"{sym} = {fmt.sig(PAPER_EXPONENT[over])}", fmt.NA, NOT_MEASURED, "not in this run")
                )
                continue
            ci = fit.get(f"{exp_key}_ci") or [None, None]
            j = judge_exponent(
                PAPER_EXPONENT[over],
                number(ci[0]),
                number(ci[1]) if len(ci) > 1 else None,
                margin=DEFAULT_MARGIN if margin is None else margin,
            )
            sec.claims.append(
                claim_of(
                    label,
                    f"{sym} = {fmt.sig(PAPER_EXPONENT[over])}",
                    f"{sym} = {fmt.estimate(fit[exp_key], *ci[:2])}",
                    j,
                )
            )
        if isinstance(fit, dict) and fit.get("sign") is not None:
            frac = number(fit.get("valid_fraction"))
            negative = fit.get("sign") == -1
            sec.claims.append(
                claim_of(
                    f"{what}: direction",
                    "downward",
                    f"{'downward' if negative else 'upward'} ({fmt.percent(frac)} of bootstrap draws)",
                    judge_sign(fit.get("sign"), frac, FALLS),
                )
            )
    rows = []
    for key, fit in fits.items():
        if not isinstance(fit, dict):
            continue
        rows.append(
            [
                key,
                fmt.exponent(fit.get("alpha")),
                fmt.interval(*(fit.get("alpha_ci") or [None, None])[:2]),
                fmt.exponent(fit.get("beta")),
                fmt.interval(*(fit.get("beta_ci") or [None, None])[:2]),
                {1: "+", -1: "−"}.get(fit.get("sign"), fmt.NA),  # type: ignore[arg-type]
                fmt.percent(fit.get("valid_fraction")),
            ]
        )
    if rows:
        sec.tables.append(
            Table(
                "Scaling |drift| ∝ η^α |B|^(−β) (paper: α = 2, β = 1); *_predicted rows fit the "
                "paper's Eq. 27 on the same grid",
                ["quantity", "α", "95% CI", "β", "95% CI", "sign", "bootstrap draws with one sign"],
                rows,
            )
        )
    sec.reading += [str(n) for n in rep.get("notes", [])]


def _equal_error(sec: Section, exp: Experiment, folder: Path, margin: float | None = None) -> None:
    rep = read_json(folder / "equal_error.json") or {}
    settings = rep.get("settings") or {}
    sec.config = pretty_json(settings)
    sec.run = settings_rows(settings)
    target = rep.get("target")
    if target is not None:
        sec.run.append(
            ("equal error", f"first recorded step with training {rep.get('metric', 'error')} ≤ {fmt.sig(target)}")
        )
    for pair in rep.get("pairs") or []:
        if not isinstance(pair, dict):
            continue
        lr1, lr2 = fmt.sig(pair.get("lr1")), fmt.sig(pair.get("lr2"))
        for q, key, frac in (
            ("activation rate", "sigma1_minus_sigma2", "frac_sigma1_ge_sigma2"),
            ("‖V‖", "v1_minus_v2", "frac_v1_ge_v2"),
        ):
            diff, se = number(pair.get(key)), number(pair.get(key + "_se"))
            label = f"{q} at η = {lr1} > at η = {lr2}"
            if diff is None:
                sec.claims.append(Claim(label, "difference > 0", fmt.NA, NOT_MEASURED, "not in this run"))
                continue
            measured = (
                f"difference {fmt.signed(diff)} ± {fmt.sig(se, 2)}; "
                f"{fmt.percent(pair.get(frac))} of {pair.get('seeds', '?')} seeds"
            )
            sec.claims.append(claim_of(label, "difference > 0", measured, judge_difference(diff, se, RISES)))
    rows = []
    for r in rep.get("rows") or []:
        if isinstance(r, dict):
            rows.append(
                [
                    fmt.sig(r.get("lr")),
                    f"{r.get('reached', '?')}/{r.get('seeds', '?')}",
                    pm_sig(r, "step"),
                    pm_sig(r, "lr_times_step"),
                    pm_sig(r, "activation_rate"),
                    pm_sig(r, "v_norm"),
                    pm_sig(r, "test_error"),
                ]
            )
    if rows:
        sec.tables.append(
            Table(
                "At the first recorded step with equal training error (mean ± s.e. over seeds)",
                ["η", "reached", "step t*", "η·t*", "activation rate", "‖V‖", "test error"],
                rows,
            )
        )


def _generalization(sec: Section, exp: Experiment, folder: Path, margin: float | None = None) -> None:
    rep = read_json(folder / "generalization.json") or {}
    settings = rep.get("settings") or {}
    sec.config = pretty_json(settings)
    sec.run = settings_rows(settings)
    cells = (rep.get("correlations") or {}).get("cells") or {}
    for key, label, expect in (
        ("activation_rate~eta2_over_B", "activation rate falls as η²/|B| grows", -1),
        ("test_accuracy~activation_rate", "test accuracy rises as the activation rate falls", -1),
        ("test_accuracy~v_norm", "test accuracy rises as ‖V‖ falls", -1),
    ):
        c = cells.get(key)
        if not isinstance(c, dict) or number(c.get("rho")) is None:
            sec.claims.append(Claim(label, "Spearman ρ < 0", fmt.NA, NOT_MEASURED, "not in this run"))
            continue
        rho, p = float(c["rho"]), number(c.get("p"))
        measured = f"ρ = {fmt.signed(rho, 2)}, p = {fmt.sig(p, 2)}, over {c.get('n', '?')} (η, |B|) cells"
        sec.claims.append(claim_of(label, "Spearman ρ < 0", measured, judge_correlation(rho, p, expect)))
    rows = []
    for r in rep.get("rows") or []:
        if isinstance(r, dict):
            rows.append(
                [
                    fmt.sig(r.get("lr")),
                    str(r.get("batch_size", "?")),
                    fmt.sig(r.get("eta2_over_B")),
                    pm_sig(r, "test_accuracy"),
                    pm_sig(r, "train_accuracy"),
                    pm_sig(r, "activation_rate"),
                    pm_sig(r, "v_norm"),
                ]
            )
    if rows:
        step = rep.get("step")
        sec.tables.append(
            Table(
                f"Final values{f' after {step} steps' if step else ''} (mean ± s.e. over seeds)",
                ["η", "|B|", "η²/|B|", "test accuracy", "train accuracy", "activation rate", "‖V‖"],
                rows,
            )
        )
    corr = []
    for over, pairs in (rep.get("correlations") or {}).items():
        for key, c in (pairs or {}).items():
            if isinstance(c, dict):
                corr.append(
                    [
                        over,
                        key.replace("~", " ~ "),
                        fmt.signed(c.get("rho"), 2),
                        fmt.sig(c.get("p"), 2),
                        str(c.get("n", "?")),
                    ]
                )
    if corr:
        sec.tables.append(Table("Spearman rank correlations", ["over", "pair", "ρ", "p", "n"], corr))


def _generic(sec: Section, exp: Experiment, folder: Path, margin: float | None = None) -> None:
    """An experiment this report knows only by its folder: its JSON's verdicts, tables and figures."""
    config = read_json(folder / "config.json")
    data = read_json(folder / f"{exp.key}.json") or {}
    sec.config = pretty_json(config if config is not None else data.get("settings", {}))
    sec.run = settings_rows(data.get("settings") or {})
    for metric, fit in (data.get("collapse") or {}).items():
        over = (fit or {}).get("over", "lr") if isinstance(fit, dict) else "lr"
        label = f"{METRIC.get(metric, metric)}: {SYMBOL.get(over, over)} exponent"
        sec.claims.append(fit_claim(label, fit, over, margin=margin))
    sec.claims += _judged_rows(data)
    verdict = data.get("verdict")
    if isinstance(verdict, str) and verdict:
        sec.notes.append(verdict)
    elif isinstance(verdict, list):
        sec.notes += [str(v) for v in verdict]


def _judged_rows(data: dict) -> list[Claim]:
    """The rows analysis already judged (``analysis.mechanism``'s claims; the SDE limit's l_max vs l = 1 per
    setting), formatted: the mechanism's claims stand in the summary as rows of their own."""
    rows = []
    for c in data.get("claims") or []:
        if isinstance(c, dict):
            label = f"{c.get('setting', '')}: {c.get('statement', c.get('claim', ''))}"
            if isinstance(c.get("paper"), str):  # a row that states its expectation itself (hessian-bound)
                rows.append(_judged_row(label, c["paper"], c))
                continue
            paper = "CI > 0" if c.get("rule") == "difference" else "|diff| ≤ margin"
            rows.append(_judged_row(label, f"{c.get('compared', '')}: {paper}", c))
    for setting, entries in (data.get("results") or {}).items() if data.get("preset") == "sde-limit" else ():
        for e in entries if isinstance(entries, list) else ():
            v = e.get("versus") if isinstance(e, dict) else None
            if isinstance(v, dict):
                label = f"{setting}, η = {fmt.sig(v.get('value'))}: activation-rate fall, l = {v.get('l')} vs l = 1"
                rows.append(_judged_row(label, "|diff| ≤ margin", v))
    return rows


def _judged_row(label: str, paper: str, c: dict) -> Claim:
    status = str(c["status"]) if c.get("status") in VERDICTS else NOT_MEASURED
    measured = c.get("measured")
    if not isinstance(measured, str):
        measured = f"{fmt.signed(c.get('difference'))} {fmt.sig_interval(c.get('ci_low'), c.get('ci_high'))}"
    return Claim(label, paper, measured, status, str(c.get("reason", "")))
