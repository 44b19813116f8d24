"""Read a runs folder (what ``thermosgd reproduce`` writes) into section records.

Each result folder is recognised by what it holds (``.thermosgd-run.json``,
``config.json``, ``walk_report.json``, ...) and read tolerantly: a field that a
run did not write shows as "not measured", never as an error. Experiments of
the paper with no folder get a "not measured" section saying how to run them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import os
import platform
import re
from importlib import metadata
from pathlib import Path

import numpy as np

from thermosgd import fmt, presets
from thermosgd.report.catalogue import Experiment, by_key, experiments, preset_of
from thermosgd.report.records import (
    AGREES,
    DISAGREES,
    INCONCLUSIVE,
    NOT_MEASURED,
    Claim,
    Collapse,
    Figure,
    Report,
    Section,
    Table,
)

__all__ = ["collect", "identify", "classify_interval", "fit_claim", "collapse_data", "environment", "markdown_tables",
           "WALL_TIME"]

_SYMBOL = {"lr": "η", "batch_size": "|B|"}
_EXPONENT = presets.EXPONENT_SYMBOL
_PAPER_EXPONENT = presets.PAPER_EXPONENT
_METRIC = {"activation_rate": "activation rate", "v_norm": "‖V‖", "bias_mean": "mean b", "loss": "loss",
           "grad_var": "gradient variance", "error": "error", "w_norm": "‖W‖"}
_Z95 = 1.959964  # two-sided 95% normal quantile: "agrees" = within 1.96 standard errors
_MAX_POINTS = 300  # per interactive curve
WALL_TIME = ".thermosgd-wall.json"  # written by thermosgd.reproduce after each run
# The comparisons of the experiments without a swept exponent, for their "not measured" rows.
_WALK_CLAIMS = (("thermophoretic flux, measured / Eq. 10", "1"), ("η exponent of the thermophoretic flux", "2"),
                ("diffusive flux, measured / Eq. 10", "1"), ("stationary density ρ ∝ g^(−k): k", "1 (Eq. 10)"))
_DRIFT = (("b_early", "drift of b (early window)"), ("V2_shift_early", "drift of V², mean-shift part (early window)"))
_EXPECTED = {
    "walk": _WALK_CLAIMS,
    "drift": tuple((f"{what}: {_SYMBOL[o]} exponent {_EXPONENT[o]}", f"{_EXPONENT[o]} = {fmt.sig(_PAPER_EXPONENT[o])}")
                   for _, what in _DRIFT for o in ("lr", "batch_size")),
    "equal-error": (("activation rate at the smaller η ≥ at the larger η", "difference ≥ 0"),
                    ("‖V‖ at the smaller η ≥ at the larger η", "difference ≥ 0")),
    "generalization": (("activation rate falls as η²/|B| grows", "Spearman ρ < 0"),
                       ("test accuracy rises as the activation rate falls", "Spearman ρ < 0"),
                       ("test accuracy rises as ‖V‖ falls", "Spearman ρ < 0")),
}


def collect(runs_dir: str | os.PathLike) -> Report:
    """Read every result folder under ``runs_dir`` into a :class:`Report`.

    Args:
        runs_dir: a folder of result folders (``runs/``), or one result folder.

    Returns:
        Sections in the paper's order: one per result folder found, plus a
        "not measured" section for each experiment of the paper without one
        (none when ``runs_dir`` is itself one result folder).
    """
    runs_dir = Path(runs_dir)
    found: dict[str, list[Path]] = {}
    unrecognized = []
    single = identify(runs_dir) is not None  # one result folder: its section only
    folders = [runs_dir] if single else sorted(p for p in runs_dir.iterdir() if p.is_dir())
    for folder in folders:
        key = identify(folder)
        if key is None:
            if not folder.name.startswith("."):
                unrecognized.append(folder.name)
            continue
        found.setdefault(key, []).append(folder)
    sections, used_ids = [], set()
    for exp in experiments():
        for folder in found.get(exp.key, []):
            sections.append(_section(exp, folder, runs_dir, used_ids))
        if exp.key not in found and not exp.optional and not single:
            sections.append(_missing(exp, runs_dir, used_ids))
    return Report(runs_dir=str(runs_dir), generated=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                  sections=sections, environment=environment(), unrecognized=unrecognized)


# ---------------------------------------------------------------------------- which experiment is this folder?


def identify(folder: Path) -> str | None:
    """The experiment key of a result folder, or None if it holds no known results."""
    marker = _json(folder / ".thermosgd-run.json") or {}
    if by_key(str(marker.get("experiment", ""))):
        return marker["experiment"]
    config = _json(folder / "config.json") or {}
    summary = _json(folder / "summary.json") or {}
    for name in (config.get("preset"), summary.get("experiment"), summary.get("preset")):
        key = _experiment_of(name)
        if key:
            return key
    for file, key in (("walk_report.json", "walk"), ("drift.json", "drift"), ("equal_error.json", "equal-error"),
                      ("generalization.json", "generalization"), ("mechanism.json", "mechanism")):
        if (folder / file).exists():
            return key
    if "model" in config and "train" in config:  # a two-layer sweep: by folder name, else by its grid
        return _experiment_of(folder.name) or _twolayer_by_config(config)
    return None


def _experiment_of(name) -> str | None:
    if not name:
        return None
    if by_key(name):
        return name
    for exp in experiments():
        if name in exp.figures or name == exp.name:
            return exp.key
    return None


def _twolayer_by_config(config: dict) -> str | None:
    """Match a sweep's model, inputs and grid against the two-layer presets."""
    model, data, train = config.get("model", {}), config.get("data", {}), config.get("train", {})
    for p in presets.PRESETS.values():
        raw = p.params
        if p.kind != "twolayer" or not raw:
            continue
        pm, pd, pt = raw.get("model", {}), raw.get("data", {}), raw.get("train", {})
        same = (all(model.get(k) == v for k, v in pm.items()) and data.get("inputs") == pd.get("inputs")
                and [float(x) for x in train.get("lr", [])] == [float(x) for x in pt.get("lr", [])]
                and [int(x) for x in train.get("batch_size", [])] == [int(x) for x in pt.get("batch_size", [])])
        if same:
            return _experiment_of(p.name)
    return None


