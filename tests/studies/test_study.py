"""thermosgd study: the TOML as written, resume after kill -9, layouts, executors, refusals.

Sizes are tiny (a few seeds, tens of steps) so that the file takes seconds; the
bit-identity assertions hold at any size.
"""

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import thermosgd
from thermosgd.cli import main
from thermosgd.config import load_study_toml
from thermosgd.errors import UsageError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def small_toml(folder: Path, seeds: int = 3, steps: int = 40, extra: str = "") -> Path:
    """examples/study.toml as written, with fewer seeds and steps, beside a copy of mymodels.py."""
    text = (EXAMPLES / "study.toml").read_text()
    text = text.replace("seeds = 16 ", f"seeds = {seeds} ").replace("steps = 2000\n", f"steps = {steps}\n")
    text = text.replace("steps = [0, 250, 500, 1000, 2000]", f"steps = [0, {steps // 2}, {steps}]")
    shutil.copy(EXAMPLES / "mymodels.py", folder / "mymodels.py")
    path = folder / "study.toml"
    path.write_text(text + extra)
    return path


def assert_identical(a, b):
    assert sorted(a.variables) == sorted(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert a.attrs == b.attrs


def test_the_minimum_toml_is_accepted_as_written():
    cfg = load_study_toml(EXAMPLES / "study.toml")
    assert cfg.model.factory == "mymodels:layernorm_mlp" and cfg.model.folder == str(EXAMPLES)
    assert cfg.train.lr == (0.025, 0.05, 0.1) and cfg.train.seeds == tuple(range(16))
    assert cfg.record.steps == (0, 250, 500, 1000, 2000) and cfg.data.online


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(study file, results of an uninterrupted inline run)."""
    base = tmp_path_factory.mktemp("study")
    path = small_toml(base, extra="[sweep]\nseeds_per_unit = 1\n")
    assert main(["study", str(path), "--out", str(base / "ref"), "--executor", "inline", "--no-progress"]) == 0
    return path, thermosgd.load(base / "ref")


def test_results_have_the_sweep_dims_and_collapse_fits_them(reference, tmp_path):
    _, ds = reference
    assert ds["grad_var"].dims == ("lr", "batch_size", "seed", "step")
    assert ds["activation_rate"].dims == ("lr", "batch_size", "seed", "step")
    assert ds["grad_var_layer"].dims[-1] == "layer" and list(ds["relu_layer"].values) == ["2", "4"]
    assert not bool(ds["diverged"].any()) and np.isfinite(ds["grad_var"].values).all()
    # every lr starts from the same model: identical at step 0
    np.testing.assert_array_equal(ds["grad_var"].isel(step=0, lr=0).values, ds["grad_var"].isel(step=0, lr=2).values)
    from thermosgd.analysis.collapse import fit_collapse

    fit = fit_collapse(ds, "grad_var", over="lr", n_boot=20)
    assert fit.metric == "grad_var" and np.isfinite(fit.exponent)


def test_layout_and_executor_do_not_change_a_bit(reference, tmp_path):
    path, ref = reference
    text = path.read_text().replace("seeds_per_unit = 1", "seeds_per_unit = 2")
    other = tmp_path / "study.toml"
    other.write_text(text)
    shutil.copy(path.parent / "mymodels.py", tmp_path / "mymodels.py")
    argv = ["study", str(other), "--out", str(tmp_path / "p"), "--executor", "processes", "--workers", "2"]
    assert main(argv + ["--no-progress"]) == 0
    got = thermosgd.load(tmp_path / "p")
    for name in ref.data_vars:
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)


def test_resume_after_kill_9_is_identical(reference, tmp_path):
    path, ref = reference
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "thermosgd", "study", str(path), "--out", str(out), "--executor", "inline"]
    proc = subprocess.Popen(cmd + ["--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / "units").glob("unit-*.nc.sha256")) if (out / "units").is_dir() else True:
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main(["study", str(path), "--out", str(out), "--executor", "inline", "--no-progress"]) == 0
    assert_identical(thermosgd.load(out), ref)
    status = thermosgd.status(out)
    assert status.done == status.units == 3


def test_a_folder_of_something_else_or_another_study_is_refused(reference, tmp_path, capsys):
    path, _ = reference
    (tmp_path / "mine.txt").write_text("user data")
    assert main(["study", str(path), "--out", str(tmp_path), "--no-progress"]) == 2
    assert (tmp_path / "mine.txt").read_text() == "user data"
    other = tmp_path / "b"
    other.mkdir()
    changed = other / "study.toml"
    changed.write_text(path.read_text().replace("lr = [0.025, 0.05, 0.1]", "lr = [0.2]"))
    shutil.copy(path.parent / "mymodels.py", other / "mymodels.py")
    ref_dir = path.parent / "ref"
    assert main(["study", str(changed), "--out", str(ref_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and err.count("\n") == 2


def test_dry_run_estimates_and_writes_nothing(reference, tmp_path, capsys):
    path, _ = reference
    assert main(["study", str(path), "--dry-run", "--out", str(tmp_path / "new")]) == 0
    line = capsys.readouterr().out
    assert "3 lr × 1 batch size × 3 seeds × 40 steps in 3 units" in line and "estimated" in line
    assert not (tmp_path / "new").exists()


# ---- the model factory and Python objects ----


def unseeded_factory(seed: int) -> nn.Module:
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))  # draws from the global generator


SPEC = {
    "data": {"source": "gaussian", "dim": 5, "probe_size": 16},
    "train": {"lr": [0.05, 0.1], "seeds": 2, "steps": 12},
    "record": {"steps": [0, 6, 12]},
}


def test_an_unseeded_factory_is_reproducible_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = thermosgd.study(SPEC, model=unseeded_factory)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(7)
    b = thermosgd.study(SPEC, model=unseeded_factory)
    assert_identical(a, b)
    assert not np.array_equal(a["weight_norm"].sel(seed=0).values, a["weight_norm"].sel(seed=1).values)


def test_python_objects_tensors_and_dataset_agree():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 5, generator=g), torch.randint(0, 2, (40,), generator=g).float()
    spec = {**SPEC, "data": {"probe_size": 16}}
    from_tensors = thermosgd.study(spec, model=unseeded_factory, data=(x, y))
    from_dataset = thermosgd.study(spec, model=unseeded_factory, data=torch.utils.data.TensorDataset(x, y))
    assert_identical(from_tensors, from_dataset)


def test_a_study_that_cannot_be_fingerprinted_does_not_resume(tmp_path):
    factory = eval("lambda seed: __import__('torch').nn.Sequential(__import__('torch').nn.Linear(5, 1))")
    thermosgd.study(SPEC, tmp_path / "o", model=factory)
    with pytest.raises(UsageError, match="cannot be fingerprinted"):
        thermosgd.study(SPEC, tmp_path / "o", model=factory)
    with pytest.raises(UsageError, match="runs in this process"):
        thermosgd.study(SPEC, tmp_path / "p", model=unseeded_factory, executor="processes")


# ---- layers ----


class Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 1)

    def forward(self, x):
        return self.lin(x - x.mean(0))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)), "use GroupNorm or LayerNorm"),
        (lambda: nn.Sequential(nn.Linear(5, 4), nn.Bilinear(4, 4, 1)), "layer '1' (Bilinear) is not supported"),
        (lambda: Mixer(), "mixes the samples of a batch"),
    ],
)
def test_unsupported_layers_are_refused_in_one_line(build, message):
    with pytest.raises(UsageError, match=re.escape(message)) as info:
        thermosgd.study(SPEC, model=lambda seed: build())
    assert "\n" not in str(info.value)


def test_eval_mode_batchnorm_is_accepted():
    thermosgd.study(SPEC, model=lambda seed: nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4).eval(), nn.Linear(4, 1)))


class Tokens(nn.Module):
    """Embedding → MultiheadAttention → LayerNorm → Conv1d → GroupNorm → GELU/Tanh → Linear."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 8)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.conv = nn.Conv1d(8, 4, 3)
        self.group = nn.GroupNorm(2, 4)
        self.act, self.tanh = nn.GELU(), nn.Tanh()
        self.head = nn.Linear(4, 3)

    def forward(self, tokens):
        h = self.emb(tokens)
        h = self.norm(h + self.att(h, h, h, need_weights=False)[0])
        h = self.tanh(self.act(self.group(self.conv(h.transpose(1, 2)))))
        return self.head(h.mean(-1))


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # gradient_variance's vmap of attention
def test_sequence_model_with_every_listed_layer_runs_and_matches_the_single_model_instrument():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 7, (30, 6), generator=g), torch.randint(0, 3, (30,), generator=g)
    spec = {"data": {"probe_size": 10}, "train": {"loss": "cross_entropy", "lr": [0.1], "steps": 3}}
    ds = thermosgd.study({**spec, "record": {"steps": [0, 3]}}, model=lambda seed: Tokens(), data=(x, y))
    assert "activation_rate" not in ds and np.isfinite(ds["grad_var"].values).all()
    from thermosgd.instruments import gradient_variance
    from thermosgd.studies.model import build

    model = build(lambda seed: Tokens(), 0, 0, torch.float32)
    gv = gradient_variance(model, nn.CrossEntropyLoss(), x[:10], y[:10], fast=False)
    np.testing.assert_allclose(ds["grad_var"].isel(step=0).values.ravel(), gv.value, rtol=1e-4)


