"""Studies on a device (``[train] device``, ``study(..., device=)``, ``thermosgd study --device``).

What is claimed (docs/devices.md): models are built and every random number is drawn
on the CPU as on a CPU run and then moved, so a CUDA study sees the same initial
weights and draws and equals the CPU study to floating-point tolerance;
``device = "cpu"`` is the code path of before the option, bit for bit, and its
folders still resume; a folder resumes only on the device it was started on.

The tests marked ``gpu`` need a CUDA GPU and are skipped without one (CI has none).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import thermosgd
from thermosgd.cli import main
from thermosgd.deep.models import cnn, mlp
from thermosgd.errors import UsageError
from thermosgd.studies import engine
from thermosgd.studies.run import check_folder
from thermosgd.studies.spec import resolve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"
)
PROBE = 32


def small_mlp(seed: int):
    return mlp(5, 16, 3, 1, seed=seed)


def small_cnn(seed: int):
    return cnn(1, 8, 10, seed=seed, channels=4, kernel_size=3, conv_layers=2, padding=1)


def spec(noise: str = "sgd", hessian: bool = False, loss: str = "bce") -> dict:
    return {
        "data": {"dim": 5, "probe_size": PROBE, "test_size": 32},
        "train": {"loss": loss, "lr": [0.05, 0.2], "batch_size": [1, 4], "seeds": 2, "steps": 20, "noise": noise,
                  "gd_batch": 16},
        "record": {"steps": [0, 10, 20], "hessian": hessian, "hessian_samples": 4},
    }  # fmt: skip


def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.rand(96, 1, 8, 8, generator=g), torch.randint(0, 10, (96,), generator=g)


def toml(folder: Path, extra: str = "") -> Path:
    """examples/study.toml, small, beside a copy of mymodels.py."""
    text = (EXAMPLES / "study.toml").read_text()
    text = text.replace("seeds = 16 ", "seeds = 2 ").replace("steps = 2000\n", "steps = 6\n")
    text = text.replace("steps = [0, 250, 500, 1000, 2000]", "steps = [0, 6]").replace(
        "probe_size = 256", "probe_size = 16"
    )
    shutil.copy(EXAMPLES / "mymodels.py", folder / "mymodels.py")
    path = folder / "study.toml"
    path.write_text(text.replace('noise = "sgd"', 'noise = "sgd"\n' + extra))
    return path


def assert_identical(a, b) -> None:
    assert sorted(a.variables) == sorted(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert a.attrs == b.attrs


def test_the_device_reaches_the_config_and_the_stamp_only_off_the_cpu(tmp_path):
    path = toml(tmp_path)
    cpu = resolve(path)
    assert cpu.cfg.train.device == "cpu"
    assert "device" not in cpu.stamp()["study"]["train"]  # the stamp of before the option: old folders resume
    gpu = resolve(path, device="cuda:1")  # the spelling only: whether the GPU exists is checked at training
    assert gpu.cfg.train.device == "cuda:1" and gpu.stamp()["study"]["train"]["device"] == "cuda:1"
    assert resolve(toml(tmp_path, 'device = "cuda"')).cfg.train.device == "cuda"
    assert resolve(spec(), model=small_mlp, device="cuda").cfg.train.device == "cuda"


@pytest.mark.parametrize("bad", ["gpu", "CUDA", "cuda:", "mps", 0])
def test_a_misspelled_device_is_refused(tmp_path, bad):
    with pytest.raises(UsageError, match="device must be") as err:
        resolve(spec(), model=small_mlp, device=bad)
    assert err.value.param == "device"
    with pytest.raises(UsageError, match=r"\[train\] device must be"):
        resolve({**spec(), "train": {**spec()["train"], "device": bad}}, model=small_mlp)


def test_a_missing_gpu_is_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="no CUDA GPU is available") as err:
        thermosgd.study(spec(), model=small_mlp, device="cuda")
    assert err.value.param == "device" and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="no CUDA GPU"):
        thermosgd.study(spec(), tmp_path / "lib", model=small_mlp, device="cuda")
    path = toml(tmp_path)
    assert main(["study", str(path), "--out", str(tmp_path / "a"), "--device", "cuda", "--no-progress"]) == 2
    assert main(["study", str(path), "--out", str(tmp_path / "a"), "--device", "tpu", "--no-progress"]) == 2
    assert main(["study", str(path), "--dry-run", "--device", "cuda"]) == 2
    on_gpu = toml(tmp_path, 'device = "cuda"')
    assert main(["study", str(on_gpu), "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    err_text = capsys.readouterr().err
    lines = [line for line in err_text.splitlines() if line.startswith("error:")]
    assert len(lines) == 4 and sum("no CUDA GPU is available" in line for line in lines) == 3
    assert all("(--device)" in line for line in lines)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "lib").exists()


@pytest.mark.parametrize("noise", ["sgd", "gaussian", "frozen"])
def test_device_cpu_is_the_default_path_bit_for_bit(noise):
    default = thermosgd.study(spec(noise, hessian=True), model=small_mlp)
    explicit = thermosgd.study(spec(noise, hessian=True), model=small_mlp, device="cpu")
    assert_identical(explicit, default)
    assert "device" not in json.loads(explicit.attrs["config"])["study"]["train"]


def test_cli_device_cpu_resumes_a_folder_of_before_the_option(tmp_path):
    path = toml(tmp_path)
    out = tmp_path / "r"
    assert main(["study", str(path), "--out", str(out), "--executor", "inline", "--no-progress"]) == 0
    before = (out / "config.json").read_text()
    assert '"device"' not in before  # what a folder written before the option holds
    assert main(["study", str(path), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert (out / "config.json").read_text() == before


def test_a_folder_resumes_only_on_its_own_device(tmp_path):
    path = toml(tmp_path)
    out = tmp_path / "r"
    assert main(["study", str(path), "--out", str(out), "--executor", "inline", "--no-progress"]) == 0
    with pytest.raises(UsageError, match=r"run on device 'cpu'.*resumes only with device 'cpu'") as err:
        check_folder(resolve(path, device="cuda"), out)  # what run_study checks before it trains
    assert err.value.param == "out" and "\n" not in str(err.value)
    check_folder(resolve(path, device="cpu"), out)


def test_a_study_on_a_gpu_never_plans_local_worker_processes(tmp_path, monkeypatch):
    from thermosgd.studies import run

    monkeypatch.setattr(run, "estimate", lambda study: (1e6, 1))  # long enough for workers on the CPU
    study = resolve(toml(tmp_path, "[sweep]\nseeds_per_unit = 1\n"), device="cuda")
    assert run.plan_study(study, executor="auto").executor == "inline"
    with pytest.raises(UsageError, match="runs in this process") as err:
        run.plan_study(study, executor="processes", workers=2)
    assert err.value.param == "executor"


@pytest.mark.parametrize("noise", ["sgd", "frozen"])
def test_every_tensor_of_the_ensemble_and_its_draws_is_on_the_one_device(noise):
    """The meta device stands in for a GPU: the ensemble, the probe and held-out sets and each
    step's weights and noise land on the device given to _build and _Noise, and nothing else."""
    meta = torch.device("meta")
    study = resolve(spec(noise), model=small_mlp)
    ens, parts = engine._build(study, (0, 1), 0, meta)
    tensors = [*ens.params.values(), *ens.buffers.values()]
    tensors += [t for p in parts for s in (p.probe, p.test) if s is not None for t in (s.x, s.y)]
    assert tensors and all(t.device == meta for t in tensors)
    assert all(p.hess_gen.device == torch.device("cpu") for p in parts)  # the draws stay on the CPU
    if noise == "sgd":  # "frozen" needs σ₀² from a backward pass, which meta tensors cannot feed to the checks
        noise_ = engine._Noise(study, ens, (0, 1), 0, 1, meta)
        w, extra = noise_.draw()
        assert w.device == meta and extra is None and noise_.lr_all.device == meta
    else:
        cpu = engine._build(study, (0, 1), 0, torch.device("cpu"))[0]
        noise_ = engine._Noise(study, cpu, (0, 1), 0, 16, torch.device("cpu"))
        noise_.dev, noise_.lr_dev = meta, noise_.lr_dev.to(meta)
        noise_.sigma2 = [{k: v.to(meta) for k, v in s.items()} for s in noise_.sigma2 or []]
        w, extra = noise_.draw()
        assert w.device == meta and extra and all(v.device == meta for v in extra.values())


