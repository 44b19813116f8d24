"""``thermosgd collapse`` end to end on a synthetic results folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from thermosgd.cli import main
from thermosgd.sweep.store import save_dataset


def _sweep(n_seeds=6, seed=0):
    """Activation rate exp(−c_s (η/0.05)² t) + noise, 3 learning rates, batch size 1."""
    rng = np.random.default_rng(seed)
    lrs, t = np.array([0.025, 0.05, 0.1]), np.arange(0, 501, 10)
    rate = 3.0 / 500 * (lrs / 0.05) ** 2
    c = 1 + 0.1 * rng.standard_normal((3, 1, n_seeds, 1))
    data = np.exp(-c * rate[:, None, None, None] * t) + 0.02 * rng.standard_normal((3, 1, n_seeds, t.size))
    return xr.Dataset(
        {
            "activation_rate": (("lr", "batch_size", "seed", "step"), data),
            "diverged": (("lr", "batch_size", "seed"), np.zeros((3, 1, n_seeds), bool)),
        },
        coords={"lr": lrs, "batch_size": [1], "seed": np.arange(n_seeds), "step": t},
        attrs={"config": "{}"},
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    save_dataset(_sweep(), folder / "results.nc")
    return folder


def test_table_and_figure(results, capsys, tmp_path):
    assert main(["collapse", str(results), "--metric", "activation_rate", "--over", "lr", "--n-boot", "10"]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "95% CI" in out and "activation_rate" in out
    for suffix in ("png", "pdf"):
        assert (results / "figures" / f"collapse_activation_rate_lr.{suffix}").stat().st_size > 0
    argv = ["collapse", str(results), "--metric", "activation_rate", "--over", "lr", "--n-boot", "0"]
    assert main([*argv, "--figure", str(tmp_path / "fig")]) == 0
    assert str(tmp_path / "fig.pdf") in capsys.readouterr().out


def test_json(results, capsys):
    argv = ["collapse", str(results / "results.nc"), "--metric", "activation_rate", "--over", "lr"]
    argv += ["--window", "50:", "--n-boot", "10", "--json", "--no-figure"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"metric", "over", "exponent", "ci_low", "ci_high", "n_seeds"} <= out.keys()
    assert out["metric"] == "activation_rate" and out["over"] == "lr" and out["n_seeds"] == 6
    assert abs(out["exponent"] - 2.0) < 0.15 and out["ci_low"] <= out["ci_high"]
    assert out["window"] == [50.0, None]
    assert out["figures"] == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metric", "nope", "--over", "lr"], "unknown metric 'nope'"),
        (["--metric", "activation_rate", "--over", "batch_size"], "1 batch_size value"),
        (["--metric", "activation_rate", "--over", "lr", "--window", "x:y"], "--window"),
        (["--metric", "activation_rate", "--over", "lr", "--n-boot", "-1"], "--n-boot"),
        (["--metric", "activation_rate", "--over", "momentum"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(results, capsys, extra, message):
    assert main(["collapse", str(results), "--no-figure", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_too_few_seeds_and_missing_folder(tmp_path, capsys):
    save_dataset(_sweep(n_seeds=1), tmp_path / "one" / "results.nc")
    argv = ["--metric", "activation_rate", "--over", "lr", "--no-figure"]
    assert main(["collapse", str(tmp_path / "one"), *argv]) == 2
    assert "at least 2 seeds" in capsys.readouterr().err
    assert main(["collapse", str(tmp_path / "one"), *argv, "--n-boot", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ci_low"] is None
    assert main(["collapse", str(tmp_path / "missing"), *argv]) == 2
    assert "no results found" in capsys.readouterr().err


def test_json_has_the_verdict_and_says_what_the_score_is(results, capsys):
    argv = ["collapse", str(results), "--metric", "activation_rate", "--over", "lr", "--n-boot", "50"]
    assert main([*argv, "--json", "--no-figure", "--margin", "0.2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"]["status"] in ("agrees", "close") and out["verdict"]["margin"] == 0.2
    assert out["verdict"]["direction"] and all(c["ci_high"] < 0 for c in out["verdict"]["direction"])  # falls
    assert "lower is better" in out["score_note"]
    if out["score"] < 0:
        assert "below 0" in out["score_note"]


@pytest.mark.parametrize("bad", ["-0.1", "1", "nan"])
def test_bad_margin_is_one_line(results, capsys, bad):
    argv = ["collapse", str(results), "--metric", "activation_rate", "--over", "lr", "--no-figure"]
    assert main([*argv, "--margin", bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--margin" in err[0]