# ---- data sources, the Hessian row, Dask ----


def test_file_source_records_the_held_out_set_and_the_hessian_trace(tmp_path):
    g = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x=g.normal(size=(40, 5)),
        y=g.integers(0, 2, 40).astype(float),
        x_test=g.normal(size=(12, 5)),
        y_test=g.integers(0, 2, 12).astype(float),
    )
    (tmp_path / "m.py").write_text(
        "from torch import nn\ndef net(seed):\n    return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 1))\n"
    )
    spec = {
        "model": {"factory": "m:net", "folder": str(tmp_path)},
        "data": {"source": "file", "file": str(tmp_path / "d.npz"), "probe_size": 16},
        "train": {"lr": [0.1], "steps": 5, "dtype": "float64"},
        "record": {"steps": [0, 5], "hessian": True, "hessian_samples": 400},
    }
    ds = thermosgd.study(spec)
    assert {"test_loss", "test_accuracy", "hessian_trace", "hessian_trace_stderr"} <= set(ds.data_vars)
    # Hutchinson against the exact trace of the probe loss's Hessian at step 0 (4 s.e.; 400 probes, seed-derived)
    est, se = (float(ds[v].isel(step=0).squeeze()) for v in ("hessian_trace", "hessian_trace_stderr"))
    assert abs(est - _exact_trace(spec)) < 4 * se