# ---- on a GPU ---------------------------------------------------------------------------------


def assert_close_across_devices(cpu, gpu, probe: int, units: int) -> None:
    """float32 CUDA against the CPU, the same draws.

    - loss-like values (losses, norms): rtol 1e-4, a few float32 ulps (≈ 6e-8 each) grown over
      20 steps of a trajectory;
    - sums of squares of many terms (grad_var, the Hessian trace, its standard error and its
      bound): rtol 1e-3, since they are reduced in another order on the GPU and a variance (or a
      quadratic form of a Rademacher probe) is a difference of nearly equal sums;
    - counts: two sign flips of a pre-activation or logit that lies within rounding of zero,
      2 / (probe · units) absolute for activation rates (``units``: the fewest ReLU outputs of a
      layer per sample) and 2 / probe for accuracy.
    """
    assert sorted(gpu.data_vars) == sorted(cpu.data_vars)
    for name in cpu.data_vars:
        a, b = gpu[name].values, cpu[name].values
        if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
            np.testing.assert_array_equal(a, b, err_msg=name)
        elif "activation_rate" in name:
            np.testing.assert_allclose(a, b, rtol=0, atol=2 / (probe * units), err_msg=name)
        elif "accuracy" in name:
            np.testing.assert_allclose(a, b, rtol=0, atol=2 / probe, err_msg=name)
        elif name.startswith(("grad_var", "hessian")):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-7, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("noise", ["sgd", "gaussian", "frozen"])
