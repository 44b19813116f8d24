"""Claims as rows of the page: the verdicts decided in :mod:`thermosgd.analysis.verdict`, formatted.

Nothing is judged here: every word comes from an analysis rule (``judge_*``), or from
the run's own :class:`~thermosgd.analysis.verdict.Verdict` record, read back with
:meth:`~thermosgd.analysis.verdict.Verdict.from_dict`.
"""

from __future__ import annotations

from thermosgd import fmt
from thermosgd.analysis.verdict import (
    DEFAULT_MARGIN,
    NOT_MEASURED,
    Judgement,
    Verdict,
    judge_exponent,
    judge_pooled,
    judge_ratio,
    rejudge,
)
from thermosgd.errors import UsageError
from thermosgd.report.common import EXPONENT, PAPER_EXPONENT, SYMBOL, number
from thermosgd.report.records import Claim

__all__ = ["fit_claim", "pooled_claim", "verdict_records", "judged_fit", "claim_of"]


def claim_of(label: str, paper: str, measured: str, judgement: Judgement) -> Claim:
    """A claim row from an analysis judgement."""
    return Claim(label, paper, measured, judgement.status, judgement.reason)


def _read_verdict(record) -> tuple[Verdict | None, str]:
    if not isinstance(record, dict):
        return None, ""
    try:
        return Verdict.from_dict(record), ""
    except UsageError as exc:
        return None, str(exc)


def fit_claim(
    label: str,
    fit: dict | None,
    over: str,
    summary: dict | None = None,
    verdict: dict | None = None,
    margin: float | None = None,
) -> Claim:
    """A collapse fit as a claim row.

    Args:
        label: what was fitted.
        fit: the fit's dict (``CollapseFit.to_dict()``); None when no fit was made.
        over: ``"lr"`` or ``"batch_size"``.
        summary: the run's summary (its ``diverged`` count, when there is no verdict record).
        verdict: the run's verdict record (``Verdict.to_dict()``); preferred: it holds the
            direction test and the replicas left out per swept value.
        margin: judge the exponent with this margin instead of the one recorded.
    """
    v, unreadable = _read_verdict(verdict)
    if v is not None:
        v = rejudge(v, margin) if margin is not None else v
        return _verdict_claim(label, v)
    f = fit if isinstance(fit, dict) else {}
    sym = EXPONENT.get(over, "exponent")
    predicted = next((number(x) for x in (f.get("predicted"), PAPER_EXPONENT.get(over)) if number(x) is not None), None)
    paper = f"{sym} = {fmt.sig(predicted)}" if predicted is not None else fmt.NA
    short = _diverged(summary or {})
    exponent = number(f.get("exponent"))
    if exponent is None or predicted is None:
        why = unreadable or str(f.get("reason") or "no collapse fit (needs ≥ 2 swept values and ≥ 2 seeds)")
        return Claim(label, paper, fmt.NA, NOT_MEASURED, why, short)
    lo, hi = f.get("ci_low"), f.get("ci_high")
    measured = f"{sym} = {fmt.estimate(exponent, number(lo), number(hi))}"
    bounds = f.get("bounds") if isinstance(f.get("bounds"), list) and len(f["bounds"]) == 2 else None
    j = judge_exponent(
        predicted, number(lo), number(hi), margin=DEFAULT_MARGIN if margin is None else margin, bounds=bounds
    )
    why = "; ".join(
        filter(None, [unreadable, _with_level(j.reason, f), f"{short} (no verdict record)" if short else ""])
    )
    return Claim(label, paper, measured, j.status, why, short)


def _verdict_claim(label: str, v: Verdict) -> Claim:
    sym = v.symbol
    measured = fmt.NA if v.exponent is None else f"{sym} = {fmt.estimate(v.exponent, v.ci_low, v.ci_high)}"
    why = _with_level(v.note, v.fit or {})
    detail, short = _left_out(v)
    return Claim(
        label, f"{sym} = {fmt.sig(v.paper)}", measured, v.status, "; ".join(filter(None, [why, detail])), short
    )


def _with_level(text: str, fit: dict) -> str:
    level = number(fit.get("ci_level"))
    return text.replace("the CI", f"the {fmt.fixed(100 * level, 0)}% CI", 1) if level is not None else text


def judged_fit(fit: dict | None, verdict: dict | None) -> dict:
    """``fit`` with the interval its run's verdict states (none where too few seeds gave the
    bootstrap's interval no meaning, though the fit keeps it on record)."""
    out = dict(fit) if isinstance(fit, dict) else {}
    v, _ = _read_verdict(verdict)
    if v is not None:
        out.update(ci_low=v.ci_low, ci_high=v.ci_high)
    return out


def _left_out(v: Verdict) -> tuple[str, str]:
    """Replicas left out of the fit: ``(per swept value with why, short count)``."""
    if not v.left_out:
        return "", ""
    sym = SYMBOL.get(v.over, v.over)
    parts = []
    for r in v.left_out:
        when = f" from step ~{r.median_step}" if r.median_step is not None else ""
        load = f", η·E‖x‖² ≈ {fmt.sig(r.step_size_load)}" if number(r.step_size_load) is not None else ""
        parts.append(f"{sym} = {fmt.sig(r.value)}: {r.count}/{r.of}{when} ({r.reason}{load})")
    total = sum(r.count for r in v.left_out)
    if v.included_diverged:
        return "kept (--include-diverged): " + "; ".join(parts), f"{total} diverged replica{'s' * (total != 1)} kept"
    return "left out: " + "; ".join(parts), f"{total} replica{'s' * (total != 1)} left out"


def _diverged(summary: dict) -> str:
    n = summary.get("diverged")
    return f"{n} replica{'s' * (n != 1)} left out" if isinstance(n, int) and not isinstance(n, bool) and n > 0 else ""


def verdict_records(summary: dict) -> dict:
    """The run's verdict records by metric (``summary.json`` ``verdicts``), if it has them."""
    rows = summary.get("verdicts")
    return {v["metric"]: v for v in rows if isinstance(v, dict) and v.get("metric")} if isinstance(rows, list) else {}


def pooled_claim(label: str, paper: str, items, margin: float | None = None) -> Claim:
    """One claim over several cases: value ± s.e. against a prediction per case (rule: ``judge_ratio``,
    pooled by ``judge_pooled``)."""
    parts, cases = [], []
    for name, value, err, predicted in items:
        if number(value) is None:
            continue
        parts.append(f"{name} {fmt.plus_minus(value, err)}")
        j = judge_ratio(
            number(value), number(err), number(predicted), margin=DEFAULT_MARGIN if margin is None else margin
        )
        cases.append((str(name), j))
    if not parts:
        return Claim(label, paper, fmt.NA, NOT_MEASURED, "not in this run")
    return claim_of(label, paper, "; ".join(parts), judge_pooled(cases))
