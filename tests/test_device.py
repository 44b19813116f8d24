"""The device option: ``[train] device``, ``train(cfg, device=...)``, ``--device``, deep presets.

What is claimed (docs/devices.md): every random number is drawn on the CPU from
the same per-replica generators whatever the device, so a CUDA run sees the same
draws as a CPU run and its results equal the CPU's to floating-point tolerance
(GPU arithmetic differs in the last bits); ``device = "cpu"`` is the code path of
before the option, bit for bit (also tests/test_reference.py).

The tests marked ``gpu`` need a CUDA GPU and are skipped without one (CI has none).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import thermosgd
from thermosgd.checks import torch_device
from thermosgd.cli import main
from thermosgd.config import from_dict
from thermosgd.errors import UsageError

NOISES = ["sgd", "gd", "gaussian", "frozen"]
needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"
)


def _cfg(noise: str, dtype: str = "float32", steps: int = 30):
    return from_dict(
        {
            "model": {"inputs": 5, "hidden": 6},
            "data": {"probe_size": 16},
            "train": {
                "lr": [0.05, 0.2],
                "batch_size": [1, 3],
                "seeds": 3,
                "steps": steps,
                "record_every": 5,
                "noise": noise,
                "gd_batch": 8,
                "dtype": dtype,
            },
        }
    )


def _same(a, b) -> None:
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_device_names_are_checked_in_the_config():
    assert from_dict({}).train.device == "cpu"
    assert from_dict({"train": {"device": "cuda:3"}}).train.device == "cuda:3"  # spelling only; see below
    for bad in ["gpu", "CUDA", "cuda:", "cuda:-1", "cuda:01", "mps", 0]:
        with pytest.raises(UsageError, match=r"\[train\] device must be"):
            from_dict({"train": {"device": bad}})


def test_a_missing_gpu_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_device("cpu") == torch.device("cpu")
    for name in ["cuda", "cuda:0"]:
        with pytest.raises(UsageError, match="no CUDA GPU is available") as err:
            torch_device(name, "[train] device")
        assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="no CUDA GPU"):
        thermosgd.train(_cfg("sgd"), device="cuda")
    with pytest.raises(UsageError, match="no CUDA GPU"):
        thermosgd.train(_cfg("sgd").replace(train={"device": "cuda"}))


def test_a_gpu_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert torch_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UsageError, match="has 2 CUDA GPU"):
        torch_device("cuda:2")


@pytest.mark.parametrize("noise", NOISES)
def test_cpu_device_is_the_default_path_bit_for_bit(noise):
    cfg = _cfg(noise)
    default = thermosgd.train(cfg)
    explicit = thermosgd.train(cfg, device="cpu")
    _same(explicit, default)
    assert json.loads(explicit.attrs["config"])["train"]["device"] == "cpu"


def test_cli_refuses_a_missing_gpu_before_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = tmp_path / "grid.toml"
    cfg.write_text("[train]\nsteps = 5\n")
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "r"), "--device", "cuda", "--no-progress"]) == 2
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "r"), "--device", "tpu", "--no-progress"]) == 2
    assert (
        main(["reproduce", "fig3", "--quick", "--out", str(tmp_path / "q"), "--device", "cuda", "--no-progress"]) == 2
    )
    cfg.write_text('[train]\nsteps = 5\ndevice = "cuda"\n')
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("no CUDA GPU is available") == 3 and "--device" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "q").exists()


def test_cli_device_cpu_runs_and_is_recorded(tmp_path):
    cfg = tmp_path / "grid.toml"
    cfg.write_text("[train]\nsteps = 5\n")
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "r"), "--device", "cpu", "--no-progress"]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["device"] == "cpu"


# ---- on a GPU ---------------------------------------------------------------------------------


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("noise", NOISES)
def test_cuda_equals_cpu_to_tolerance(noise):
    """float64, 30 steps: the same draws, arithmetic equal to 1e-9 relative (GPU rounding only)."""
    cfg = _cfg(noise, dtype="float64")
    cpu, gpu = thermosgd.train(cfg), thermosgd.train(cfg, device="cuda")
    for name in cpu.data_vars:
        np.testing.assert_allclose(gpu[name].values, cpu[name].values, rtol=1e-9, atol=1e-12, err_msg=name)
    assert json.loads(gpu.attrs["config"])["train"]["device"] == "cuda"


@pytest.mark.gpu
@needs_gpu
def test_cuda_float32_run_is_reproducible():
    """Two CUDA runs of the same config: the same numbers (the draws are CPU-drawn; kernels are deterministic here)."""
    cfg = _cfg("sgd")
    a, b = thermosgd.train(cfg, device="cuda"), thermosgd.train(cfg, device="cuda")
    for name in a.data_vars:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.gpu
@needs_gpu
def test_deep_preset_on_cuda_equals_cpu_to_tolerance(tmp_path):
    """fig2-middle (quick) trained on the GPU: the same initial weights and draws as on the CPU, float32
    arithmetic in another order. Loss-like values to rtol 1e-4 (a few float32 ulps grown over the run);
    grad_var, a mean of sums of squared deviations reduced in another order, to 1e-3; activation rates and
    accuracy, counts, to two sign flips of a value within rounding of zero."""
    import xarray as xr

    from thermosgd.reproduce.deep import reproduce_deep

    reproduce_deep("fig2-middle", tmp_path / "cpu", quick=True, progress=False)
    reproduce_deep("fig2-middle", tmp_path / "gpu", quick=True, progress=False, device="cuda")
    cpu, gpu = (xr.load_dataset(tmp_path / k / "results.nc") for k in ("cpu", "gpu"))
    config = json.loads(gpu.attrs["config"])
    assert config["device"] == "cuda" and "device" not in json.loads(cpu.attrs["config"])
    assert json.loads((tmp_path / "gpu" / "study" / "config.json").read_text())["study"]["train"]["device"] == "cuda"
    probe, width = config["probe_size"], config["width"]
    assert sorted(gpu.data_vars) == sorted(cpu.data_vars)
    for name in cpu.data_vars:
        a, b = gpu[name].values, cpu[name].values
        if name.startswith("diverged"):
            np.testing.assert_array_equal(a, b, err_msg=name)
        elif name.startswith("activation_rate"):
            np.testing.assert_allclose(a, b, rtol=0, atol=2 / (probe * width), err_msg=name)
        elif name == "accuracy":
            np.testing.assert_allclose(a, b, rtol=0, atol=2 / probe, err_msg=name)
        else:
            rtol = 1e-3 if name.startswith("grad_var") else 1e-4
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6, err_msg=name)


@pytest.mark.gpu
@needs_gpu
def test_cuda_graphs_replay_the_eager_steps(monkeypatch):
    """float64 over chunk boundaries, with runs of 7 steps (replayed as 4 + 2 + 1) and a diverging
    replica frozen between replays: graphs vs the eager loop on the GPU to 1e-9 relative (the same
    kernels; cuBLAS may pick another algorithm under capture)."""
    from thermosgd.twolayer.engine import TorchBackend

    cfg = _cfg("sgd", dtype="float64", steps=300).replace(train={"record_every": 7, "lr": [0.05, 3.0]})
    graphs = thermosgd.train(cfg, device="cuda")
    monkeypatch.setattr(TorchBackend, "cuda_graphs", False)
    eager = thermosgd.train(cfg, device="cuda")
    for name in eager.data_vars:
        np.testing.assert_allclose(graphs[name].values, eager[name].values, rtol=1e-9, atol=1e-12, err_msg=name)
    assert bool(eager.diverged.any())


@pytest.mark.gpu
@needs_gpu
def test_cuda_with_drawing_processes_equals_cpu(monkeypatch):
    """600 seeds: beside the GPU the streams are drawn in worker processes; the same draws as the CPU's."""
    from thermosgd.twolayer import workers

    started = []

    class Counted(workers.StreamWorkers):
        def __init__(self, *args):
            super().__init__(*args)
            started.append(len(self._procs))

    cfg = _cfg("sgd", dtype="float64", steps=20).replace(train={"seeds": 600})
    cpu = thermosgd.train(cfg)
    monkeypatch.setattr(workers, "StreamWorkers", Counted)
    gpu = thermosgd.train(cfg, device="cuda")
    assert started and started[0] >= 1
    for name in cpu.data_vars:
        np.testing.assert_allclose(gpu[name].values, cpu[name].values, rtol=1e-9, atol=1e-12, err_msg=name)