def _exact_trace(spec) -> float:
    """Tr(H) of the mean BCE over the probe set at initialization, by torch.autograd.functional.hessian."""
    from thermosgd.studies.model import build
    from thermosgd.studies.spec import resolve

    study = resolve(spec)
    model = build(study.factory, 0, 0, torch.float64)
    probe = study.data.probe(0)
    names = [k for k, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    shapes = [p.shape for p in model.parameters()]

    def loss(v):
        params, i = {}, 0
        for k, s in zip(names, shapes):
            params[k] = v[i : i + s.numel()].reshape(s)
            i += s.numel()
        out = torch.func.functional_call(model, params, (probe.x,))
        return torch.nn.functional.binary_cross_entropy_with_logits(out.reshape(-1), probe.y)

    return float(torch.autograd.functional.hessian(loss, flat).diagonal().sum())


def test_digits_with_cross_entropy(tmp_path):
    spec = {
        "data": {"source": "digits", "probe_size": 32},
        "train": {"loss": "cross_entropy", "lr": [0.1], "batch_size": [8], "steps": 4},
        "record": {"steps": [0, 4]},
    }
    ds = thermosgd.study(spec, model=lambda seed: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    assert {"loss", "accuracy", "test_loss", "test_accuracy"} <= set(ds.data_vars)
    assert np.isfinite(ds.loss.values).all() and np.isfinite(ds.test_accuracy.values).all()
    assert ds.loss.isel(step=0).item() == pytest.approx(np.log(10), abs=0.3)  # 10 classes, small logits


def test_dask_executor_gives_the_same_bits(reference, tmp_path):
    path, ref = reference
    argv = ["study", str(path), "--out", str(tmp_path / "d"), "--executor", "dask", "--workers", "1"]
    assert main(argv + ["--no-progress"]) == 0
    assert_identical(thermosgd.load(tmp_path / "d"), ref)


def test_the_trace_bound_holds_over_training_on_a_relu_mlp():
    """A.5 (Eq. 62): Hutchinson's trace stays below the bound + 3 s.e. at every recorded step and replica."""
    spec = {
        "data": {"dim": 6, "online": False, "train_size": 64, "probe_size": 32},
        "train": {"lr": [0.05, 0.2], "seeds": 2, "steps": 60, "dtype": "float64"},
        "record": {"steps": [0, 30, 60], "hessian": True, "hessian_samples": 64},
    }
    ds = thermosgd.study(spec, model=lambda seed: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1)))
    bound, trace, se = (ds[v].values for v in ("hessian_trace_bound", "hessian_trace", "hessian_trace_stderr"))
    assert np.isfinite(bound).all() and (trace <= bound + 3 * se).all()
    from thermosgd.instruments import hessian_trace_bound
    from thermosgd.studies.model import build
    from thermosgd.studies.spec import resolve

    study = resolve(spec, model=lambda seed: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1)))
    model, probe = build(study.factory, 0, 0, torch.float64), study.data.probe(0)
    want = hessian_trace_bound(model, nn.BCEWithLogitsLoss(), probe.x).value
    assert ds.hessian_trace_bound.isel(step=0, lr=0, seed=0).item() == pytest.approx(want, rel=1e-12)