# ---------------------------------------------------------------------------- sections


def _section(exp: Experiment, folder: Path, runs_dir: Path, used_ids: set) -> Section:
    sec = Section(id=_unique_id(folder.name if folder != runs_dir else exp.name, used_ids), experiment=exp.key,
                  name=exp.name, title=exp.title, claim=exp.claim, source=exp.source, folder=str(folder),
                  measured=True)
    reader = {"walk": _walk, "drift": _drift, "equal-error": _equal_error, "generalization": _generalization,
              "mechanism": _generic}.get(exp.key) or {"twolayer": _twolayer, "deep": _deep}.get(exp.kind, _generic)
    try:
        reader(sec, exp, folder)
    except Exception as exc:  # noqa: BLE001 - one unreadable folder must not take the page down
        sec.notes.append(f"This folder could not be read completely ({type(exc).__name__}: {exc}); "
                         "what is shown is what could be read.")
    if not sec.claims:
        sec.claims.append(Claim("the paper's claim", "", fmt.NA, NOT_MEASURED, "no measured value in this folder"))
    sec.figures = _figures(folder)
    sec.details += _markdown_details(folder)
    sec.wall_time = _recorded_wall_time(folder) or sec.wall_time or _wall_time(folder)
    sec.machine = _recorded_machine(folder)
    if not sec.command:
        sec.command = _command(exp, folder)
    return sec


def _missing(exp: Experiment, runs_dir: Path, used_ids: set) -> Section:
    needs = ""
    if exp.key in ("fig2-bottom",):
        needs = " (needs the Fashion-MNIST IDX files in --data-dir, or --substitute-digits)"
    elif exp.key in ("fig11", "fig12", "fig13", "fig14"):
        needs = " (needs the CIFAR-10 binary files in --data-dir, or --substitute-digits)"
    out = runs_dir / exp.name
    sec = Section(id=_unique_id(exp.name, used_ids), experiment=exp.key, name=exp.name, title=exp.title,
                  claim=exp.claim, source=exp.source, measured=False,
                  command=f"thermosgd reproduce {exp.name} --out {out}")
    why = f"not run: no results folder{needs}"
    for name in exp.figures:
        p = preset_of(name)
        if p is not None and p.over in _SYMBOL:
            sec.claims.append(Claim(_exponent_label(p.metric, p.over, name), f"{_EXPONENT[p.over]} = "
                                    f"{fmt.sig(_PAPER_EXPONENT[p.over])}", "not run", NOT_MEASURED, why))
    for label, paper in _EXPECTED.get(exp.key, ()):
        sec.claims.append(Claim(label, paper, "not run", NOT_MEASURED, why))
    if not sec.claims:
        sec.claims.append(Claim("the paper's claim", "", "not run", NOT_MEASURED, why))
    sec.notes.append(f"No results for this experiment under {runs_dir}{needs}. "
                     f"Run `{sec.command}`, then `thermosgd report {runs_dir}`.")
    return sec


def _twolayer(sec: Section, exp: Experiment, folder: Path) -> None:
    config = _json(folder / "config.json") or {}
    summary = _json(folder / "summary.json") or {}
    train = config.get("train", {})
    over = summary.get("over") or ("batch_size" if len(train.get("batch_size", [])) > 1 else "lr")
    sec.config = _pretty(config)
    sec.run = _twolayer_run(config, summary)
    seeds, steps = _count(train.get("seeds")), train.get("steps")
    smoke = bool(seeds is not None and seeds <= 2) or bool(steps is not None and steps <= 100)
    if smoke:
        sec.notes.append("Smoke-test size (few seeds or steps): the verdicts below are not for conclusions.")
    fits = summary.get("collapse") or {}
    verdicts = _verdicts(summary)
    metrics = []
    for name in exp.figures:
        metric = _preset_metric(name)
        if metric and metric not in metrics:
            metrics.append(metric)
    metrics += [m for m in [*fits, *verdicts] if m not in metrics]
    for metric in metrics:
        figure = next((f for f in exp.figures if _preset_metric(f) == metric), None)
        sec.claims.append(fit_claim(_exponent_label(metric, over, figure), fits.get(metric), over, summary,
                                    verdicts.get(metric)))
    if summary.get("metrics"):
        sec.tables.append(_initial_final(summary, over))
    sec.collapses += _collapses(sec, folder, metrics, over, fits)
    if not summary:
        sec.notes.append("summary.json is missing: the sweep has not finished or was run with `thermosgd sweep`; "
                         "run `thermosgd reproduce` on it to fit the exponents.")
    if seeds is not None and steps is not None:
        sec.command = f"thermosgd reproduce {exp.name} --seeds {seeds} --steps {steps} --out {folder}"


