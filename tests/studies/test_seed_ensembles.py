"""A unit's seeds train as one ensemble: every replica's bits must not depend on the seeds beside it.

Each case runs one study three times, with 1, 2 and all seeds per unit (ensembles
of L, 2L and S·L replicas), at the paper's layer sizes (6-layer MLP of width 100;
the 5-convolution CNN on 8x8 digits), in float32 and float64, and under every
noise model: the results must agree array for array. The steps are few, but the
kernels and shapes of a step are the real ones.
"""

import numpy as np
import pytest
import torch
import xarray as xr

import thermosgd
from thermosgd.data import load_dataset
from thermosgd.deep.models import cnn, mlp
from thermosgd.studies import engine


def _mlp(seed: int):
    return mlp(100, 100, 6, 1, seed=seed)


def _cnn(seed: int):
    return cnn(1, 8, 10, seed=seed, padding=2)


def _spec(seeds: int, per_unit: int, dtype: str, **train) -> dict:
    return {
        "data": {"source": "gaussian", "dim": 100, "online": True, "probe_size": 64},
        "train": {
            "loss": "bce",
            "lr": [0.05, 0.1, 0.4],
            "batch_size": [1, 4],
            "seeds": seeds,
            "steps": 12,
            "dtype": dtype,
            **train,
        },
        "record": {"points": 3},
        "sweep": {"seeds_per_unit": per_unit},
    }


def _assert_layouts_agree(spec: dict, **kwargs) -> xr.Dataset:
    seeds = spec["train"]["seeds"]
    runs = []
    for per_unit in (1, 2, seeds):
        spec = {**spec, "sweep": {"seeds_per_unit": per_unit}}
        runs.append(thermosgd.study(spec, **kwargs))
    ref = runs[0]
    for got in runs[1:]:
        assert sorted(got.data_vars) == sorted(ref.data_vars)
        for name in ref.data_vars:
            np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
    # the seeds differ (a test that compared one seed with itself would pass trivially)
    assert not np.array_equal(ref["grad_var"].isel(seed=0).values, ref["grad_var"].isel(seed=1).values)
    return ref


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_replicas_do_not_depend_on_the_seeds_beside_them(dtype):
    ds = _assert_layouts_agree(_spec(3, 1, dtype), model=_mlp)
    assert np.isfinite(ds["grad_var"].values).all()


@pytest.mark.parametrize("noise", ["gaussian", "frozen", "gd"])
def test_every_noise_model_keeps_the_bits_of_a_seed(noise):
    _assert_layouts_agree(_spec(3, 1, "float32", noise=noise, gd_batch=16), model=_mlp)


def test_finite_set_held_out_set_and_hessian_keep_the_bits_of_a_seed():
    spec = _spec(3, 1, "float64")
    spec["data"] = {"source": "gaussian", "dim": 100, "train_size": 200, "test_size": 50, "probe_size": 32}
    spec["record"] = {"points": 2, "hessian": True, "hessian_samples": 2}
    ds = _assert_layouts_agree(spec, model=_mlp)
    assert "test_loss" in ds and np.isfinite(ds["hessian_trace"].values).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cnn_replicas_do_not_depend_on_the_seeds_beside_them(dtype):
    images = load_dataset("digits", None, split="train")
    x = torch.as_tensor(images.images[:300].astype(np.float32) * np.float32(images.scale))
    y = torch.as_tensor(images.labels[:300])
    spec = _spec(3, 1, dtype)
    spec["data"] = {"source": "gaussian", "probe_size": 32}
    spec["train"].update(loss="cross_entropy", lr=[0.02, 0.1])
    ds = _assert_layouts_agree(spec, model=_cnn, data=(x, y))
    assert np.isfinite(ds["accuracy"].values).all()


def test_a_big_unit_trains_as_several_ensembles(monkeypatch):
    """Past ENSEMBLE_ELEMENTS a unit's seeds are cut into several ensembles, with the same bits."""
    spec = _spec(3, 3, "float32")
    whole = thermosgd.study(spec, model=_mlp)
    size = sum(p.numel() for p in _mlp(0).parameters())
    monkeypatch.setattr(engine, "ENSEMBLE_ELEMENTS", 3 * size)  # one seed's 3 learning rates
    cuts = []
    real = engine.ensemble_seeds
    monkeypatch.setattr(engine, "ensemble_seeds", lambda study, seeds: cuts.append(real(study, seeds)) or cuts[-1])
    cut = thermosgd.study(spec, model=_mlp)
    assert cuts == [[(0,), (1,), (2,)]]
    for name in whole.data_vars:
        np.testing.assert_array_equal(cut[name].values, whole[name].values, err_msg=name)


def test_a_model_with_other_layers_trains_each_seed_alone():
    """LayerNorm, tanh and the like may round a replica by its place in the ensemble: one seed each."""
    from thermosgd.studies.run import resolve

    def layernorm(seed: int):
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Linear(100, 8), torch.nn.LayerNorm(8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
        )

    assert engine.ensemble_seeds(resolve(_spec(3, 3, "float32"), model=layernorm), (0, 1, 2)) == [(0,), (1,), (2,)]
    assert engine.ensemble_seeds(resolve(_spec(3, 3, "float32"), model=_mlp), (0, 1, 2)) == [(0, 1, 2)]
