"""Deep models, and every deep preset (a study) at tiny size."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from thermosgd import presets
from thermosgd.deep.models import cnn, mlp, two_layer
from thermosgd.errors import UsageError
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
    assert "grad_var_layer" in ds and "last_weight_norm" in ds and "v_norm" not in ds and not config["substitute"]
    assert "not divided by |B|" in ds.attrs["grad_var_definition"]


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


def test_removed_second_path_points_to_the_study_api():
    import thermosgd.deep

    for name in ("train_deep", "train_sweep", "train_run", "DeepSpec", "Run", "TrainSet"):
        with pytest.warns(DeprecationWarning, match="thermosgd.study"), pytest.raises(AttributeError, match="study"):
            getattr(thermosgd.deep, name)


def test_a_deep_preset_is_a_study_in_its_folder(tmp_path):
    """The preset's folder holds the study it ran (resumable); a rerun reads its units and trains nothing."""
    from thermosgd.reproduce.deep import reproduce_deep

    reproduce_deep("fig2-middle", tmp_path, quick=True, progress=False)
    stamp = json.loads((tmp_path / "study" / "config.json").read_text())
    assert stamp["study"]["train"]["loss"] == "bce" and stamp["study"]["data"]["train_size"] == 48
    first = load(tmp_path)
    units = sorted((tmp_path / "study").rglob("*.nc"))
    mtimes = [p.stat().st_mtime_ns for p in units]
    reproduce_deep("fig2-middle", tmp_path, quick=True, progress=False)
    assert [p.stat().st_mtime_ns for p in units if "results" not in p.name] == [
        m for p, m in zip(units, mtimes) if "results" not in p.name
    ]
    np.testing.assert_array_equal(load(tmp_path)["grad_var"].values, first["grad_var"].values)


def test_fig2_middle_online_preset(tmp_path):
    ds, config = _check(
        reproduce_deep("fig2-middle-online", tmp_path, quick=True, progress=False), tmp_path, "fig2-middle-online", "lr"
    )
    assert config["online"] and "online" in config["labels"]