def _twolayer_run(config: dict, summary: dict) -> list[tuple[str, str]]:
    model, data, train = config.get("model", {}), config.get("data", {}), config.get("train", {})
    rows = []
    if model:
        bias = "with bias" if model.get("bias") else "no bias"
        rows.append(("model", f"two-layer ReLU net, {model.get('inputs')} inputs × {model.get('hidden')} hidden, "
                              f"{bias}, init {model.get('init', '?')} (scale {model.get('init_scale', 1)})"))
    if data:
        inputs = {"gaussian": "Gaussian N(0, I) inputs", "uniform": "U(0,1) inputs"}.get(data.get("inputs"),
                                                                                          f"{data.get('inputs')} inputs")
        size = "online (fresh samples every step)" if not data.get("train_size") else \
            f"finite training set of {data.get('train_size')}"
        rows.append(("data", f"{inputs}, {data.get('labels', '?')} labels, {size}"))
    if train:
        rows.append(("loss", str(train.get("loss", "?"))))
        rows.append(("η", ", ".join(f"{v:g}" for v in train.get("lr", []))))
        rows.append(("|B|", ", ".join(str(v) for v in train.get("batch_size", []))))
        rows.append(("seeds", str(_count(train.get("seeds")))))
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
    text = {"sgd": "SGD: minibatch of |B| samples",
            "gd": f"GD control: mean gradient over {train.get('gd_batch', '?')} samples",
            "gaussian": "Gaussian noise with SGD's parameter-dependent covariance",
            "frozen": "Gaussian noise with the covariance frozen at initialization"}.get(noise, str(noise))
    return text


def fit_claim(label: str, fit: dict | None, over: str, summary: dict | None = None,
              verdict: dict | None = None) -> Claim:
    """A collapse fit as a claim row.

    Args:
        label: what was fitted.
        fit: the fit's dict (``CollapseFit.to_dict()``); None when no fit was made.
        over: ``"lr"`` or ``"batch_size"``.
        summary: the run's summary (its ``diverged`` count, when there is no verdict record).
        verdict: the run's verdict record (``Verdict.to_dict()``); preferred, as it names
            the replicas left out per swept value.
    """
    v = verdict if isinstance(verdict, dict) else {}
    if isinstance(v.get("fit"), dict):
        fit = v["fit"]
    f = fit if isinstance(fit, dict) else {}
    sym = _EXPONENT.get(over, "exponent")
    predicted = next((_num(x) for x in (v.get("paper"), f.get("predicted"), _PAPER_EXPONENT.get(over))
                      if _num(x) is not None), None)
    paper = f"{sym} = {fmt.sig(predicted)}" if predicted is not None else fmt.NA
    detail, short = _left_out(v, f, summary or {}, over)
    exponent = _num(v.get("exponent", f.get("exponent")))
    lo, hi = v.get("ci_low", f.get("ci_low")), v.get("ci_high", f.get("ci_high"))
    if exponent is None:
        why = str(v.get("note") or f.get("reason") or "no collapse fit (needs ≥ 2 swept values and ≥ 2 seeds)")
        return Claim(label, paper, fmt.NA, NOT_MEASURED, "; ".join(filter(None, [why, detail])), short)
    measured = f"{sym} = {fmt.exponent(exponent)} {fmt.interval(lo, hi)}"
    verdict_word, why = classify_interval(predicted, lo, hi, f.get("bounds"))
    if verdict_word == NOT_MEASURED and v.get("note"):
        why = str(v["note"])
    level = _num(f.get("ci_level"))
    if level is not None:
        why = why.replace("the CI", f"the {fmt.fixed(100 * level, 0)}% CI", 1)
    return Claim(label, paper, measured, verdict_word, "; ".join(filter(None, [why, detail])), short)


def classify_interval(predicted, low, high, bounds=None) -> tuple[str, str]:
    """Verdict of a paper value against a confidence interval.

    Returns:
        ``(verdict, reason)``: "agrees" when the value lies inside ``[low, high]``,
        "disagrees" when outside, "inconclusive" when inside but the interval
        runs to a search bound (the data barely constrain the value), "not
        measured" when the interval is missing.
    """
    p, lo, hi = _num(predicted), _num(low), _num(high)
    if p is None or lo is None or hi is None:
        return NOT_MEASURED, "no confidence interval"
    if not lo <= p <= hi:
        gap = lo - p if p < lo else p - hi
        return DISAGREES, f"the paper's value lies outside the CI (by {fmt.exponent(gap)})"
    if bounds and len(bounds) == 2 and None not in bounds and (
            lo <= float(bounds[0]) + 1e-9 or hi >= float(bounds[1]) - 1e-9):
        return INCONCLUSIVE, (f"the CI reaches the search bound {fmt.interval(*bounds)}: "
                              "the curves barely constrain the exponent")
    return AGREES, "the paper's value lies inside the CI"


def _left_out(verdict: dict, fit: dict, summary: dict, over: str) -> tuple[str, str]:
    """Replicas left out of the fit: ``(per swept value with why, short count)``, as far as the records say."""
    sym = _SYMBOL.get(over, over)
    kept = bool(verdict.get("included_diverged"))
    rows = verdict.get("left_out", fit.get("left_out"))
    if isinstance(rows, dict):  # {value: count} or {value: {count, of, reason}}
        rows = [{"value": k, **(x if isinstance(x, dict) else {"count": x})} for k, x in rows.items()]
    if isinstance(rows, list):
        parts, total = [], 0
        for r in rows:
            if not isinstance(r, dict):
                continue
            count, of = r.get("count"), r.get("of", r.get("total"))
            total += count if isinstance(count, int) else 0
            when = f" from step ~{r['median_step']}" if r.get("median_step") is not None else ""
            load = (f", η·E‖x‖² ≈ {fmt.sig(r['step_size_load'])}"
                    if _num(r.get("step_size_load")) is not None else "")
            why = f" ({r['reason']}{load})" if r.get("reason") else ""
            value = fmt.sig(r["value"]) if _num(r.get("value")) is not None else str(r.get("value"))
            parts.append(f"{sym} = {value}: {count}/{of if of is not None else '?'}{when}{why}")
        if parts:
            verb = "kept (--include-diverged)" if kept else "left out"
            short = f"{total} diverged replica{'s' if total != 1 else ''} kept" if kept else \
                f"{total} replica{'s' if total != 1 else ''} left out"
            return f"{verb}: " + "; ".join(parts), short
        if verdict:
            return "", ""
    diverged = summary.get("diverged")
    if isinstance(diverged, int) and diverged > 0:
        return f"{diverged} diverged replica(s) left out", f"{diverged} replica{'s' if diverged != 1 else ''} left out"
    return "", ""


