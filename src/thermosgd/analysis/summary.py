"""A sweep's summary (``summary.json``) as a typed record: written by ``reproduce``, read back by the report.

:meth:`RunSummary.from_dict` is the one reader: a missing or unknown field raises
:class:`~thermosgd.errors.UsageError` naming it, so a renamed field fails loudly instead
of turning a claim into "not measured".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields

import xarray as xr

from thermosgd.analysis.run_config import run_config
from thermosgd.analysis.verdict import DEFAULT_MARGIN, Verdict
from thermosgd.errors import UsageError

__all__ = ["RunSummary", "MetricChange", "summarize", "SUMMARY_METRICS"]

#: The metrics whose first and last seed means a summary keeps.
SUMMARY_METRICS = ("activation_rate", "v_norm", "bias_mean", "loss", "grad_var")


@dataclass(frozen=True)
class MetricChange:
    """Seed mean (non-diverged replicas) of a metric at the first and last recorded step."""

    initial: float
    final: float


@dataclass(frozen=True)
class RunSummary:
    """What ``summary.json`` holds.

    Attributes:
        preset, experiment: the preset that ran and its experiment.
        over: the swept parameter of its claim.
        steps: last recorded step; seeds: seeds run; diverged: replicas flagged diverged.
        metrics: per metric, per swept value (as text, e.g. ``"0.05"``), the :class:`MetricChange`.
        verdicts: one :class:`~thermosgd.analysis.verdict.Verdict` per figure of the experiment.
        margin: the practical margin the verdicts were judged with.
        substitute: the substitute data set (``"digits"``), or ``""`` for the paper's data.
        dataset_paper: the paper's data set where a substitute was used.
    """

    preset: str
    experiment: str
    over: str
    steps: int
    seeds: int
    diverged: int
    metrics: Mapping[str, Mapping[str, MetricChange]] = field(default_factory=dict)
    verdicts: tuple[Verdict, ...] = ()
    margin: float = DEFAULT_MARGIN
    substitute: str = ""
    dataset_paper: str = ""

    @property
    def collapse(self) -> dict[str, dict | None]:
        """The fits by metric (``CollapseFit.to_dict()``; None where nothing was fitted)."""
        return {v.metric: v.fit for v in self.verdicts}

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["metrics"] = {
            m: {k: {"initial": c.initial, "final": c.final} for k, c in rows.items()}
            for m, rows in self.metrics.items()
        }
        out["verdicts"] = [v.to_dict() for v in self.verdicts]
        out["collapse"] = self.collapse  # derived, kept for readers of older versions
        return out

    @classmethod
    def from_dict(cls, data) -> RunSummary:
        """The summary :meth:`to_dict` wrote; :class:`UsageError` naming what is missing or unknown."""
        if not isinstance(data, Mapping):
            raise UsageError(f"summary.json holds a {type(data).__name__}, not an object")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        extra, missing = set(data) - names - {"collapse"}, required - set(data)
        if extra or missing:
            raise UsageError(
                f"summary.json has unknown fields {sorted(extra)} and lacks {sorted(missing)}; "
                "written by another version of thermosgd?"
            )
        kw = {k: data[k] for k in names if k in data}
        try:
            kw["metrics"] = {
                m: {str(k): MetricChange(float(c["initial"]), float(c["final"])) for k, c in rows.items()}
                for m, rows in dict(data.get("metrics") or {}).items()
            }
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"summary.json metrics unreadable ({type(exc).__name__}: {exc})") from None
        kw["verdicts"] = tuple(Verdict.from_dict(v) for v in data.get("verdicts") or ())
        return cls(**kw)


def summarize(
    ds: xr.Dataset, preset: str, experiment: str, over: str, verdicts: tuple[Verdict, ...] | list[Verdict] = ()
) -> RunSummary:
    """The summary of a sweep's results and its verdicts.

    Args:
        ds: results, dims ``(lr, batch_size, seed, step)`` with ``diverged``.
        preset, experiment, over: what ran, and the swept parameter of its claim.
        verdicts: the verdicts of the experiment's figures.
    """
    changes: dict[str, dict[str, MetricChange]] = {}
    for metric in SUMMARY_METRICS:
        if metric not in ds:
            continue
        m = ds[metric].where(~ds["diverged"]).mean("seed", skipna=True)
        rows = {}
        for v in ds[over].values:
            series = m.sel({over: v}).squeeze(drop=True)
            if series.ndim != 1:
                continue
            valid = series.dropna("step")
            if valid.sizes["step"] == 0:
                continue
            rows[f"{float(v):g}"] = MetricChange(float(valid[0]), float(valid[-1]))
        changes[metric] = rows
    run = run_config(ds)
    return RunSummary(
        preset=preset,
        experiment=experiment,
        over=over,
        steps=int(ds["step"].values[-1]),
        seeds=int(ds.sizes["seed"]),
        diverged=int(ds["diverged"].values.sum()),
        metrics=changes,
        verdicts=tuple(verdicts),
        margin=verdicts[0].margin if verdicts else DEFAULT_MARGIN,
        substitute=run.dataset if run.substitute else "",
        dataset_paper=run.dataset_paper if run.substitute else "",
    )