def test_a_diverging_replica_is_recorded_and_the_others_kept():
    spec = {
        "data": {"dim": 5, "probe_size": 16},
        "train": {"loss": "mse", "lr": [0.01, 1e6], "steps": 20},
        "record": {"steps": [0, 10, 20]},
    }
    ds = thermosgd.study(spec, model=unseeded_factory)
    assert ds.diverged.sel(lr=1e6).item() and not ds.diverged.sel(lr=0.01).item()
    step = ds.diverged_step.sel(lr=1e6).item()
    assert 0 <= step < 20 and np.isnan(ds.loss.sel(lr=1e6, step=20).item())
    assert np.isfinite(ds.loss.sel(lr=0.01).values).all() and np.isfinite(ds.grad_var.sel(lr=0.01).values).all()


def test_a_changed_factory_file_is_not_resumed_into_the_old_folder(tmp_path, capsys):
    path = small_toml(tmp_path, seeds=1, steps=4)
    assert main(["study", str(path), "--out", str(tmp_path / "o"), "--executor", "inline", "--no-progress"]) == 0
    with open(tmp_path / "mymodels.py", "a") as fh:
        fh.write("\n# edited\n")
    assert main(["study", str(path), "--out", str(tmp_path / "o"), "--executor", "inline", "--no-progress"]) == 2
    assert "factory's file or the data changed" in capsys.readouterr().err


def test_fashion_mnist_files_from_data_dir_and_their_fingerprint(tmp_path):
    rng = np.random.default_rng(0)
    n = 24
    header = bytes.fromhex("00000803") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
    labels = bytes.fromhex("00000801") + n.to_bytes(4, "big") + rng.integers(0, 10, n, dtype=np.uint8).tobytes()
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels)
    spec = {
        "data": {"source": "fashion-mnist", "data_dir": str(tmp_path), "probe_size": 8},
        "train": {"loss": "cross_entropy", "lr": [0.1], "batch_size": [4], "steps": 3},
        "record": {"steps": [0, 3]},
    }
    from thermosgd.studies.spec import resolve

    def factory(seed):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    ds = thermosgd.study(spec, model=factory)
    assert "test_loss" not in ds and np.isfinite(ds.loss.values).all()  # no test files: no held-out set
    before = resolve(spec, model=factory).fingerprint
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels[:-1] + bytes([(labels[-1] + 1) % 10]))
    assert resolve(spec, model=factory).fingerprint != before


def test_report_on_a_parent_folder_lists_the_study(reference, tmp_path):
    """A study folder gets its own section, named by its folder and factory, with its curves
    and the command that fits it (no claim of the paper, so no verdict)."""
    from thermosgd.report import collect, summary_table

    path, _ = reference
    parent = tmp_path / "runs"
    parent.mkdir()
    shutil.copytree(path.parent / "ref", parent / "mine")
    report = collect(parent)
    (sec,) = [s for s in report.sections if s.experiment == "study"]
    assert sec.name == "mine (study of mymodels:layernorm_mlp)" and sec.measured
    assert "mine" not in report.unrecognized and not any("mine" in w for w in report.warnings)
    assert "--metric grad_var --over lr" in sec.command and sec.collapses
    assert "mine (study of mymodels:layernorm_mlp)" in summary_table(report)