def _verdicts(summary: dict) -> dict:
    """The run's verdict records by metric (``summary.json`` ``verdicts``), if it has them."""
    rows = summary.get("verdicts")
    return {v["metric"]: v for v in rows if isinstance(v, dict) and v.get("metric")} if isinstance(rows, list) else {}


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
    return Table("Seed mean at the first and last recorded step (non-diverged replicas)",
                 [_SYMBOL.get(over, over)] + [_METRIC.get(m, m) for m in metrics], rows)


def _deep(sec: Section, exp: Experiment, folder: Path) -> None:
    config = _json(folder / "config.json") or {}
    summary = _json(folder / "summary.json") or {}
    over = config.get("over", "lr")
    sec.config = _pretty(config)
    dataset = config.get("dataset", "?")
    if config.get("substitute") or (config.get("dataset_paper") and config.get("dataset_paper") != dataset):
        sec.notes.append(f"Substitute data: {dataset} instead of the paper's {config.get('dataset_paper')}. "
                         "This tests the mechanism on other data, not the paper's figure.")
    if config.get("tiny"):
        sec.notes.append("Smoke-test size (--quick): not for conclusions.")
    sec.run = [(k, v) for k, v in (
        ("model", f"{config.get('model', '?')} (width {config.get('width', '?')})"),
        ("data", f"{dataset}" + (", online (fresh samples every step)" if config.get("online") else
                                 f", {config['n_train']} training samples" if config.get("n_train") else "")),
        ("labels", str(config.get("labels", "?"))),
        ("η", ", ".join(f"{v:g}" for v in config.get("lrs", []))),
        ("|B|", ", ".join(str(v) for v in config.get("batch_sizes", []))),
        ("seeds", str(config.get("seeds", "?"))),
        ("steps", str(config.get("steps", "?"))),
        ("noise model", str(config.get("optimizer", "plain SGD"))),
    )]
    metrics = [m for m in [_preset_metric(exp.name)] if m] or list(config.get("figures") or [])
    fits = summary.get("collapse") or {}
    verdicts = _verdicts(summary)
    metrics += [m for m in [*fits, *verdicts] if m not in metrics]
    for metric in metrics:
        claim = fit_claim(_exponent_label(metric, over, exp.name), fits.get(metric), over, summary,
                          verdicts.get(metric))
        if metric not in fits and not summary:
            claim.note = "no fitted exponent in this run (summary.json absent)"
        sec.claims.append(claim)
    if summary.get("metrics"):
        sec.tables.append(_initial_final(summary, over))
    sec.collapses += _collapses(sec, folder, metrics, over, fits)
    marker = _json(folder / ".thermosgd-run.json")
    if marker is None and config.get("seeds") and config.get("steps"):
        sec.command = f"thermosgd reproduce {exp.name} --seeds {config['seeds']} --steps {config['steps']} --out {folder}"


