"""The walk preset: run the suite of :mod:`thermosgd.reproduce.walk_suite`, write its report and figures."""

from __future__ import annotations

import json
import time
from pathlib import Path

from thermosgd.figures import walk as walk_figures
from thermosgd.jsonsafe import json_safe
from thermosgd.reproduce.walk_suite import run_suite
from thermosgd.sweep.store import safe_folder, write_text


def _pm(value, err, digits=3):
    return f"{value:.{digits}f} ± {err:.{digits}f}"


def report_markdown(suite: dict) -> str:
    """One table, measured next to Eq. 10 (and Fokker-Planck), from :func:`run_suite`'s dict."""
    lines = [
        "# Random walk (Sec. 3): simulation vs Eq. 10",
        "",
        "Binary zeta, shared by all coordinates; "
        f"{'quick' if suite['quick'] else 'default'} size, seed {suite['seed']}. "
        "Ratios are measured / predicted; FP = Fokker-Planck (Ito) limit of the same walk, not from the paper. "
        "Errors are one standard error.",
        "",
        "| case | g | (a) thermophoretic J: meas / Eq.10 | meas / FP | (b) diffusive J: meas / Eq.10 | meas / FP "
        "| (c) k fitted | k Eq.10 | k FP | (d) eta exponent (Eq.10: 2) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in suite["cases"]:
        a, b, st, sc = c["thermophoretic"]["main"], c["diffusive"], c["stationary"], c["thermophoretic"]
        if st:
            k = (_pm(st["k_fit"], st["k_stderr"]), f"{st['k_eq10']:.3f}", f"{st['k_fokker_planck']:.3f}")
        else:
            k = ("n/a", "n/a", "n/a")
        lines.append(
            f"| {c['name']} | `{c['g']}` | {_pm(a['ratio_eq10'], a['ratio_eq10_stderr'])} "
            f"| {_pm(a['ratio_fokker_planck'], a['ratio_fokker_planck_stderr'])} "
            f"| {_pm(b['ratio_eq10'], b['ratio_eq10_stderr'])} | "
            f"{_pm(b['ratio_fokker_planck'], b['ratio_fokker_planck_stderr'])} "
            f"| {k[0]} | {k[1]} | {k[2]} | {_pm(sc['exponent'], sc['exponent_stderr'])} |"
        )
    lines += ["", "Where they disagree:", ""]
    for c in suite["cases"]:
        a, b, st = c["thermophoretic"]["main"], c["diffusive"], c["stationary"]
        parts = [
            f"thermophoretic flux {a['ratio_eq10']:.2f}x Eq. 10",
            f"diffusive flux {b['ratio_eq10']:.2f}x Eq. 10",
        ]
        if st:
            parts.append(
                f"stationary k = {st['k_fit']:.2f} vs {st['k_eq10']:.0f} from Eq. 10 (ratio {st['ratio_eq10']:.2f})"
            )
        else:
            parts.append("stationary density " + c["stationary_note"])
        lines.append(f"- {c['name']}: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def reproduce_walk(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict:
    """Run the suite and write ``walk_report.json``, ``walk_report.md`` and ``figures/walk_*.{png,pdf}``.

    Args:
        out_dir: Output folder (created).
        quick: Small sizes (seconds) instead of the default (well under a minute).
        seed: Base seed.

    Returns:
        The suite dict plus ``files`` (paths written) and ``seconds``.
    """
    out_dir = Path(out_dir)
    start = time.perf_counter()
    suite = run_suite(quick=quick, seed=seed)
    suite["seconds"] = time.perf_counter() - start
    safe_folder(out_dir / "figures")
    files = walk_figures.write_figures(suite, out_dir / "figures")
    write_text(out_dir / "walk_report.json", json.dumps(json_safe(suite), indent=1))
    write_text(out_dir / "walk_report.md", report_markdown(suite))
    files += [str(out_dir / "walk_report.json"), str(out_dir / "walk_report.md")]
    return {**suite, "files": files}
