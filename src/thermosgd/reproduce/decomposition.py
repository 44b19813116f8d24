"""``thermosgd reproduce decomposition``: the fall split into deterministic and noise-induced parts.

Runs :func:`thermosgd.twolayer.decomposition.decomposition_runs` (clones of SGD
states under four noise models beside their noise-free paths), keeps the
dataset as ``decomposition.nc``, and writes the estimates of
:mod:`thermosgd.analysis.decomposition` to ``decomposition.json`` and
``report.md``. ``--seeds`` sets the number of states (independent SGD
trajectories), ``--steps`` the last anchor step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import xarray as xr

from thermosgd import presets
from thermosgd.analysis.decomposition import CONTRASTS, DETAIL, claims, parts, shares
from thermosgd.analysis.verdict import DEFAULT_MARGIN, RULES
from thermosgd.errors import UsageError
from thermosgd.jsonsafe import json_safe
from thermosgd.sweep.store import safe_folder, save_dataset, write_text
from thermosgd.twolayer.decomposition import NOISES, DecompositionSettings, decomposition_runs
from thermosgd.twolayer.drift import DriftSetup

__all__ = ["reproduce_decomposition", "settings_of", "report_markdown"]

_LABELS = {
    "bias_mean": "mean b",
    "v_mean": "mean V",
    "w_norm": "‖W‖",
    "v2": "‖V‖²",
    "activation_rate": "activation rate",
}


def settings_of(preset: presets.Preset, *, seeds=None, steps=None, quick: bool = False) -> DecompositionSettings:
    """The preset's :class:`DecompositionSettings` at the requested size (anchors as fractions of ``steps``)."""
    states, last = preset.size(seeds=seeds, steps=steps, quick=quick)
    if states < 2:
        raise UsageError(
            f"seeds must be at least 2 for {preset.name}: its intervals are over SGD trajectories", param="seeds"
        )
    p = preset.settings(quick=quick)
    anchors = tuple(sorted({round(f * last) for f in p["anchor_fractions"]}))
    return DecompositionSettings(
        lr=p["lr"],
        batch_size=p["batch_size"],
        anchors=anchors,
        states=states,
        clones=p["clones"],
        horizons=tuple(p["horizons"]),
        gd_batch=p["gd_batch"],
        pop_size=p["pop_size"],
        seed=p["seed"],
    ).checked()


def reproduce_decomposition(
    preset: presets.Preset,
    out: Path,
    *,
    seeds=None,
    steps=None,
    quick: bool = False,
    progress: bool = True,
    margin: float = DEFAULT_MARGIN,
    **_,
) -> dict:
    """Run, store, estimate and report; returns the summary written to ``decomposition.json``.

    Its ``claims`` are the closing table's rows (:func:`~thermosgd.analysis.decomposition.claims`,
    judged with the equivalence ``margin``)."""
    out = safe_folder(Path(out))
    s = settings_of(preset, seeds=seeds, steps=steps, quick=quick)
    setup = DriftSetup(**preset.settings(quick=quick)["setup"])
    path = out / "decomposition.nc"
    if path.exists():  # a finished run is read back, not redone
        ds = xr.load_dataset(path)
    else:
        ds = decomposition_runs(setup, s, progress=progress)
        save_dataset(ds, path)  # atomically, never through a link planted under its name
    summary = {
        "preset": preset.name,
        "claim": preset.claim,
        "setup": setup.__dict__,
        "settings": json.loads(ds.attrs["settings"]),
        "parts": parts(ds),
        "shares": shares(ds),
    }
    judged = claims(summary["shares"], margin=margin)
    summary["margin"], summary["rules"] = margin, {k: RULES[k] for k in ("difference", "equivalence")}
    summary["claims"] = [c.to_dict() for c in judged]
    summary["verdict"] = _in_words(summary["shares"])  # the claims stand on the page as rows of their own
    write_text(out / "decomposition.json", json.dumps(json_safe(summary), indent=2) + "\n")
    write_text(out / "report.md", report_markdown(preset, summary))
    if progress:
        for c in judged:
            print(f"[decomposition] {c.setting}: {c.statement} ({c.compared}): {c.measured}: {c.status}")
        print(f"[decomposition] tables in {out / 'report.md'}")
    return summary