def _walk(sec: Section, exp: Experiment, folder: Path) -> None:
    rep = _json(folder / "walk_report.json") or {}
    cases = [c for c in rep.get("cases", []) if isinstance(c, dict)]
    if _num(rep.get("seconds")) is not None:
        sec.wall_time = f"{fmt.fixed(rep['seconds'], 1)} s"
    sec.config = _pretty({k: v for k, v in rep.items() if k not in ("cases", "seconds", "files")}
                         | {"cases": [{k: c.get(k) for k in ("name", "g", "dim", "shared", "noise", "point")}
                                      for c in cases]})
    first = cases[0] if cases else {}
    stat = first.get("stationary") or {}
    sec.run = [("size", "quick (seconds)" if rep.get("quick") else "default"), ("seed", str(rep.get("seed", "?"))),
               ("cases", "; ".join(f"{c.get('name')}: g = {c.get('g')}, {c.get('dim')}-D" for c in cases)),
               ("noise ζ", ", ".join(sorted({f"{c.get('noise')}, " + ("shared by all coordinates" if c.get("shared")
                                                                        else "independent per coordinate")
                                             for c in cases}))),
               ("η (flux)", fmt.sig((first.get("thermophoretic") or {}).get("main", {}).get("eta"))),
               ("stationary run", f"{stat.get('particles', '?')} particles × {stat.get('steps', '?')} steps"
                                  f" at η = {fmt.sig(stat.get('eta'))}")]
    sec.reading.append("Verdicts: the measured value agrees when the prediction lies within 1.96 standard "
                       "errors (95%); FP = Fokker–Planck (Itô) limit of the same walk, not from the paper.")

    def ratio(d, key="ratio_eq10"):
        d = d or {}
        return d.get(key), d.get(key + "_stderr")

    def items(group):
        return [
            [(c.get("name"), *ratio((c.get("thermophoretic") or {}).get("main")), 1.0) for c in group],
            [(c.get("name"), (c.get("thermophoretic") or {}).get("exponent"),
              (c.get("thermophoretic") or {}).get("exponent_stderr"),
              (c.get("thermophoretic") or {}).get("exponent_eq10", 2.0)) for c in group],
            [(c.get("name"), *ratio(c.get("diffusive")), 1.0) for c in group],
            [(c.get("name"), (c.get("stationary") or {}).get("k_fit"), (c.get("stationary") or {}).get("k_stderr"),
              (c.get("stationary") or {}).get("k_eq10")) for c in group if c.get("stationary")],
        ]

    # One claim per dimension: a 1-D result should not be judged together with a 2-D one.
    dims = sorted({c.get("dim") for c in cases}, key=str) or [None]
    for k, (label, paper) in enumerate(_WALK_CLAIMS):
        for dim in dims:
            group = [c for c in cases if c.get("dim") == dim]
            rows = items(group)[k]
            if not rows and len(dims) > 1:
                continue
            tag = f" ({dim}-D)" if len(dims) > 1 else ""
            sec.claims.append(_pooled_claim(label + tag, paper, rows))
    rows = []
    for c in cases:
        th, di, st = (c.get("thermophoretic") or {}), (c.get("diffusive") or {}), (c.get("stationary") or {})
        main = th.get("main") or {}
        rows.append([str(c.get("name")), str(c.get("g")),
                     fmt.plus_minus(*ratio(main)), fmt.plus_minus(*ratio(main, "ratio_fokker_planck")),
                     fmt.plus_minus(*ratio(di)), fmt.plus_minus(*ratio(di, "ratio_fokker_planck")),
                     fmt.plus_minus(st.get("k_fit"), st.get("k_stderr")) if st else fmt.NA,
                     fmt.exponent(st.get("k_eq10")) if st else fmt.NA,
                     fmt.exponent(st.get("k_fokker_planck")) if st else fmt.NA,
                     fmt.plus_minus(th.get("exponent"), th.get("exponent_stderr"))])
    sec.tables.append(Table(
        "Measured vs predicted, per case (± one standard error)",
        ["case", "g", "thermophoretic J: meas / Eq. 10", "meas / FP", "diffusive J: meas / Eq. 10", "meas / FP",
         "k fitted", "k Eq. 10", "k FP", "η exponent (Eq. 10: 2)"], rows))
    marker = _json(folder / ".thermosgd-run.json") or {}
    sec.command = f"thermosgd reproduce walk{' --quick' if marker.get('quick', rep.get('quick')) else ''} --out {folder}"


def _pooled_claim(label: str, paper: str, items) -> Claim:
    """One claim over several cases: value ± s.e. against a prediction, per case."""
    parts, verdicts = [], []
    for name, value, err, predicted in items:
        v, e, p = _num(value), _num(err), _num(predicted)
        if v is None:
            continue
        parts.append(f"{name} {fmt.plus_minus(v, e)}")
        if p is None or e is None:
            verdicts.append(INCONCLUSIVE)
        else:
            verdicts.append(AGREES if abs(v - p) <= _Z95 * e else DISAGREES)
    if not parts:
        return Claim(label, paper, fmt.NA, NOT_MEASURED, "not in this run")
    if DISAGREES in verdicts:
        bad = [p.split(" ")[0] for p, v in zip(parts, verdicts) if v == DISAGREES]
        return Claim(label, paper, "; ".join(parts), DISAGREES, "off the prediction by more than 1.96 s.e. in: "
                     + ", ".join(bad))
    verdict = AGREES if all(v == AGREES for v in verdicts) else INCONCLUSIVE
    return Claim(label, paper, "; ".join(parts), verdict, "within 1.96 s.e. of the prediction in every case"
                 if verdict == AGREES else "no standard error for some cases")


def _drift(sec: Section, exp: Experiment, folder: Path) -> None:
    rep = _json(folder / "drift.json") or {}
    settings = rep.get("settings") or {}
    sec.config = _pretty(settings)
    sec.run = _settings_rows(settings)
    fits = rep.get("fits") or {}
    for key, what in _DRIFT:
        fit = fits.get(key)
        for exp_key, sym, over in (("alpha", "α", "lr"), ("beta", "β", "batch_size")):
            label = f"{what}: {_SYMBOL[over]} exponent {sym}"
            if not isinstance(fit, dict) or _num(fit.get(exp_key)) is None:
                sec.claims.append(Claim(label, f"{sym} = {fmt.sig(_PAPER_EXPONENT[over])}", fmt.NA,
                                        NOT_MEASURED, "not in this run"))
                continue
            ci = fit.get(f"{exp_key}_ci") or [None, None]
            verdict, why = classify_interval(_PAPER_EXPONENT[over], *ci[:2])
            sec.claims.append(Claim(label, f"{sym} = {fmt.sig(_PAPER_EXPONENT[over])}",
                                    f"{sym} = {fmt.exponent(fit[exp_key])} {fmt.interval(*ci[:2])}", verdict, why))
        if isinstance(fit, dict) and fit.get("sign") is not None:
            frac = _num(fit.get("valid_fraction"))
            negative = fit.get("sign") == -1
            sure = frac is not None and frac >= 0.95
            verdict = (AGREES if negative else DISAGREES) if sure else INCONCLUSIVE
            sec.claims.append(Claim(f"{what}: direction", "downward",
                                    f"{'downward' if negative else 'upward'} ({fmt.percent(frac)} of bootstrap draws)",
                                    verdict, "" if sure else "fewer than 95% of bootstrap draws share the sign"))
    rows = []
    for key, fit in fits.items():
        if not isinstance(fit, dict):
            continue
        rows.append([key, fmt.exponent(fit.get("alpha")), fmt.interval(*(fit.get("alpha_ci") or [None, None])[:2]),
                     fmt.exponent(fit.get("beta")), fmt.interval(*(fit.get("beta_ci") or [None, None])[:2]),
                     {1: "+", -1: "−"}.get(fit.get("sign"), fmt.NA), fmt.percent(fit.get("valid_fraction"))])
    if rows:
        sec.tables.append(Table("Scaling |drift| ∝ η^α |B|^(−β) (paper: α = 2, β = 1); *_predicted rows fit the "
                                "paper's Eq. 27 on the same grid",
                                ["quantity", "α", "95% CI", "β", "95% CI", "sign", "bootstrap draws with one sign"],
                                rows))
    sec.reading += [str(n) for n in rep.get("notes", [])]
    _analysis_command(sec, exp, folder)