def test_an_mlp_study_on_cuda_equals_the_cpu_to_tolerance(noise):
    cpu = thermosgd.study(spec(noise, hessian=True), model=small_mlp)
    gpu = thermosgd.study(spec(noise, hessian=True), model=small_mlp, device="cuda")
    assert_close_across_devices(cpu, gpu, PROBE, 16)  # width 16
    assert json.loads(gpu.attrs["config"])["study"]["train"]["device"] == "cuda"
    assert not bool(cpu["diverged"].any())


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("noise", ["sgd", "gd"])
def test_a_cnn_study_on_cuda_equals_the_cpu_to_tolerance(noise):
    data = images()
    cpu = thermosgd.study(spec(noise, loss="cross_entropy"), model=small_cnn, data=data)
    gpu = thermosgd.study(spec(noise, loss="cross_entropy"), model=small_cnn, data=data, device="cuda")
    assert_close_across_devices(cpu, gpu, PROBE, 4 * 8 * 8)  # 4 channels of 8x8


@pytest.mark.gpu
@needs_gpu
def test_a_toml_study_on_cuda_resumes_on_cuda_and_not_on_the_cpu(tmp_path):
    path = toml(tmp_path, 'device = "cuda"')
    out = tmp_path / "r"
    assert main(["study", str(path), "--out", str(out), "--no-progress"]) == 0
    first = thermosgd.load(out)
    assert main(["study", str(path), "--out", str(out), "--no-progress"]) == 0  # resumed: nothing to do
    assert_identical(thermosgd.load(out), first)
    assert main(["study", str(path), "--out", str(out), "--device", "cpu", "--no-progress"]) == 2