def _in_words(rows: list[dict]) -> list[str]:
    """The activation rate's shares at the longest horizon from each anchor, one line each (for the page)."""
    last = max((r["horizon"] for r in rows), default=0)
    out = []
    for r in rows:
        if r["observable"] != "activation_rate" or r["horizon"] != last:
            continue
        noise = _ci(r["sgd_noise_induced"])
        head = f"activation rate, {last} steps from step {r['anchor']}: SGD's noise-induced change {noise}"
        if r["note"]:
            out.append(f"{head}; {r['note']}")
            continue
        shares = ", ".join(f"{c.replace('_', ' ')} {_share(x)}" for c, x in r["shares"].items())
        out.append(f"{head}; shares: {shares}")
    return out


def _ci(x: dict, digits: int = 3) -> str:
    if not math.isfinite(x["mean"]):
        return "n/a"
    if not math.isfinite(x["se"]):
        return f"{x['mean']:+.{digits}g}"
    return f"{x['mean']:+.{digits}g} [{x['low']:+.{digits}g}, {x['high']:+.{digits}g}]"


def _share(x: dict | None) -> str:
    return "—" if x is None else f"{x['share']:.2f} [{x['low']:.2f}, {x['high']:.2f}]"


def report_markdown(preset: presets.Preset, summary: dict) -> str:
    """``report.md``: the parts per noise model, then the shares of SGD's noise-induced part."""
    s = summary["settings"]
    lines = [
        f"# {preset.name}: {preset.description}",
        "",
        f"Claim under test: {preset.claim}",
        "",
        f"η = {s['lr']}, |B| = {s['batch_size']}, {s['states']} states (independent SGD trajectories from the "
        f"shared initialization) at steps {s['anchors']}, {s['clones']} clones per state and noise model, "
        f"G = {s['gd_batch']} samples per step of gd, gaussian and frozen; noise-free path: full-batch descent "
        f"on {s['pop_size']} samples per state. Values: mean over states [95% t-interval].",
        "",
        "## Deterministic and noise-induced parts of the mean change after k steps",
        "",
        "| quantity | anchor | k | deterministic | " + " | ".join(f"noise-induced, {n}" for n in NOISES) + " |",
        "|---|---|---|---|" + "---|" * len(NOISES),
    ]
    names = [*CONTRASTS, *DETAIL]
    by_key: dict[tuple, dict] = {}
    for r in summary["parts"]:
        by_key.setdefault((r["observable"], r["anchor"], r["horizon"]), {})[r["noise"]] = r
    for (q, a, k), rows in by_key.items():
        det = _ci(next(iter(rows.values()))["deterministic"])
        cells = " | ".join(_ci(rows[n]["noise_induced"]) for n in NOISES if n in rows)
        lines.append(f"| {_LABELS.get(q, q)} | {a} | {k} | {det} | {cells} |")
    lines += [
        "",
        "For mean b and mean V (linear in θ) the noise-induced part must vanish at k = 1 for every unbiased "
        "noise; a nonzero value there would be a bug.",
        "",
        "## Shares of SGD's noise-induced part",
        "",
        "theta dependence = (sgd − frozen)/N, state independent = (frozen − gd)/N, gd residual = "
        "(gd − noise-free)/N, N = sgd − noise-free; they add up to 1. theta dependence splits into higher "
        "moments = (sgd − gaussian)/N, theta alone = (gaussian − frozen_cov)/N and correlations = "
        "(frozen_cov − frozen)/N (frozen keeps only the diagonal of the covariance). Intervals: paired "
        "bootstrap over states.",
        "",
        "| quantity | anchor | k | N (sgd's noise-induced part) | "
        + " | ".join(c.replace("_", " ") for c in names)
        + " | note |",
        "|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for r in summary["shares"]:
        cells = " | ".join(_share(r["shares"].get(c)) for c in names)
        lines.append(
            f"| {_LABELS.get(r['observable'], r['observable'])} | {r['anchor']} | {r['horizon']} | "
            f"{_ci(r['sgd_noise_induced'])} | {cells} | {r['note']} |"
        )
    lines += [
        "",
        "## The claim, judged",
        "",
        " ".join(f"{k.capitalize()}: {rule}" for k, rule in summary.get("rules", {}).items()),
        "",
        "| at | claim | compared | expected | measured [95% CI] | verdict | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in summary.get("claims", []):
        lines.append(
            f"| {c['setting']} | {c['statement']} | {c['compared']} | {c['paper']} | {c['measured']} | "
            f"**{c['status']}** | {c['reason']} |"
        )
    return "\n".join(lines) + "\n"