def _equal_error(sec: Section, exp: Experiment, folder: Path) -> None:
    rep = _json(folder / "equal_error.json") or {}
    settings = rep.get("settings") or {}
    sec.config = _pretty(settings)
    sec.run = _settings_rows(settings)
    target = rep.get("target")
    if target is not None:
        sec.run.append(("equal error", f"first recorded step with training {rep.get('metric', 'error')} ≤ "
                                       f"{fmt.sig(target)}"))
    for pair in rep.get("pairs") or []:
        if not isinstance(pair, dict):
            continue
        lr1, lr2 = fmt.sig(pair.get("lr1")), fmt.sig(pair.get("lr2"))
        for q, key, frac in (("activation rate", "sigma1_minus_sigma2", "frac_sigma1_ge_sigma2"),
                             ("‖V‖", "v1_minus_v2", "frac_v1_ge_v2")):
            diff, se = _num(pair.get(key)), _num(pair.get(key + "_se"))
            label = f"{q} at η = {lr1} ≥ at η = {lr2}"
            if diff is None:
                sec.claims.append(Claim(label, "difference ≥ 0", fmt.NA, NOT_MEASURED, "not in this run"))
                continue
            measured = (f"difference {fmt.signed(diff)} ± {fmt.sig(se, 2)}; "
                        f"{fmt.percent(pair.get(frac))} of {pair.get('seeds', '?')} seeds")
            if se is None:
                verdict, why = INCONCLUSIVE, "no standard error"
            elif diff + _Z95 * se < 0:
                verdict, why = DISAGREES, "the difference is below 0 by more than 1.96 s.e."
            else:
                verdict, why = AGREES, "the difference is not significantly below 0 (1.96 s.e.)"
            sec.claims.append(Claim(label, "difference ≥ 0", measured, verdict, why))
    rows = []
    for r in rep.get("rows") or []:
        if isinstance(r, dict):
            rows.append([fmt.sig(r.get("lr")), f"{r.get('reached', '?')}/{r.get('seeds', '?')}",
                         _pm_sig(r, "step"), _pm_sig(r, "lr_times_step"), _pm_sig(r, "activation_rate"),
                         _pm_sig(r, "v_norm"), _pm_sig(r, "test_error")])
    if rows:
        sec.tables.append(Table("At the first recorded step with equal training error (mean ± s.e. over seeds)",
                                ["η", "reached", "step t*", "η·t*", "activation rate", "‖V‖", "test error"], rows))
    _analysis_command(sec, exp, folder)


def _generalization(sec: Section, exp: Experiment, folder: Path) -> None:
    rep = _json(folder / "generalization.json") or {}
    settings = rep.get("settings") or {}
    sec.config = _pretty(settings)
    sec.run = _settings_rows(settings)
    cells = (rep.get("correlations") or {}).get("cells") or {}
    for key, label, expect in (("activation_rate~eta2_over_B", "activation rate falls as η²/|B| grows", -1),
                               ("test_accuracy~activation_rate", "test accuracy rises as the activation rate falls",
                                -1),
                               ("test_accuracy~v_norm", "test accuracy rises as ‖V‖ falls", -1)):
        c = cells.get(key)
        if not isinstance(c, dict) or _num(c.get("rho")) is None:
            sec.claims.append(Claim(label, "Spearman ρ < 0", fmt.NA, NOT_MEASURED, "not in this run"))
            continue
        rho, p = float(c["rho"]), _num(c.get("p"))
        measured = f"ρ = {fmt.signed(rho, 2)}, p = {fmt.sig(p, 2)}, over {c.get('n', '?')} (η, |B|) cells"
        if p is None or p >= 0.05:
            verdict, why = INCONCLUSIVE, "not significant at the 5% level"
        else:
            verdict = AGREES if rho * expect > 0 else DISAGREES
            why = "significant at the 5% level"
        sec.claims.append(Claim(label, "Spearman ρ < 0", measured, verdict, why))
    rows = []
    for r in rep.get("rows") or []:
        if isinstance(r, dict):
            rows.append([fmt.sig(r.get("lr")), str(r.get("batch_size", "?")), fmt.sig(r.get("eta2_over_B")),
                         _pm_sig(r, "test_accuracy"), _pm_sig(r, "train_accuracy"), _pm_sig(r, "activation_rate"),
                         _pm_sig(r, "v_norm")])
    if rows:
        step = rep.get("step")
        sec.tables.append(Table(f"Final values{f' after {step} steps' if step else ''} (mean ± s.e. over seeds)",
                                ["η", "|B|", "η²/|B|", "test accuracy", "train accuracy", "activation rate", "‖V‖"],
                                rows))
    corr = []
    for over, pairs in (rep.get("correlations") or {}).items():
        for key, c in (pairs or {}).items():
            if isinstance(c, dict):
                corr.append([over, key.replace("~", " ~ "), fmt.signed(c.get("rho"), 2), fmt.sig(c.get("p"), 2),
                             str(c.get("n", "?"))])
    if corr:
        sec.tables.append(Table("Spearman rank correlations", ["over", "pair", "ρ", "p", "n"], corr))
    _analysis_command(sec, exp, folder)


