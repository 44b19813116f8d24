"""Claims and their verdicts: a measured value (with its interval or standard error) against the paper's."""

from __future__ import annotations

from thermosgd import fmt
from thermosgd.analysis.verdict import classify
from thermosgd.report.common import EXPONENT, PAPER_EXPONENT, SYMBOL, number
from thermosgd.report.records import AGREES, DISAGREES, INCONCLUSIVE, NOT_MEASURED, Claim

__all__ = ["fit_claim", "classify_interval", "pooled_claim", "verdict_records", "Z95"]

Z95 = 1.959964  # two-sided 95% normal quantile: "agrees" = within 1.96 standard errors


def fit_claim(
    label: str, fit: dict | None, over: str, summary: dict | None = None, verdict: dict | None = None
) -> Claim:
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
    sym = EXPONENT.get(over, "exponent")
    predicted = next(
        (number(x) for x in (v.get("paper"), f.get("predicted"), PAPER_EXPONENT.get(over)) if number(x) is not None),
        None,
    )
    paper = f"{sym} = {fmt.sig(predicted)}" if predicted is not None else fmt.NA
    detail, short = _left_out(v, f, summary or {}, over)
    exponent = number(v.get("exponent", f.get("exponent")))
    lo, hi = v.get("ci_low", f.get("ci_low")), v.get("ci_high", f.get("ci_high"))
    if exponent is None:
        why = str(v.get("note") or f.get("reason") or "no collapse fit (needs ≥ 2 swept values and ≥ 2 seeds)")
        return Claim(label, paper, fmt.NA, NOT_MEASURED, "; ".join(filter(None, [why, detail])), short)
    if number(lo) is None or number(hi) is None:  # e.g. too few seeds: the verdict states no interval
        measured = f"{sym} = {fmt.exponent(exponent)} (no CI)"
    else:
        measured = f"{sym} = {fmt.exponent(exponent)} {fmt.interval(lo, hi)}"
    verdict_word, why = classify_interval(predicted, lo, hi, f.get("bounds"))
    if v.get("status") in (INCONCLUSIVE, NOT_MEASURED):
        # The run's own verdict knows more than the interval (e.g. too few seeds): keep it.
        verdict_word = v["status"]
    if verdict_word in (INCONCLUSIVE, NOT_MEASURED) and v.get("note"):
        why = str(v["note"])
    level = number(f.get("ci_level"))
    if level is not None:
        why = why.replace("the CI", f"the {fmt.fixed(100 * level, 0)}% CI", 1)
    return Claim(label, paper, measured, verdict_word, "; ".join(filter(None, [why, detail])), short)


def judged_fit(fit: dict | None, verdict: dict | None) -> dict:
    """``fit`` with the interval its run's verdict states (none where too few seeds gave the
    bootstrap's interval no meaning, though the fit keeps it on record)."""
    out = dict(fit) if isinstance(fit, dict) else {}
    v = verdict if isinstance(verdict, dict) else {}
    out.update({k: v[k] for k in ("ci_low", "ci_high") if k in v})
    return out


def classify_interval(predicted, low, high, bounds=None) -> tuple[str, str]:
    """Verdict of a paper value against a confidence interval.

    Returns:
        ``(verdict, reason)``: "agrees" when the value lies inside ``[low, high]``,
        "disagrees" when outside, "inconclusive" when inside but the interval
        runs to a search bound (the data barely constrain the value), "not
        measured" when the interval is missing.
    """
    p, lo, hi = number(predicted), number(low), number(high)
    if p is None or lo is None or hi is None:
        return NOT_MEASURED, "no confidence interval"
    ok_bounds = bounds if bounds and len(bounds) == 2 and None not in bounds else None
    return classify(p, lo, hi, ok_bounds)


def _left_out(verdict: dict, fit: dict, summary: dict, over: str) -> tuple[str, str]:
    """Replicas left out of the fit: ``(per swept value with why, short count)``, as far as the records say."""
    sym = SYMBOL.get(over, over)
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
            load = f", η·E‖x‖² ≈ {fmt.sig(r['step_size_load'])}" if number(r.get("step_size_load")) is not None else ""
            why = f" ({r['reason']}{load})" if r.get("reason") else ""
            value = fmt.sig(r["value"]) if number(r.get("value")) is not None else str(r.get("value"))
            parts.append(f"{sym} = {value}: {count}/{of if of is not None else '?'}{when}{why}")
        if parts:
            verb = "kept (--include-diverged)" if kept else "left out"
            short = (
                f"{total} diverged replica{'s' if total != 1 else ''} kept"
                if kept
                else f"{total} replica{'s' if total != 1 else ''} left out"
            )
            return f"{verb}: " + "; ".join(parts), short
        if verdict:
            return "", ""
    diverged = summary.get("diverged")
    if isinstance(diverged, int) and diverged > 0:
        return f"{diverged} diverged replica(s) left out", f"{diverged} replica{'s' if diverged != 1 else ''} left out"
    return "", ""


def verdict_records(summary: dict) -> dict:
    """The run's verdict records by metric (``summary.json`` ``verdicts``), if it has them."""
    rows = summary.get("verdicts")
    return {v["metric"]: v for v in rows if isinstance(v, dict) and v.get("metric")} if isinstance(rows, list) else {}


def pooled_claim(label: str, paper: str, items) -> Claim:
    """One claim over several cases: value ± s.e. against a prediction, per case."""
    parts, verdicts = [], []
    for name, value, err, predicted in items:
        v, e, p = number(value), number(err), number(predicted)
        if v is None:
            continue
        parts.append(f"{name} {fmt.plus_minus(v, e)}")
        if p is None or e is None:
            verdicts.append(INCONCLUSIVE)
        else:
            verdicts.append(AGREES if abs(v - p) <= Z95 * e else DISAGREES)
    if not parts:
        return Claim(label, paper, fmt.NA, NOT_MEASURED, "not in this run")
    if DISAGREES in verdicts:
        bad = [p.split(" ")[0] for p, v in zip(parts, verdicts) if v == DISAGREES]
        return Claim(
            label, paper, "; ".join(parts), DISAGREES, "off the prediction by more than 1.96 s.e. in: " + ", ".join(bad)
        )
    verdict = AGREES if all(v == AGREES for v in verdicts) else INCONCLUSIVE
    return Claim(
        label,
        paper,
        "; ".join(parts),
        verdict,
        "within 1.96 s.e. of the prediction in every case" if verdict == AGREES else "no standard error for some cases",
    )
