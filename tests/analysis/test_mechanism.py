"""The noise-ablation reading on synthetic families with a known answer."""

import numpy as np
import xarray as xr

from thermosgd.analysis.mechanism import assess, end_values, plain_verdict

LRS = (0.025, 0.05, 0.075, 0.1)


def _family(rate, *, seeds=8, steps=400, noise=0.002, seed=0, diverged=()):
    """activation_rate(t) = 0.5 − drop(t, η) + noise; v_norm, bias_mean follow it; dims (lr, batch_size, seed, step)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, steps + 1, 10)
    act = np.stack([[0.5 - rate(t, lr) + noise * rng.standard_normal(t.size) for _ in range(seeds)] for lr in LRS])
    act[:, :, 0] = 0.5  # shared initialization
    act = act[:, None]
    div = np.zeros((len(LRS), 1, seeds), bool)
    for li, si in diverged:
        div[li, 0, si] = True
        act[li, 0, si, 5:] = np.nan
    dims = ("lr", "batch_size", "seed", "step")
    return xr.Dataset(
        {
            "activation_rate": (dims, act),
            "v_norm": (dims, 1 + act),
            "bias_mean": (dims, act - 0.5),
            "diverged": (dims[:3], div),
        },
        coords={"lr": list(LRS), "batch_size": [1], "seed": np.arange(seeds), "step": t},
    )


def _saturating(power):
    return lambda t, lr: 0.2 * (1 - np.exp(-t * (lr / 0.05) ** power / 150))


def test_a_fall_on_t_eta_squared_reproduces_the_effect():
    a = assess(_family(_saturating(2.0)), "synthetic", "lr", n_boot=50)
    assert a["falls"] and a["collapses"] == "yes" and a["reproduces"]
    assert a["verdict"].ci_low <= 2.0 <= a["verdict"].ci_high
    assert a["words"].startswith("reproduces the effect")


def test_a_fall_on_t_eta_does_not():
    a = assess(_family(_saturating(1.0)), "synthetic", "lr", n_boot=50)
    assert a["falls"] and a["collapses"] == "no" and not a["reproduces"]
    assert "not on t·η²" in a["words"]


def test_no_fall_is_not_the_effect_whatever_the_fit():
    a = assess(_family(lambda t, lr: 0 * t, noise=0.01), "synthetic", "lr", n_boot=50)
    assert not a["falls"] and not a["reproduces"]
    assert a["words"].startswith("no significant fall")


def test_end_values_are_seed_means_of_the_kept_replicas():
    ds = _family(_saturating(2.0), diverged=[(3, 0)])
    rows = end_values(ds, "lr")
    assert [r["value"] for r in rows] == list(LRS)
    last = rows[-1]["activation_rate"]
    kept = ds.activation_rate.sel(lr=0.1).isel(batch_size=0, seed=slice(1, None), step=-1).values
    np.testing.assert_allclose(last["end"], kept.mean())
    np.testing.assert_allclose(last["end_se"], kept.std(ddof=1) / np.sqrt(kept.size))
    np.testing.assert_allclose(last["change"], (kept - 0.5).mean())
    assert rows[-1]["replicas"] == 7 and rows[-1]["left_out"] == 1


def test_plain_verdict_names_who_reproduces():
    runs = {
        "sgd": assess(_family(_saturating(2.0)), "a", "lr", n_boot=50),
        "gd": assess(_family(_saturating(1.0), seed=1), "b", "lr", n_boot=50),
    }
    text = plain_verdict(runs, "fig3")
    assert "appears under sgd and not under gd" in text


def test_versus_sgd_matches_the_same_family_and_not_a_weaker_one():
    from thermosgd.analysis.mechanism import versus

    runs = {
        "sgd": assess(_family(_saturating(2.0)), "a", "lr", n_boot=50),
        "twin": assess(_family(_saturating(2.0), seed=2), "b", "lr", n_boot=50),
        "weak": assess(_family(lambda t, lr: 0.5 * _saturating(2.0)(t, lr), seed=3), "c", "lr", n_boot=50),
    }
    vs = versus(runs)
    assert vs["sgd"]["fall_ratio"] == 1.0
    assert vs["twin"]["matches"] and abs(vs["twin"]["fall_ratio"] - 1) < 0.05
    assert not vs["weak"]["matches"] and abs(vs["weak"]["fall_ratio"] - 0.5) < 0.05
