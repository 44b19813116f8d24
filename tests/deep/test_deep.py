"""Deep models, the SGD loop, and every deep preset at tiny size."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from thermosgd import presets
from thermosgd.deep import Run, TrainSet, train_sweep
from thermosgd.deep.models import cnn, mlp, two_layer
from thermosgd.errors import UsageError
from thermosgd.instruments import every, weight_norms
from thermosgd.reproduce.deep import reproduce_deep
from thermosgd.sweep.store import load


def test_paper_architectures():
    fc = mlp(100, 100, 6, 1, seed=0)
    assert sum(isinstance(m, nn.Linear) for m in fc) == 6 and fc(torch.randn(2, 100)).shape == (2, 1)
    conv = cnn(1, 28, 10, seed=0)
    convs = [m for m in conv if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(
        c.out_channels == 10 and c.kernel_size == (5, 5) and c.stride == (1, 1) for c in convs
    )
    assert isinstance(conv[-1], nn.Linear) and conv(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert cnn(1, 8, 10, seed=0, padding=2)(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    net = two_layer(3072, 300, 10, seed=0)
    assert net[-1].bias is None and net[-1].weight.shape == (10, 300)


def test_models_are_seeded_without_touching_global_state():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b, c = mlp(4, 5, 3, 1, seed=7), mlp(4, 5, 3, 1, seed=7), mlp(4, 5, 3, 1, seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[1].weight, c[1].weight)


def _setup(seed):
    gen = torch.Generator().manual_seed(seed)
    data = TrainSet(torch.randn(32, 3, generator=gen), torch.randint(0, 2, (32, 1), generator=gen).float())
    return Run(mlp(3, 4, 2, 1, seed=seed), data, {"w": lambda m: weight_norms(m).value})


def test_divergent_run_is_marked_and_others_continue():
    ds = train_sweep(
        _setup,
        nn.BCEWithLogitsLoss(),
        lrs=(0.1, 1e30),
        batch_sizes=(4,),
        seeds=(0,),
        steps=6,
        schedule=every(1),
        progress=False,
    )
    assert ds["diverged"].sel(lr=1e30).item() and not ds["diverged"].sel(lr=0.1).item()
    assert np.isfinite(ds["w"].sel(lr=0.1)).all()
    tail = ds["w"].sel(lr=1e30).squeeze().values
    assert np.isfinite(tail[0]) and np.isnan(tail[-1])


def test_sweep_is_reproducible():
    kwargs = dict(lrs=(0.1,), batch_sizes=(2, 4), seeds=(0, 1), steps=5, schedule=every(5), progress=False)
    a = train_sweep(_setup, nn.BCEWithLogitsLoss(), **kwargs)
    b = train_sweep(_setup, nn.BCEWithLogitsLoss(), **kwargs)
    np.testing.assert_array_equal(a["w"].values, b["w"].values)
    assert a["w"].dims == ("lr", "batch_size", "seed", "step") and a.sizes["seed"] == 2


def _check(verdicts, out, name, over):
    """The folder holds the results, config, figures and a verdict on the plotted metric."""
    assert len(verdicts) == 1 and verdicts[0].preset == name and verdicts[0].over == over
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdicts"][0]["status"] == verdicts[0].status
    assert "Collapse fit" in (out / "report.md").read_text()
    ds = load(out)
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == name and ds.attrs["kind"] == "deep"
    assert ds["loss"].dims == ("lr", "batch_size", "seed", "step") and ds["step"].values[0] == 0
    assert ds.sizes[over] == 2 and np.isfinite(ds[config["figures"][0]]).all()
    assert any(p.suffix == ".png" for p in (out / "figures").iterdir())
    return ds, config


def test_fig2_middle_tiny(tmp_path):
    ds, config = _check(
        reproduce_deep("fig2-middle", tmp_path, quick=True, progress=False), tmp_path, "fig2-middle", "lr"
    )
    assert "grad_var_layer" in ds and "trace_bound" in ds and not config["substitute"]


def test_fig2_bottom_tiny_on_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    n = 48
    header = bytes.fromhex("00000803") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (data / "train-images-idx3-ubyte").write_bytes(header + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
    labels = bytes.fromhex("00000801") + n.to_bytes(4, "big") + rng.integers(0, 10, n, dtype=np.uint8).tobytes()
    (data / "train-labels-idx1-ubyte").write_bytes(labels)
    ds, config = _check(
        reproduce_deep("fig2-bottom", tmp_path / "out", quick=True, progress=False, data_dir=data),
        tmp_path / "out",
        "fig2-bottom",
        "lr",
    )
    assert config["dataset"] == "fashion-mnist" and "cross-entropy" in config["labels"]


@pytest.mark.parametrize("name", ["fig11", "fig12"])
def test_fig11_fig12_tiny_on_cifar_binary(tmp_path, name):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(_cifar_records(rng, 10))
    ds, config = _check(
        reproduce_deep(name, tmp_path / "out", quick=True, progress=False, data_dir=tmp_path),
        tmp_path / "out",
        name,
        "lr",
    )
    assert "v_norm" in ds and "activation_rate" in ds and config["dataset"] == "cifar10"


def _cifar_records(rng, n):
    records = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
    records[:, 0] = rng.integers(0, 10, n)
    return records.tobytes()


@pytest.mark.parametrize("name", ["fig13", "fig14"])
def test_fig13_fig14_tiny_on_digits_substitute(tmp_path, name):
    ds, config = _check(
        reproduce_deep(name, tmp_path, quick=True, progress=False, dataset="digits"), tmp_path, name, "batch_size"
    )
    assert config["substitute"] and "SUBSTITUTE" in config["note"]
    assert all("digits-substitute" in p.name for p in (tmp_path / "figures").iterdir())


def test_missing_data_and_bad_names(tmp_path, monkeypatch):
    monkeypatch.delenv("THERMOSGD_DATA", raising=False)
    with pytest.raises(UsageError, match=r"data_batch_1.bin.*THERMOSGD_DATA|THERMOSGD_DATA.*digits"):
        reproduce_deep("fig11", tmp_path, quick=True, progress=False)
    with pytest.raises(UsageError, match=rf"searched {tmp_path}.*digits"):
        reproduce_deep("fig2-bottom", tmp_path, quick=True, progress=False, data_dir=tmp_path)
    with pytest.raises(UsageError, match="unknown preset"):
        reproduce_deep("fig99", tmp_path)
    with pytest.raises(UsageError, match="no data-set substitute"):
        reproduce_deep("fig2-middle", tmp_path, dataset="digits")
    assert {p.name for p in presets.TABLE if p.kind == "deep"} == {
        "fig2-middle",
        "fig2-middle-online",
        "fig2-bottom",
        "fig11",
        "fig12",
        "fig13",
        "fig14",
    }


def test_online_gaussian_is_fresh_per_index_and_reproducible():
    from thermosgd.deep.runs import OnlineGaussian

    a, b = OnlineGaussian(5, seed=3), OnlineGaussian(5, seed=3)
    x1, y1 = a.batch(torch.tensor([7, 8, 7]))
    x2, _ = b.batch(torch.tensor([7]))
    assert torch.equal(x1[0], x1[2]) and torch.equal(x1[0], x2[0])  # a sample is a function of its index
    assert not torch.equal(x1[0], x1[1]) and set(y1.flatten().tolist()) <= {0.0, 1.0}
    assert not torch.equal(OnlineGaussian(5, seed=4).batch(torch.tensor([7]))[0], x2)
    # Fresh samples: over many indices the inputs are standard normal (mean 0, var 1; 4000 draws, 5 s.e.).
    x, y = a.batch(torch.arange(1000, 1800))
    assert abs(float(x.mean())) < 5 / math.sqrt(x.numel()) and abs(float(x.var()) - 1) < 5 * math.sqrt(2 / x.numel())
    assert abs(float(y.mean()) - 0.5) < 5 * 0.5 / math.sqrt(y.numel())


def test_fig2_middle_online_preset(tmp_path):
    ds, config = _check(
        reproduce_deep("fig2-middle-online", tmp_path, quick=True, progress=False), tmp_path, "fig2-middle-online", "lr"
    )
    assert config["online"] and "online" in config["labels"]