def _generic(sec: Section, exp: Experiment, folder: Path) -> None:
    """An experiment this report knows only by its folder: its JSON's verdicts, tables and figures."""
    config = _json(folder / "config.json")
    data = _json(folder / f"{exp.key}.json") or {}
    sec.config = _pretty(config if config is not None else data.get("settings", {}))
    sec.run = _settings_rows(data.get("settings") or {})
    for metric, fit in (data.get("collapse") or {}).items():
        over = (fit or {}).get("over", "lr") if isinstance(fit, dict) else "lr"
        sec.claims.append(fit_claim(f"{_METRIC.get(metric, metric)}: {_SYMBOL.get(over, over)} exponent", fit, over))
    verdict = data.get("verdict")
    if isinstance(verdict, str) and verdict:
        sec.notes.append(verdict)
    elif isinstance(verdict, list):
        sec.notes += [str(v) for v in verdict]
    _analysis_command(sec, exp, folder)


def _analysis_command(sec: Section, exp: Experiment, folder: Path) -> None:
    run = _json(folder / ".thermosgd-run.json") or {}
    flags = " --quick" if run.get("quick") else ""
    for k in ("seeds", "steps"):
        if run.get(k):
            flags += f" --{k} {run[k]}"
    sec.command = f"thermosgd reproduce {exp.name}{flags} --out {folder}"


def _command(exp: Experiment, folder: Path) -> str:
    run = _json(folder / ".thermosgd-run.json") or {}
    flags = " --quick" if run.get("quick") else ""
    for k in ("seeds", "steps"):
        if run.get(k):
            flags += f" --{k} {run[k]}"
    if run.get("substitute_digits"):
        flags += " --substitute-digits"
    elif exp.key in ("fig2-bottom", "fig11", "fig12", "fig13", "fig14"):
        flags += " --data-dir DATA"
    return f"thermosgd reproduce {exp.name}{flags} --out {folder}"


# ---------------------------------------------------------------------------- interactive collapse data


def _collapses(sec: Section, folder: Path, metrics: list[str], over: str, fits: dict) -> list[Collapse]:
    path = folder / "results.nc"
    if not path.exists() or not metrics:
        return []
    import xarray as xr

    from thermosgd.analysis.collapse import default_reference, sweep_data

    out = []
    with xr.open_dataset(path) as ds:
        for metric in metrics:
            try:
                values, steps, raw, alive = sweep_data(ds, metric, over)
            except Exception:  # noqa: BLE001 - e.g. one swept value: nothing to collapse
                continue
            fit = fits.get(metric) if isinstance(fits.get(metric), dict) else {}
            reference = _num(fit.get("reference")) or float(default_reference(values))
            out.append(Collapse(
                id=f"collapse-{sec.id}-{metric}".replace("_", "-"),
                title=f"{_METRIC.get(metric, metric)} against t·({_SYMBOL[over]}/{reference:g})^"
                      f"{'' if over == 'lr' else '−'}{_EXPONENT[over]}",
                data=collapse_data(values, steps, raw, alive, over=over, metric=metric, reference=reference,
                                   fit=fit),
            ))
    return out


def collapse_data(values, steps, raw, alive, *, over: str, metric: str, reference: float, fit: dict | None) -> dict:
    """JSON-ready curves for the page: seed mean ± one standard error per swept value.

    Args:
        values: ``(K,)`` swept values, ascending.
        steps: ``(T,)`` recorded steps.
        raw: ``(K, S, T)`` metric per swept value, seed and step.
        alive: ``(K, S)`` replicas that enter the mean (not diverged, finite).
        over, metric, reference: the sweep and the rescaling's reference value.
        fit: the collapse fit's dict (exponent, interval, bounds), or None.

    Returns:
        The :class:`~thermosgd.report.records.Collapse` ``data`` dict; at most
        300 points per curve (log- and linearly-spaced steps, so both axis
        scales show the shape).
    """
    fit = fit or {}
    count = alive.sum(axis=1)
    keep = _thin(len(steps))
    colors = _colors(len(values))
    curves = []
    for k, value in enumerate(values):
        n = int(count[k])
        if n == 0:
            continue
        x = raw[k][alive[k]][:, keep]
        mean = x.mean(axis=0)
        se = x.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(mean)
        curves.append({"label": f"{_SYMBOL[over]} = {value:g}", "value": float(value), "color": colors[k],
                       "replicas": n, "t": _round(steps[keep]), "mean": _round(mean),
                       "lo": _round(mean - se), "hi": _round(mean + se)})
    bounds = fit.get("bounds") or [-2.0, 5.0]
    return {"over": over, "symbol": _SYMBOL[over], "exponent_symbol": _EXPONENT[over], "metric": metric,
            "metric_label": _METRIC.get(metric, metric), "reference": float(reference),
            "sign": 1.0 if over == "lr" else -1.0, "bounds": [float(bounds[0]), float(bounds[1])],
            "paper": _num(fit.get("predicted")) if _num(fit.get("predicted")) is not None else _PAPER_EXPONENT[over],
            "fitted": _num(fit.get("exponent")), "ci": [_num(fit.get("ci_low")), _num(fit.get("ci_high"))],
            "span": [float(steps[0]), float(steps[-1])], "curves": curves}


