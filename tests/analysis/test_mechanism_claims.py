"""The mechanism's claims as judged rows, on synthetic runs whose answer is known.

Each synthetic run falls linearly by ``fall × η/0.1`` over the run, plus seed noise
of 0.002 (seeded): the verdicts below are far from their thresholds (≥ 10 s.e.).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from thermosgd.analysis.mechanism import mechanism_claims, paired_change, sde_limit_rows
from thermosgd.analysis.verdict import AGREES, DISAGREES, INCONCLUSIVE, NO_EFFECT

LRS = (0.025, 0.05, 0.075, 0.1)


def _run(fall: float, *, seeds: int = 8, seed: int = 0, noise: float = 0.002) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 11)
    act = np.array(
        [[0.5 - fall * lr / 0.1 * t + noise * rng.standard_normal(t.size) for _ in range(seeds)] for lr in LRS]
    )
    act[..., 0] = 0.5  # shared initialization
    dims = ("lr", "batch_size", "seed", "step")
    return xr.Dataset(
        {
            "activation_rate": (dims, act[:, None]),
            "v_norm": (dims, 1 + act[:, None]),
            "bias_mean": (dims, act[:, None] - 0.5),
            "diverged": (dims[:3], np.zeros((len(LRS), 1, seeds), bool)),
        },
        coords={"lr": list(LRS), "batch_size": [1], "seed": np.arange(seeds), "step": np.arange(11) * 100},
    )


def _claims(falls: dict[str, float], svag: float | None = 0.2, **kw):
    runs = {n: _run(f, seed=i, **kw) for i, (n, f) in enumerate(falls.items())}
    extra = None if svag is None else _run(svag, seed=9, **kw)
    return {c.claim: c for c in mechanism_claims(runs, "fig3", "lr", svag=extra)}


PAPER = {"sgd": 0.2, "gd": 0.01, "gaussian": 0.2, "frozen": 0.01}


def test_the_papers_mechanism_agrees_on_every_row():
    rows = _claims(PAPER)
    assert list(rows) == ["needs_noise", "second_moments_suffice", "needs_theta_dependence", "survives_sde_limit"]
    assert {k: r.status for k, r in rows.items()} == dict.fromkeys(rows, AGREES)
    assert rows["second_moments_suffice"].margin == pytest.approx(0.1 * 0.2, rel=0.05)


@pytest.mark.parametrize(
    "change, claim, status",
    [
        ({"frozen": 0.1}, "needs_theta_dependence", DISAGREES),  # state-independent noise gives half the fall
        ({"gaussian": 0.15}, "second_moments_suffice", DISAGREES),
        ({"gd": 0.2}, "needs_noise", NO_EFFECT),
    ],
)
def test_a_broken_claim_is_called_so(change, claim, status):
    assert _claims({**PAPER, **change})[claim].status == status


def test_a_fall_that_vanishes_in_the_sde_limit_disagrees():
    assert _claims(PAPER, svag=0.05)["survives_sde_limit"].status == DISAGREES


def test_too_few_seeds_are_inconclusive():
    assert {r.status for r in _claims(PAPER, seeds=3).values()} == {INCONCLUSIVE}


def test_without_svag_runs_there_is_no_sde_row():
    assert "survives_sde_limit" not in _claims(PAPER, svag=None)


def test_paired_change_is_the_per_seed_difference_at_the_largest_eta():
    a, b = _run(0.1, seed=1), _run(0.2, seed=2)
    got = paired_change(a, b, "lr")
    end = lambda ds: ds.activation_rate.sel(lr=0.1).isel(batch_size=0, step=-1).values - 0.5  # noqa: E731
    d = end(a) - end(b)
    assert got["value"] == 0.1 and got["seeds"] == 8
    assert got["difference"] == pytest.approx(d.mean()) and got["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(8))
    assert got["ci_low"] < got["difference"] < got["ci_high"]
    assert got["reference"] == pytest.approx(end(b).mean())


def test_a_diverged_seed_is_left_out_of_both():
    a, b = _run(0.1), _run(0.2)
    a["diverged"][-1, 0, 3] = True
    assert paired_change(a, b, "lr")["seeds"] == 7


def test_sde_limit_rows_give_each_eta_and_l_and_judge_the_largest_l():
    rows = sde_limit_rows({1: _run(0.2, seed=1), 4: _run(0.2, seed=2), 8: _run(0.1, seed=3)}, "lr")
    assert [r["value"] for r in rows] == list(LRS) and list(rows[0]["by_l"]) == [1, 4, 8]
    top = rows[-1]
    assert top["by_l"][8]["change"] == pytest.approx(-0.1, abs=0.005) and top["by_l"][1]["replicas"] == 8
    assert top["versus"]["l"] == 8 and top["versus"]["status"] == DISAGREES  # the fall halves at l = 8
    same = sde_limit_rows({1: _run(0.2, seed=1), 8: _run(0.2, seed=3)}, "lr")
    assert {r["versus"]["status"] for r in same} == {AGREES}