def _thin(n: int) -> np.ndarray:
    if n <= _MAX_POINTS:
        return np.arange(n)
    half = _MAX_POINTS // 2
    idx = np.concatenate([np.geomspace(1, n, half) - 1, np.linspace(0, n - 1, half)])
    return np.unique(np.round(idx).astype(int))


def _round(a) -> list:
    """Five significant digits: enough for a plot, a fifth of the bytes."""
    return [None if not np.isfinite(v) else float(f"{v:.5g}") for v in np.asarray(a, float)]


def _colors(n: int) -> list[str]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]  # as the static figures
    return ["#%02x%02x%02x" % tuple(int(255 * c) for c in cmap(x)[:3]) for x in np.linspace(0.0, 0.85, n)]


# ---------------------------------------------------------------------------- files, figures, provenance


def _figures(folder: Path) -> list[Figure]:
    pngs = sorted(folder.glob("*.png")) + sorted((folder / "figures").glob("*.png"))
    return [Figure(p.stem.replace("_", " "), "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode())
            for p in pngs]


def _markdown_details(folder: Path) -> list[Table]:
    """The tables of the folder's own markdown report(s), for the full detail."""
    tables = []
    for md in sorted(folder.glob("*.md")):
        try:
            tables += markdown_tables(md.read_text(), source=md.name)
        except (OSError, UnicodeDecodeError):
            continue
    return tables


def markdown_tables(text: str, source: str = "") -> list[Table]:
    """The pipe tables of a markdown text, each captioned by the heading above it.

    Only what the package's own reports write: ``#`` headings and
    ``| a | b |`` tables with a ``|---|`` rule; ``\\|`` is a literal bar.
    """
    tables, caption, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("#"):
            caption = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|?\s*:?-{3,}.*", lines[i + 1].strip()):
            header = _cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i].strip()))
                i += 1
            tables.append(Table(f"{caption} ({source})" if source else caption, header, rows))
            continue
        i += 1
    return tables


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|") if not line.strip().endswith("\\|") else line.strip())
    return [re.sub(r"\*\*|`", "", p.strip().replace("\\|", "|")) for p in parts]


def _recorded_wall_time(folder: Path) -> str:
    """The wall time ``thermosgd reproduce`` recorded for its last run on this folder, or ""."""
    data = _json(folder / WALL_TIME) or {}
    if _num(data.get("seconds")) is None:
        return ""
    when = f", finished {data['finished']}" if data.get("finished") else ""
    return f"{fmt.fixed(data['seconds'], 1)} s{when}"


def _recorded_machine(folder: Path) -> str:
    machine = (_json(folder / WALL_TIME) or {}).get("machine")
    if not isinstance(machine, dict):
        return ""
    return "; ".join(f"{k} {v}" for k, v in machine.items())


def _wall_time(folder: Path) -> str:
    """A wall time the run did not record: the span of the folder's file times."""
    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file() and p.name != ".lock"]
    if len(times) < 2:
        return "not recorded"
    return f"≈ {fmt.fixed(max(times) - min(times), 0)} s (from file times; not recorded by the run)"


def environment() -> list[tuple[str, str]]:
    """Versions and the machine that wrote the report."""
    rows = []
    for pkg in ("thermosgd", "torch", "numpy", "scipy", "xarray", "matplotlib", "jinja2"):
        try:
            rows.append((pkg, metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            rows.append((pkg, "not installed"))
    rows.append(("python", platform.python_version()))
    rows.append(("system", f"{platform.system()} {platform.release()} ({platform.machine()})"))
    rows.append(("CPU", f"{_cpu_name()}, {os.cpu_count()} logical cores"))
    rows.append(("GPU", _gpu()))
    return rows


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _gpu() -> str:
    import sys

    torch = sys.modules.get("torch")  # loading torch only to ask would cost `thermosgd report` seconds
    if torch is None:
        return "not checked (torch not loaded); see each run's machine"
    try:

        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "Apple MPS"
    except Exception:  # noqa: BLE001 - a broken driver must not stop the report
        return "unknown"
    return "none visible to torch"


# ---------------------------------------------------------------------------- small helpers


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _count(seeds) -> int | None:
    if isinstance(seeds, list):
        return len(seeds)
    return seeds if isinstance(seeds, int) else None


def _pm_sig(row: dict, key: str) -> str:
    v, se = row.get(key), row.get(key + "_se")
    return f"{fmt.sig(v, 4)} ± {fmt.sig(se, 2)}" if _num(se) is not None else fmt.sig(v, 4)


def _settings_rows(settings: dict) -> list[tuple[str, str]]:
    rows = []
    for k, v in settings.items():
        if isinstance(v, list):
            v = ", ".join(fmt.sig(x) if isinstance(x, float) else str(x) for x in v)
        elif isinstance(v, float):
            v = fmt.sig(v)
        rows.append((k.replace("_", " "), str(v)))
    return rows


def _pretty(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str) if obj else ""


def _preset_metric(name: str) -> str | None:
    p = preset_of(name)
    return p.metric if p is not None and p.over else None


def _exponent_label(metric: str, over: str, figure: str | None) -> str:
    label = f"{_METRIC.get(metric, metric)}: {_SYMBOL.get(over, over)} exponent {_EXPONENT.get(over, '')}".rstrip()
    return f"{label} ({_figure_label(figure)})" if figure else label


def _figure_label(name: str) -> str:
    if name.startswith("fig2-"):
        return f"Fig. 2 {name[5:]}"
    return f"Fig. {name[3:]}" if name.startswith("fig") else name


def _unique_id(name: str, used: set) -> str:
    base = "sec-" + re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-").lower()
    out, i = base, 2
    while out in used:
        out, i = f"{base}-{i}", i + 1
    used.add(out)
    return out
