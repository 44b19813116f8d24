"""Hostile input (issue 14): nothing lost, nothing silent, no traceback.

* One table of CLI commands that must each end with exit code 2, exactly one
  line on stderr and no traceback; one table of Python calls that must raise
  ``UsageError``.
* The data-loss cases: a refused ``--out`` leaves every file as it was (bytes and
  names), and only temporaries of our own whose writer is gone are deleted.
* The verification cases: flipped bytes, truncation and a ``results.nc`` from
  another configuration are detected by ``load`` and ``status``, and re-running
  the same command rebuilds the file from the units.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import thermosgd
from thermosgd import UsageError
from thermosgd.cli import main
from thermosgd.config import from_dict
from thermosgd.instruments import (
    Recorder,
    activation_rates,
    combine_runs,
    every,
    gradient_variance,
    hessian_trace,
    hessian_trace_bound,
    log_spaced,
    weight_norms,
)
from thermosgd.reproduce.experiments import run_equal_error
from thermosgd.sweep.run import run_sweep, status
from thermosgd.sweep.store import RUN_MARKER, stale_temporaries, temporary_path
from thermosgd.twolayer import theory
from thermosgd.walk import Reflect, parse_g, simulate

GRID = """[model]
inputs = 3
hidden = 3
[train]
lr = [0.05, 0.1]
seeds = 2
steps = 10
record_every = 5
[sweep]
seeds_per_unit = 1
"""


def _with_data(name: str) -> str:
    return GRID.replace("[train]", f'[data]\ninputs = "file"\nlabels = "file"\nfile = "{name}"\n[train]')


def _idx_header(kind: int, dims) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Every hostile file of the CLI table, in one folder."""
    d = tmp_path_factory.mktemp("hostile")
    (d / "grid.toml").write_text(GRID)
    (d / "latin1.toml").write_bytes(GRID.replace("[model]", "# caf\xe9\n[model]").encode("latin-1"))
    (d / "seed31.toml").write_text(GRID.replace("seeds = 2", "seeds = [2147483648]"))
    (d / "scale0.toml").write_text(GRID.replace("hidden = 3", "hidden = 3\ninit_scale = 0.0"))
    (d / "denormal.toml").write_text(GRID.replace("lr = [0.05, 0.1]", "lr = [5e-324, 1e-3]"))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 3)), (np.arange(20) % 2).astype(float)
    big = x.copy()
    big[0, 0] = 1e300  # finite in float64, inf in float32
    structured = np.zeros(20, dtype=[("a", "f8"), ("b", "f8"), ("c", "f8")])
    for name, arrays in {
        "complex": {"x": x + 1j, "y": y},
        "f32overflow": {"x": big, "y": y},
        "strings": {"x": x.astype(str), "y": y},
        "structured": {"x": structured, "y": y},
    }.items():
        np.savez(d / f"{name}.npz", **arrays)
        (d / f"{name}.toml").write_text(_with_data(f"{name}.npz"))
    np.savez(d / "encrypted.npz", x=x, y=y)
    raw = bytearray((d / "encrypted.npz").read_bytes())
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # set the "encrypted" flag of every member
        at = raw.find(sig)
        while at >= 0:
            raw[at + offset] |= 1
            at = raw.find(sig, at + 4)
    (d / "encrypted.npz").write_bytes(bytes(raw))
    (d / "encrypted.toml").write_text(_with_data("encrypted.npz"))
    os.mkfifo(d / "fifo.toml")
    (d / "cuda.toml").write_text(GRID.replace("[train]", '[train]\ndevice = "cuda:9999"'))
    with zipfile.ZipFile(d / "notnpy.npz", "w") as z:
        z.writestr("x.txt", "1 2 3")
        z.writestr("y.txt", "0 1")
    np.save(d / "plain.npy", x)
    (d / "text.npz").write_text("x,y\n1,0\n")
    (d / "random.npz").write_bytes(np.random.default_rng(1).bytes(300))
    for name, file in {
        "notnpy": "notnpy.npz",
        "plain": "plain.npy",
        "text": "text.npz",
        "random": "random.npz",
    }.items():
        (d / f"{name}.toml").write_text(_with_data(file))
    # IDX files whose dims overflow int64 (3 × 0xFFFFFFFF) and a .gz with a broken deflate body.
    (d / "idx").mkdir()
    (d / "idx" / "train-images-idx3-ubyte").write_bytes(_idx_header(8, [0xFFFFFFFF] * 3) + b"\0" * 10)
    (d / "idx" / "train-labels-idx1-ubyte").write_bytes(_idx_header(8, [1]) + b"\0")
    good = gzip.compress(_idx_header(8, [1000]) + b"\0" * 1000)
    broken = good[:10] + bytes(b ^ 0x55 for b in good[10:-8]) + good[-8:]
    (d / "gz").mkdir()
    (d / "gz" / "train-images-idx3-ubyte.gz").write_bytes(broken)
    (d / "gz" / "train-labels-idx1-ubyte.gz").write_bytes(broken)
    # IDX image files the CNN cannot take (non-square, 0×0), a gzip bomb (declares 2.4 GB) and a FIFO.
    labels = _idx_header(8, [2]) + b"\0\0"
    for name, dims in {"wide": [2, 1, 5000], "narrow": [2, 28, 5], "empty": [2, 0, 0]}.items():
        (d / name).mkdir()
        (d / name / "train-images-idx3-ubyte").write_bytes(_idx_header(8, dims) + b"\0" * math.prod(dims))
        (d / name / "train-labels-idx1-ubyte").write_bytes(labels)
    (d / "bomb").mkdir()
    (d / "bomb" / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(_idx_header(8, [3_000_000, 28, 28]) + bytes(10**6))
    )
    (d / "bomb" / "train-labels-idx1-ubyte").write_bytes(labels)
    (d / "fifo").mkdir()
    os.mkfifo(d / "fifo" / "train-images-idx3-ubyte")
    (d / "fifo" / "train-labels-idx1-ubyte").write_bytes(labels)
    # Folders holding runs of ours, one of another kind, and damaged markers.
    (d / "walkrun").mkdir()
    (d / "walkrun" / RUN_MARKER).write_text(
        json.dumps({"experiment": "walk", "seeds": None, "steps": None, "quick": True, "substitute_digits": False})
    )
    (d / "walkrun" / "walk_report.md").write_text("# the walk\n")
    for name, raw in {"truncated": b'{"experiment": "wa', "list": b"[1]", "binary": b"\x80\xff\x00\x01"}.items():
        (d / f"marker-{name}").mkdir()
        (d / f"marker-{name}" / RUN_MARKER).write_bytes(raw)
    (d / "userfolder").mkdir()
    (d / "userfolder" / "notes.txt").write_text("mine\n")
    (d / "loop").symlink_to(d / "loop")
    return d


@pytest.fixture(scope="module")
def lr_bs_sweep(tmp_path_factory) -> Path:
    """A finished lr × batch_size sweep, and a copy of its results with a string and an all-NaN metric."""
    out = tmp_path_factory.mktemp("lrbs") / "run"
    cfg = from_dict(
        {
            "model": {"inputs": 3, "hidden": 3},
            "train": {"lr": [0.05, 0.1], "batch_size": [1, 2], "seeds": 3, "steps": 20, "record_every": 5},
            "sweep": {"seeds_per_unit": 3},
        }
    )
    ds = run_sweep(cfg, out, progress=False)
    odd = ds.isel(batch_size=[0])
    odd["words"] = odd["v_norm"].astype(str)
    odd["nothing"] = odd["v_norm"] * np.nan
    odd.to_netcdf(out.parent / "odd.nc", engine="scipy")
    return out


SEED_2_63 = str(2**63 - 1)
CLI_REFUSALS = [
    # id, argv ({f}: the hostile files, {s}: the lr × batch_size sweep), words the line must hold
    ("toml-not-utf8", "sweep {f}/latin1.toml --dry-run", "not UTF-8"),
    ("g-int-overflow", "walk --g 1" + "0" * 320 + " --eta 0.05 --particles 10 --steps 2", "too large"),
    ("walk-seed-2^63", f"walk --g 1 --eta 0.05 --particles 10 --steps 2 --seed {SEED_2_63}", "seed"),
    ("walk-seed-2^64", f"walk --g 1 --eta 0.05 --particles 10 --steps 2 --seed {2**64}", "seed"),
    ("walk-particles-1", "walk --g 1+0.5*q --eta 0.05 --particles 1 --steps 2", "standard error"),
    ("walk-threads", "walk --g 1 --eta 0.05 --particles 10 --steps 2 --threads 1000000", "CPU cores"),
    (
        "walk-domain-wide",
        "walk --g 1+0*q --eta 0.05 --particles 10 --steps 2 --domain periodic:-1e308,1e308",
        "too wide",
    ),
    (
        "collapse-seed-negative",
        "collapse {s} --metric activation_rate --over lr --select batch_size=1 --no-figure --seed -1",
        "--seed",
    ),
    (
        "collapse-needs-select",
        "collapse {s} --metric activation_rate --over lr --no-figure",
        "--select batch_size=VALUE",
    ),
    (
        "collapse-select-absent",
        "collapse {s} --metric activation_rate --over lr --no-figure --select batch_size=3",
        "no value 3",
    ),
    ("collapse-string-metric", "collapse {s}/../odd.nc --metric words --over lr --no-figure", "not numbers"),
    ("collapse-all-nan", "collapse {s}/../odd.nc --metric nothing --over lr --no-figure", "NaN everywhere"),
    ("marker-truncated", "reproduce walk --quick --no-progress --out {f}/marker-truncated", "damaged"),
    ("marker-list", "reproduce walk --quick --no-progress --out {f}/marker-list", "damaged"),
    ("marker-binary", "reproduce walk --quick --no-progress --out {f}/marker-binary", "damaged"),
    (
        "idx-dims-overflow",
        "reproduce fig2-bottom --quick --no-progress --data-dir {f}/idx --out {f}/o-idx",
        f"need {16 + 0xFFFFFFFF**3} bytes",
    ),
    (
        "gz-broken-deflate",
        "reproduce fig2-bottom --quick --no-progress --data-dir {f}/gz --out {f}/o-gz",
        "corrupt gzip",
    ),
    ("npz-encrypted", "sweep {f}/encrypted.toml --out {f}/o-encrypted --no-progress", "encrypted"),
    ("config-fifo", "sweep {f}/fifo.toml --dry-run", "not a regular file"),
    (
        "walk-out-user-folder",
        "walk --g 1 --eta 0.05 --particles 10 --steps 2 --out {f}/userfolder",
        "holds no thermosgd results",
    ),
    ("drift-out-user-folder", "drift --quick --out {f}/userfolder", "holds no thermosgd results"),
    ("equal-error-out-sweep", "equal-error --quick --out {s}", "holds a two-layer sweep"),
    ("generalization-out-walk-run", "generalization --quick --out {f}/walkrun", "another kind"),
    ("walk-eta-1e-320", "walk --g 1 --eta 1e-320 --particles 10 --steps 2", "--eta must be between"),
    ("walk-eta-1e308", "walk --g 1+0.5*q --eta 1e308 --particles 10 --steps 2", "--eta must be between"),
    ("walk-eta-1e140", "walk --g 1+0.5*q --eta 1e140 --particles 10 --steps 2", "choose a smaller eta"),
    ("walk-g-1e-300", "walk --g 1e-300 --eta 0.05 --particles 10 --steps 2", "double precision"),
    ("walk-g-2-million-chars", "walk --g " + "1+" * 10**6 + "1 --eta 0.05 --particles 10 --steps 2", "at most 400"),
    ("walk-g-nested-parens", "walk --g " + "(" * 150 + "q" + ")" * 150 + " --eta 0.05 --particles 10", "at most 32"),
    ("dry-run-cuda-9999", "sweep {f}/cuda.toml --dry-run", "cuda:9999"),
    ("equal-error-record-every-huge", "equal-error --quick --record-every 1000000000", "at most steps/4"),
    ("npz-complex", "sweep {f}/complex.toml --out {f}/o-complex --no-progress", "complex"),
    ("npz-float32-overflow", "sweep {f}/f32overflow.toml --out {f}/o-f32 --no-progress", "x holds values up to"),
    ("npz-strings", "sweep {f}/strings.toml --out {f}/o-str --no-progress", "real numbers"),
    ("npz-structured", "sweep {f}/structured.toml --out {f}/o-struct --no-progress", "real numbers"),
    ("npz-not-npy-members", "sweep {f}/notnpy.toml --out {f}/o-notnpy --no-progress", "not a .npy"),
    ("npz-plain-npy", "sweep {f}/plain.toml --out {f}/o-plain --no-progress", "single .npy"),
    ("npz-text", "sweep {f}/text.toml --out {f}/o-text --no-progress", "not an .npz"),
    ("npz-random-bytes", "sweep {f}/random.toml --out {f}/o-random --no-progress", "not an .npz"),
    ("seed-2^31", "sweep {f}/seed31.toml --out {f}/o-seed --no-progress", "[0, 2^31)"),
    ("init-scale-0", "sweep {f}/scale0.toml --dry-run", "init_scale"),
    ("lr-denormal", "sweep {f}/denormal.toml --out {f}/o-denormal --no-progress", "smallest normal float"),
    ("out-empty-sweep", "sweep {f}/grid.toml --out '' --no-progress", "not empty"),
    ("out-empty-reproduce", "reproduce fig3 --quick --out '' --no-progress", "not empty"),
    ("out-symlink-loop", "sweep {f}/grid.toml --out {f}/loop --no-progress", "symbolic link"),
    ("out-user-folder", "sweep {f}/grid.toml --out {f}/userfolder --no-progress", "holds no thermosgd results"),
    ("out-user-folder-dry-run", "sweep {f}/grid.toml --out {f}/userfolder --dry-run", "holds no thermosgd results"),
    ("out-walk-run-for-fig3", "reproduce fig3 --quick --out {f}/walkrun --no-progress", "another kind"),
    ("out-sweep-for-walk", "reproduce walk --quick --out {s} --no-progress", "holds a two-layer sweep"),
    (
        "scheduler-not-a-url",
        "reproduce fig3 --quick --scheduler 'not a url' --out {f}/o-sched --no-progress",
        "tcp://HOST:PORT",
    ),
    ("generalization-diverges", "generalization --quick --lr 5 10 20", "η = 5, |B| = 1"),
    ("equal-error-diverges", "equal-error --quick --lr 5 10", "η = 10, |B| = 1"),
]

IDX_FOLDERS = {  # folder of the files fixture -> words of the refusal
    "wide": "1×5000",
    "narrow": "28×5",
    "empty": "0×0",
    "bomb": "nothing was decompressed",
    "fifo": "files not found",  # a FIFO is not taken for a file (and never opened)
}
CLI_REFUSALS += [
    (f"idx-{k}", f"reproduce fig2-bottom --quick --no-progress --data-dir {{f}}/{k} --out {{f}}/o-{k}", words)
    for k, words in IDX_FOLDERS.items()
]


@pytest.mark.parametrize("case, argv, words", CLI_REFUSALS, ids=[c[0] for c in CLI_REFUSALS])
def test_cli_refusal_is_one_line_exit_2(case, argv, words, files, lr_bs_sweep, capsys):
    import shlex

    args = shlex.split(argv.format(f=files, s=lr_bs_sweep))
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert words in err, err


def test_cli_cases_that_now_work(files, capsys):
    """A BOM'd TOML is read; a constant g is a valid walk (Eq. 10 flux 0)."""
    (files / "bom.toml").write_bytes(b"\xef\xbb\xbf" + GRID.encode())
    assert main(["sweep", str(files / "bom.toml"), "--dry-run"]) == 0
    assert "lr          [0.05, 0.1]" in capsys.readouterr().out
    for g in ("1", "pi"):
        assert main(["walk", "--g", g, "--eta", "0.05", "--particles", "200", "--steps", "5", "--json"]) == 0
        flux = json.loads(capsys.readouterr().out)["thermophoretic_flux"]
        assert flux["eq10"] == 0.0


def test_drift_with_one_value_says_what_cannot_be_fitted(capsys):
    assert (
        main(
            [
                "drift",
                "--quick",
                "--lr",
                "0.05",
                "--batch-size",
                "1",
                "2",
                "4",
                "--steps",
                "8",
                "--blocks",
                "2",
                "--replicas",
                "2",
                "--clones",
                "4",
                "--record-every",
                "2",
                "--json",
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert any("cannot be fitted from one value of eta" in n for n in payload["notes"])
    assert "n/a (one η: cannot be fitted)" in payload["table"]
    assert all(f["alpha"] is None for f in payload["fits"].values())  # NaN in JSON is null


# --------------------------------------------------------------------------- the Python API

X = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
Y = (torch.arange(20) % 2).float()
IMAGES = torch.randn(20, 1, 4, 4, generator=torch.Generator().manual_seed(1))


def _cfg(**model):
    return thermosgd.config_from_dict({"model": {"inputs": 3, "hidden": 3, **model}, "train": {"steps": 4, "seeds": 2}})


def _file_cfg():
    return _cfg().replace(data={"inputs": "file", "labels": "file"})


def _mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def _bce(out, target):
    return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), target)


class _TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x):
        return self.lin(x), None


class _MixesSamples(nn.Module):
    """Centers each batch: sample i's output depends on every sample."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = _mlp()

    def forward(self, x):
        return self.net(x - x.mean(0))


class _CentersOutputs(_MixesSamples):
    """Couples samples after the last layer: only the output gradients differ."""

    def forward(self, x):
        out = self.net(x)
        return out - out.mean(0)


class _ConvMixes(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x / x.norm())  # one norm over the whole batch


_BN = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))
_BIG = X.double().clone()
_BIG[0, 0] = 1e300

API_REFUSALS = [
    ("train-dict", lambda: thermosgd.train({"model": {}}), "expected a SweepConfig"),
    ("train-None", lambda: thermosgd.train(None), "expected a SweepConfig"),
    ("sweep-dict", lambda: thermosgd.run_sweep({"model": {}}, "unused"), "expected a SweepConfig"),
    ("sweep-out-empty", lambda: thermosgd.run_sweep(_cfg(), ""), "non-empty path"),
    ("reproduce-out-empty", lambda: thermosgd.run_presets(["fig3"], out="", quick=True), "non-empty path"),
    ("load-None", lambda: thermosgd.load(None), "got NoneType"),
    ("simulate-string-g", lambda: simulate("1+q", torch.zeros(4, 1), 0.1, 2), "parse_g"),
    (
        "simulate-string-domain",
        lambda: simulate(parse_g("1"), torch.zeros(4, 1), 0.1, 2, domain="reflect"),
        "Reflect(lo, hi)",
    ),
    (
        "simulate-huge-box",
        lambda: simulate(parse_g("1"), torch.zeros(4, 1), 0.1, 2, domain=Reflect(-1e308, 1e308)),
        "too wide",
    ),
    ("train-seed-negative", lambda: thermosgd.train(_cfg(), seeds=[-1]), "[0, 2^31)"),
    ("train-seed-2^31", lambda: thermosgd.train(_cfg(), seeds=[2**31]), "[0, 2^31)"),
    ("data-three-items", lambda: thermosgd.train(_file_cfg(), data=(X, Y, Y)), "3 items"),
    ("data-int", lambda: thermosgd.train(_file_cfg(), data=5), "got int"),
    ("data-requires-grad", lambda: thermosgd.train(_file_cfg(), data=(X.clone().requires_grad_(), Y)), "x.detach()"),
    ("data-complex", lambda: thermosgd.train(_file_cfg(), data=(X.to(torch.complex64), Y)), "complex"),
    ("data-complex-numpy", lambda: thermosgd.train(_file_cfg(), data=(X.numpy() + 1j, Y)), "complex"),
    ("data-float32-overflow", lambda: thermosgd.train(_file_cfg(), data=(_BIG, Y)), "range of float32"),
    ("data-strings", lambda: thermosgd.train(_file_cfg(), data=(X.numpy().astype(str), Y)), "real numbers"),
    ("config-seeds-10^30", lambda: thermosgd.config_from_dict({"train": {"seeds": 10**30}}), "maximum"),
    ("config-steps-10^20", lambda: thermosgd.config_from_dict({"train": {"steps": 10**20}}), "maximum"),
    ("config-init-scale-0", lambda: _cfg(init_scale=0.0), "init_scale"),
    (
        "to-dataset-lr-string",
        lambda: Recorder({"a": lambda m: 1.0}, lambda s: True).to_dataset(lr="x", batch_size=1, seed=0),
        "lr must be",
    ),
    ("gv-int64-inputs", lambda: gradient_variance(_mlp(), _bce, X.long(), Y), "Long"),
    ("ar-int64-inputs", lambda: activation_rates(_mlp(), X.long()), "Long"),
    ("gv-tuple-output", lambda: gradient_variance(_TupleOut(), _bce, X, Y), "one tensor"),
    ("gv-tuple-output-vmap", lambda: gradient_variance(_TupleOut(), _bce, X, Y, fast=False), "one tensor"),
    ("gv-wrong-output-shape", lambda: gradient_variance(nn.Linear(3, 2), _bce, X, Y), "loss_fn failed"),
    ("gv-loss-not-callable", lambda: gradient_variance(_mlp(), 5, X, Y), "callable"),
    ("ar-list-inputs", lambda: activation_rates(_mlp(), X.tolist()), "torch.Tensor"),
    ("hessian-batchnorm-training", lambda: hessian_trace(_BN, _bce, X, Y), "model.eval()"),
    ("hessian-loss-not-callable", lambda: hessian_trace(_mlp(), None, X, Y), "callable"),
    ("gv-forward-mixes-samples", lambda: gradient_variance(_MixesSamples(), _bce, X, Y), "mixes the samples"),
    ("gv-output-mixes-samples", lambda: gradient_variance(_CentersOutputs(), _bce, X, Y), "mixes the samples"),
    ("gv-conv-mixes-samples", lambda: gradient_variance(_ConvMixes(), _bce, IMAGES, Y), "mixes the samples"),
]


def _record(instruments, steps=(0,), schedule=None):
    rec = Recorder(instruments, schedule or every(1))
    for step in steps:
        rec(step, _mlp())
    return rec


def _flip_kind():
    calls = iter([1.0, {"a": 1.0}])
    return _record({"x": lambda m: next(calls)}, steps=(0, 1))


def _conflicting_runs():
    runs = [_record({"x": lambda m, v=v: v}).to_dataset(lr=0.1, batch_size=1, seed=0) for v in (1.0, 2.0)]
    return combine_runs(runs)


def _sweep_like(lr=(0.05, 0.1), steps=(0, 10, 20, 30)) -> xr.Dataset:
    """A tiny lr sweep in the results format (values need not be physical: the checks run first)."""
    shape = (len(lr), 1, 3, len(steps))
    m = np.random.default_rng(0).random(shape) + np.arange(len(steps))
    coords = {"lr": list(lr), "batch_size": [1], "seed": [0, 1, 2], "step": list(steps)}
    return xr.Dataset(
        {
            "m": (("lr", "batch_size", "seed", "step"), m),
            "diverged": (("lr", "batch_size", "seed"), np.zeros(shape[:3], bool)),
        },
        coords=coords,
    )


def _fit(ds=None, n_boot_override=0, **kw):
    from thermosgd.analysis.collapse import fit_collapse

    return fit_collapse(_sweep_like() if ds is None else ds, "m", "lr", n_boot=n_boot_override, **kw)


API_REFUSALS += [
    ("fit-dataarray", lambda: _fit(_sweep_like()["m"]), "expected an xarray Dataset"),
    ("fit-path", lambda: _fit("runs/fig3"), "thermosgd.load(path)"),
    ("fit-bounds-inf", lambda: _fit(bounds=(0.0, math.inf)), "finite"),
    ("fit-bounds-nan", lambda: _fit(bounds=(math.nan, 2.0)), "finite"),
    ("fit-bounds-10^400", lambda: _fit(bounds=(0, 10**400)), "too large"),
    ("fit-bounds-reversed", lambda: _fit(bounds=(2.0, 0.0)), "low < high"),
    ("fit-bounds-equal", lambda: _fit(bounds=(1.0, 1.0)), "low < high"),
    ("fit-n-grid-0", lambda: _fit(n_grid=0), "n_grid"),
    ("fit-n-grid-1", lambda: _fit(n_grid=1), "n_grid"),
    ("fit-n-grid-negative", lambda: _fit(n_grid=-5), "n_grid"),
    ("fit-n-boot-2.5", lambda: _fit(_sweep_like(), n_boot_override=2.5), "n_boot"),
    ("fit-window-int", lambda: _fit(window=5), "window"),
    ("fit-lr-nan", lambda: _fit(_sweep_like(lr=(0.05, math.nan))), "NaN"),
    ("fit-lr-inf", lambda: _fit(_sweep_like(lr=(0.05, math.inf))), "NaN or infinite"),
    ("fit-lr-strings", lambda: _fit(_sweep_like(lr=("a", "b"))), "numbers"),
    ("fit-reference-0", lambda: _fit(reference=0.0), "reference"),
    ("fit-reference-nan", lambda: _fit(reference=math.nan), "reference"),
    ("fit-reference-negative", lambda: _fit(reference=-0.1), "reference"),
    ("fit-negative-steps", lambda: _fit(_sweep_like(steps=(-10, 0, 10, 20))), "steps must be >= 0"),
    ("every-2.5", lambda: every(2.5), "integer >= 1"),
    ("every-nan", lambda: every(math.nan), "integer >= 1"),
    ("every-0.5", lambda: every(0.5), "integer >= 1"),
    ("every-string", lambda: every("a"), "integer >= 1"),
    ("every-bool", lambda: every(True), "integer >= 1"),
    ("every-start-float", lambda: every(2, start=1.5), "start"),
    ("log-spaced-points-2.5", lambda: log_spaced(100, points=2.5), "points"),
    ("log-spaced-points-10^9", lambda: log_spaced(10**12, points=10**9), "at most"),
    ("log-spaced-max-float", lambda: log_spaced(100.5), "max_step"),
    ("recorder-schedule-int", lambda: Recorder({"x": lambda m: 1.0}, 5), "callable step -> bool"),
    ("recorder-instruments-list", lambda: Recorder([lambda m: 1.0], every(1)), "mapping"),
    ("recorder-name-diverged", lambda: _record({"diverged": lambda m: 1.0}), "uses itself"),
    ("recorder-name-lr", lambda: _record({"lr": lambda m: 1.0}), "uses itself"),
    ("recorder-name-step", lambda: _record({"step": lambda m: 1.0}), "uses itself"),
    ("recorder-name-layer-dim", lambda: _record({"layer_w": lambda m: 1.0}), "uses itself"),
    ("recorder-x-and-x-layer", lambda: _record({"x": lambda m: {"a": 1.0}, "x_layer": lambda m: 2.0}), "both write"),
    ("recorder-float-step", lambda: _record({"x": lambda m: 1.0}, steps=(1.2,)), "integer >= 0"),
    ("recorder-negative-step", lambda: _record({"x": lambda m: 1.0}, steps=(-1,)), "integer >= 0"),
    ("recorder-string-result", lambda: _record({"x": lambda m: "a"}), "returned str"),
    ("recorder-vector-result", lambda: _record({"x": lambda m: torch.ones(3)}), "shape (3,)"),
    ("recorder-layer-string", lambda: _record({"x": lambda m: {"a": "b"}}), "not a number"),
    ("recorder-mixed-kinds", _flip_kind, "per layer at some steps"),
    (
        "to-dataset-float-steps",
        lambda: _record({"x": lambda m: 1.0}).to_dataset(lr=0.1, batch_size=1, seed=0, steps=[0.5]),
        "integer",
    ),
    ("combine-not-datasets", lambda: combine_runs(["a"]), "expected datasets"),
    (
        "combine-a-dataset",
        lambda: combine_runs(_record({"x": lambda m: 1.0}).to_dataset(lr=0.1, batch_size=1, seed=0)),
        "list",
    ),
    ("combine-conflicting", _conflicting_runs, "disagree"),
    ("weight-norms-string", lambda: weight_norms("model"), "torch.nn.Module"),
    ("weight-norms-lazy", lambda: weight_norms(nn.Sequential(nn.LazyLinear(2))), "not initialised"),
    ("simulate-g-raises", lambda: simulate(lambda q: 1 / 0, torch.zeros(4, 1), 0.1, 2), "ZeroDivisionError"),
    ("simulate-g-shape", lambda: simulate(lambda q: torch.ones(3, 7), torch.zeros(4, 1), 0.1, 2), "g failed"),
    ("simulate-record-string", lambda: simulate(parse_g("1"), torch.zeros(4, 1), 0.1, 2, record="a"), "record"),
    ("simulate-complex-q0", lambda: simulate(parse_g("1"), torch.zeros(4, 1) + 1j, 0.1, 2), "real numbers"),
    ("simulate-eta-bool", lambda: simulate(parse_g("1"), torch.zeros(4, 1), True, 2), "eta must be"),
    ("status-None", lambda: thermosgd.status(None), "expected a results folder"),
    ("status-int", lambda: thermosgd.status(5), "expected a results folder"),
    ("reproduce-one-string", lambda: thermosgd.run_presets("nosuch"), "unknown preset 'nosuch'"),
    ("config-lr-10^400", lambda: thermosgd.config_from_dict({"train": {"lr": 10**400}}), "too large"),
    ("config-runaway-10^400", lambda: thermosgd.config_from_dict({"train": {"runaway_factor": 10**400}}), "too large"),
    ("config-init-scale-10^400", lambda: _cfg(init_scale=10**400), "too large"),
    ("config-lr-denormal", lambda: thermosgd.config_from_dict({"train": {"lr": [5e-324, 1e-3]}}), "normal float"),
    ("config-assign-field", lambda: setattr(_cfg().train, "lr", 0.1), "cfg.replace(train={'lr': ...})"),
    ("config-assign-section", lambda: setattr(_cfg(), "train", None), "cfg.replace(train={...})"),
    (
        "equal-error-record-every-huge",
        lambda: run_equal_error(quick=True, record_every=10**9),
        "at most steps/4",
    ),
    ("config-replace-int", lambda: _cfg().replace(train=5), "must be a dict"),
    (
        "bound-3d-inputs",
        lambda: hessian_trace_bound(_mlp(), nn.BCEWithLogitsLoss(), X[:, None, :].repeat(1, 2, 1)),
        "first layer takes 3",
    ),
    ("bound-wrong-dim", lambda: hessian_trace_bound(_mlp(), nn.BCEWithLogitsLoss(), X[:, :2]), "first layer takes 3"),
    ("bound-0-samples", lambda: hessian_trace_bound(_mlp(), nn.BCEWithLogitsLoss(), X[:0]), "N >= 1"),
    ("bound-meta-model", lambda: hessian_trace_bound(_mlp().to("meta"), nn.BCEWithLogitsLoss(), X), "meta"),
    ("gv-chunk-string", lambda: gradient_variance(_mlp(), _bce, X, Y, fast=False, chunk_size="8"), "chunk_size"),
    ("gv-meta-inputs", lambda: gradient_variance(_mlp(), _bce, X.to("meta"), Y), "meta"),
    ("data-meta", lambda: thermosgd.train(_file_cfg(), data=(X.to("meta"), Y)), "meta"),
    ("hessian-samples-10^7", lambda: hessian_trace(_mlp().eval(), _bce, X, Y, samples=10**7), "GiB"),
    ("parse-g-2-million-chars", lambda: parse_g("(" * 2 * 10**6), "2000000 characters; at most 400"),
    ("parse-g-nested-brackets", lambda: parse_g("[" * 100 + "q" + "]" * 100), "100 levels deep; at most 32"),
    ("theory-h-v-units", lambda: theory.h_v(torch.ones(3), torch.ones(4, 5), torch.ones(3)), "W (4, 5)"),
    ("theory-h-w-b", lambda: theory.h_w(1.0, torch.ones(3, 5), torch.ones(3, 1, 2)), "b (3, 1, 2)"),
    ("theory-phi1-units", lambda: theory.phi1(torch.ones(4, 5), torch.ones(3), 0.25), "W (4, 5), b (3,)"),
    ("theory-psi-err2", lambda: theory.psi(1.0, torch.ones(3, 5), 0.1, torch.ones(2)), "err2 (2,)"),
    (
        "theory-flow-lr",
        lambda: theory.thermophoretic_flow(1.0, torch.ones(3, 5), 0.1, 0.25, torch.ones(2), 4),
        "lr (2,)",
    ),
    ("theory-string", lambda: theory.activation_rate("w", 0.1), "W must be a float or a tensor"),
]


@pytest.mark.parametrize("case, call, words", API_REFUSALS, ids=[c[0] for c in API_REFUSALS])
def test_api_refusal_is_usage_error(case, call, words):
    with pytest.raises(UsageError) as info:
        call()
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_version_and_no_progress(tmp_path, capsys):
    """``--version`` answers; ``reproduce --no-progress`` drops the bars only: verdicts and the closing table print."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"thermosgd {thermosgd.__version__}\n"
    out = tmp_path / "fig3"
    assert main(["reproduce", "fig3", "--seeds", "2", "--steps", "20", "--out", str(out), "--no-progress"]) == 0
    printed, err = capsys.readouterr()
    assert "[fig3]" in printed and "report: " in printed and f"results and figures in {out}" in printed
    assert "unit" not in err  # no progress lines


def test_a_sweep_over_a_huge_lr_range_draws_without_warnings(tmp_path, files):
    """η from 1e-300 to 1e-3: the rescaled iterations t·(η/η_ref)² leave the float range; those curves
    are left out of the rescaled panels (no OverflowError, no RuntimeWarning; warnings are errors here)."""
    (tmp_path / "tiny.toml").write_text(GRID.replace("lr = [0.05, 0.1]", "lr = [1e-300, 1e-3]"))
    assert main(["sweep", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert list((tmp_path / "o" / "figures").glob("*.png"))


def test_data_tensors_are_cast_where_no_value_changes():
    """bfloat16, sparse and negated-view tensors train exactly as their plain float32 equals do."""
    cfg = _file_cfg()

    def v_norm(x):
        return thermosgd.train(cfg, data=(x, Y))["v_norm"].values

    np.testing.assert_array_equal(v_norm(X.bfloat16()), v_norm(X.bfloat16().float()))
    np.testing.assert_array_equal(v_norm(X.to_sparse()), v_norm(X))
    np.testing.assert_array_equal(v_norm(torch._neg_view(X)), v_norm(-X))


def test_api_cases_that_are_accepted():
    """NumPy integer scalars are integers; floating inputs of another dtype are cast to the model's."""
    assert thermosgd.config_from_dict({"train": {"steps": np.int64(5), "seeds": np.int32(2)}}).train.steps == 5
    torch.manual_seed(1)
    model = _mlp()
    as_float = gradient_variance(model, _bce, X, Y).value
    assert gradient_variance(model, _bce, X.double(), Y.double()).value == as_float
    assert activation_rates(model, X.double()).value == activation_rates(model, X).value


def test_sample_mixing_is_refused_only_where_it_happens():
    """The x - x.mean(0) model gives a wrong per-sample variance on the fast path (refused);
    on the torch.func path each sample runs alone, which is what a per-sample loop gives."""
    model = _MixesSamples()
    loop = torch.stack(
        [
            torch.cat(
                [
                    p.reshape(-1)
                    for p in torch.autograd.grad(_bce(model(X[i : i + 1]), Y[i : i + 1]), model.parameters())
                ]
            )
            for i in range(len(X))
        ]
    )
    per_entry = loop.var(dim=0, correction=1).mean()
    slow = gradient_variance(model, _bce, X, Y, fast=False).value
    assert slow == pytest.approx(float(per_entry), rel=1e-5)
    # A model that treats samples independently passes the same check (no false alarm).
    torch.manual_seed(0)
    gradient_variance(_mlp(), _bce, X, Y)


# --------------------------------------------------------------------------- data loss


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(folder.rglob("*"))
    }


def test_sweep_into_a_users_folder_is_refused_and_nothing_is_touched(tmp_path, files, capsys):
    d = tmp_path / "d"
    (d / "units").mkdir(parents=True)
    (d / ".draft.tmp-notes").write_text("x\n")  # looked like our temporaries before
    (d / "results.nc").write_text("mine\n")
    (d / "units" / "unit-00000.nc").write_text("also mine\n")
    before = _snapshot(d)
    assert main(["sweep", str(files / "grid.toml"), "--out", str(d), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds no thermosgd results" in err and err.count("\n") == 1
    assert _snapshot(d) == before  # no .lock, no config.json, nothing deleted or rewritten


def test_reproduce_refuses_a_folder_of_another_kind_of_run(tmp_path, capsys):
    walk = tmp_path / "walk"
    walk.mkdir()
    (walk / RUN_MARKER).write_text(json.dumps({"experiment": "walk"}))
    (walk / "walk_report.md").write_text("# walk\n")
    before = _snapshot(walk)
    assert main(["reproduce", "fig3", "--quick", "--out", str(walk), "--no-progress"]) == 2
    assert "another kind of thermosgd run (experiment 'walk')" in capsys.readouterr().err
    assert _snapshot(walk) == before


def test_only_our_own_stale_temporaries_are_cleaned(tmp_path):
    """Deleted: ``.thermosgd-tmp-PID-*`` of a process that is gone. Kept: a user's file that
    merely looks temporary, and a temporary of a live process."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead, live = proc.pid, os.getppid()
    out = tmp_path / "r"
    cfg = _cfg()
    run_sweep(cfg, out, progress=False)
    ours = temporary_path(out / "units" / "unit-00000.nc", pid=dead)
    keep = [
        out / ".results.nc.tmp-123",
        out / ".draft.tmp-notes",
        temporary_path(out / "results.nc", pid=live),
        out / ".thermosgd-tmp-999999-notes.txt",  # named like our old temporaries: the user's
        out / f".thermosgd-tmp-{dead}-0123456789abcdef-results.nc",  # a token that does not check out
    ]
    for p in [ours, *keep]:
        p.write_text("x")
    assert stale_temporaries(out) == [ours]
    run_sweep(cfg, out, progress=False)
    assert not ours.exists() and all(p.read_text() == "x" for p in keep)


# --------------------------------------------------------------------------- security: links in a run folder

VICTIM = b"the user's own file\n"


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    return victim


def _refused(argv, capsys, words: str) -> None:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert words in err, err


def test_symlinked_lock_in_a_new_folder_is_not_followed(tmp_path, files, capsys):
    """``ln -s ../victim.txt o/.lock``: the folder is not empty (the link counts) and nothing is written."""
    victim, out = _victim(tmp_path), tmp_path / "o"
    out.mkdir()
    (out / ".lock").symlink_to("../victim.txt")
    before = _snapshot(out)
    _refused(["sweep", files / "grid.toml", "--out", out, "--no-progress"], capsys, "not empty (.lock)")
    assert victim.read_bytes() == VICTIM and _snapshot(out) == before


def test_symlinked_lock_in_a_sweep_folder_is_not_followed(tmp_path, files, capsys):
    """The same link planted in a folder that holds a finished sweep: the lock refuses to open it."""
    victim, out = _victim(tmp_path), tmp_path / "o"
    assert main(["sweep", str(files / "grid.toml"), "--out", str(out), "--no-progress"]) == 0
    (out / ".lock").unlink()
    (out / ".lock").symlink_to("../victim.txt")
    _refused(["sweep", files / "grid.toml", "--out", out, "--no-progress"], capsys, "symbolic link")
    os.link(victim, tmp_path / "hardlink")
    (out / ".lock").unlink()
    os.link(victim, out / ".lock")  # a hard link: writing our pid would change the victim too
    _refused(["sweep", files / "grid.toml", "--out", out, "--no-progress"], capsys, "not a plain file")
    assert victim.read_bytes() == VICTIM


def test_symlinked_temporaries_are_not_followed(tmp_path, files, capsys):
    """Links named like temporaries for 3000 pids around ours (old and new name forms): a new folder holding
    them is not empty; planted in a sweep folder, none is written through and config.json stays a file."""
    victim, out = _victim(tmp_path), tmp_path / "o"
    out.mkdir()
    pids = range(max(1, os.getpid() - 1500), os.getpid() + 1500)
    for pid in pids:
        (out / f".thermosgd-tmp-{pid}-config.json").symlink_to("../victim.txt")
    _refused(["sweep", files / "grid.toml", "--out", out, "--no-progress"], capsys, "not empty")
    shutil.rmtree(out)
    assert main(["sweep", str(files / "grid.toml"), "--out", str(out), "--no-progress"]) == 0
    (out / "results.nc").unlink()  # the re-run rewrites config.json, results.nc and its checksum
    for pid in pids:
        for name in ("config.json", "results.nc", "results.nc.sha256"):
            (out / f".thermosgd-tmp-{pid}-{name}").symlink_to("../victim.txt")
        (out / temporary_path(out / "config.json", pid=pid).name).symlink_to("../victim.txt")
    assert main(["sweep", str(files / "grid.toml"), "--out", str(out), "--no-progress"]) == 0
    assert victim.read_bytes() == VICTIM
    for name in ("config.json", "results.nc", "results.nc.sha256"):
        assert (out / name).is_file() and not (out / name).is_symlink()
    thermosgd.load(out)


def test_symlinked_units_folder_is_refused(tmp_path, files, capsys):
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "o"
    assert main(["sweep", str(files / "grid.toml"), "--out", str(out), "--no-progress"]) == 0
    shutil.rmtree(out / "units")
    elsewhere.mkdir()
    (out / "units").symlink_to(elsewhere)
    _refused(["sweep", files / "grid.toml", "--out", out, "--no-progress"], capsys, "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_a_fifo_is_never_opened_as_a_file(tmp_path, files, capsys):
    """A FIFO as the config, results.nc, a unit file or .lock is refused at once (a reader would block)."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    _refused(["sweep", fifo, "--dry-run"], capsys, "not a regular file")
    out = tmp_path / "o"
    assert main(["sweep", str(files / "grid.toml"), "--out", str(out), "--no-progress"]) == 0
    unit = out / "units" / "unit-00000.nc"
    unit.unlink()
    os.mkfifo(unit)
    assert status(out).corrupt == 1  # a FIFO unit is not done; a run would replace it
    (out / "results.nc").unlink()
    os.mkfifo(out / "results.nc")
    with pytest.raises(UsageError, match="not a regular file"):
        thermosgd.load(out / "results.nc")
    assert "results.nc is NOT usable" in status(out).line()  # read, never blocked on
    (out / ".lock").unlink()
    os.mkfifo(out / ".lock")
    _refused(["sweep", files / "grid.toml", "--out", out, "--no-progress"], capsys, "not a plain file")


def test_links_planted_in_a_reproduce_folder_are_replaced_not_followed(tmp_path, capsys):
    """``ln -s ../victim.txt run/summary.json`` (and report.md, the wall-time file) in a finished ``reproduce``
    folder: the re-run replaces each link with its own file and never writes through it. (A linked
    index.html is refused: it is not a page of ours.)"""
    from thermosgd.report.provenance import WALL_TIME

    victim, out = _victim(tmp_path), tmp_path / "fig3"
    argv = ["reproduce", "fig3", "--seeds", "2", "--steps", "20", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    names = ("summary.json", "report.md", WALL_TIME)
    for name in names:
        (out / name).unlink()
        (out / name).symlink_to("../victim.txt")
    assert main(argv) == 0
    capsys.readouterr()
    assert victim.read_bytes() == VICTIM
    assert all((out / n).is_file() and not (out / n).is_symlink() for n in names)
    assert json.loads((out / "summary.json").read_text())["preset"] == "fig3"


def test_links_planted_for_an_experiments_files_are_replaced_not_followed(tmp_path):
    """``drift``/``equal-error``/``generalization --out`` write their table and summary the same way."""
    from matplotlib.figure import Figure

    from thermosgd.reproduce.experiments import _write

    victim, out = _victim(tmp_path), tmp_path / "o"
    out.mkdir()
    for name in ("drift.md", "drift.json", "drift.png", "drift.pdf"):
        (out / name).symlink_to("../victim.txt")
    _write(out, "drift", Figure(), "| table |\n", {"experiment": "drift"})
    assert victim.read_bytes() == VICTIM
    assert (out / "drift.md").read_text() == "| table |\n" and not (out / "drift.md").is_symlink()


# --------------------------------------------------------------------------- data loss: every --out


def _user_folder(tmp_path: Path) -> Path:
    d = tmp_path / "mine"
    (d / "figures").mkdir(parents=True)
    for name in ("walk.json", "density.png", "drift.md", "equal_error.json", "generalization.png", "notes.txt"):
        (d / name).write_bytes(f"the user's {name}\n".encode())
    return d


OUT_COMMANDS = {
    "walk": "walk --g 1+0.5*q --eta 0.05 --particles 10 --steps 2",
    "drift": "drift --quick",
    "equal-error": "equal-error --quick",
    "generalization": "generalization --quick",
}


@pytest.mark.parametrize("command", list(OUT_COMMANDS))
def test_out_into_a_users_folder_is_refused_and_nothing_is_touched(command, tmp_path, files, lr_bs_sweep, capsys):
    d = _user_folder(tmp_path)
    before, sweep_before = _snapshot(d), _snapshot(lr_bs_sweep)
    argv = OUT_COMMANDS[command].split()
    _refused([*argv, "--out", d], capsys, "holds no thermosgd results")
    _refused([*argv, "--out", lr_bs_sweep], capsys, "holds a two-layer sweep")
    _refused([*argv, "--out", files / "walkrun"], capsys, "another kind of thermosgd run")
    assert _snapshot(d) == before and _snapshot(lr_bs_sweep) == sweep_before


def test_a_commands_folder_is_its_own_after_the_run(tmp_path):
    """Checked before the run, marked after it: a re-run of the same command is accepted, any other refused."""
    from thermosgd.sweep.store import check_output_folder, mark_command_folder

    out = check_output_folder(tmp_path / "o", "command", "drift")
    out.mkdir()
    (out / "drift.md").write_text("the run's table\n")
    mark_command_folder(out, "drift")
    assert check_output_folder(out, "command", "drift") == out
    for kind, command in (("command", "walk"), ("run", None), ("sweep", None)):
        with pytest.raises(UsageError, match="another kind of thermosgd run"):
            check_output_folder(out, kind, command)


def test_walk_out_reuses_its_own_folder_only(tmp_path, capsys, monkeypatch):
    """A second ``walk --out`` into the first one's folder rewrites it; ``drift --out`` there is refused;
    a quoted '~/x' is expanded once (nothing is written under a folder named '~')."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    argv = OUT_COMMANDS["walk"].split()
    for _ in range(2):
        assert main([*argv, "--out", "~/w"]) == 0
    out = tmp_path / "home" / "w"
    assert (out / "walk.json").is_file() and not (tmp_path / "~").exists()
    assert sorted(p.name for p in out.iterdir()) == [RUN_MARKER, "density.pdf", "density.png", "walk.json"]
    victim = _victim(tmp_path)
    for name in ("density.png", "density.pdf", "walk.json"):  # links planted in a folder of ours
        (out / name).unlink()
        (out / name).symlink_to(victim)
    assert main([*argv, "--out", str(out)]) == 0
    assert victim.read_bytes() == VICTIM
    assert all((out / n).is_file() and not (out / n).is_symlink() for n in ("density.png", "density.pdf", "walk.json"))
    capsys.readouterr()
    _refused(["drift", "--quick", "--out", out], capsys, "`thermosgd walk`")


# --------------------------------------------------------------------------- changed input files


@pytest.fixture
def data_sweep(tmp_path):
    """A finished sweep on ``d.npz``, and a function that changes d.npz's numbers."""
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((20, 3)), y=(np.arange(20) % 2).astype(float))
    (tmp_path / "d.toml").write_text(_with_data("d.npz"))
    out = tmp_path / "r"
    assert main(["sweep", str(tmp_path / "d.toml"), "--out", str(out), "--no-progress"]) == 0

    def change():
        np.savez(tmp_path / "d.npz", x=rng.standard_normal((20, 3)), y=(np.arange(20) % 2).astype(float))

    return tmp_path / "d.toml", out, change


def test_rerun_on_a_changed_data_file_is_refused(data_sweep, capsys):
    cfg, out, change = data_sweep
    assert json.loads((out / "inputs.json").read_text()) == {str(cfg.parent / "d.npz"): _sha(cfg.parent / "d.npz")}
    change()
    before = _snapshot(out)
    _refused(["sweep", cfg, "--out", out, "--no-progress"], capsys, "d.npz changed since the run started")
    assert _snapshot(out) == before


def test_resume_on_a_changed_data_file_is_refused(data_sweep, capsys):
    """Interrupted (one unit and the merged results missing), then the data file changes: the resume would
    mix seeds trained on both files, so it is refused and the finished units are kept as they were."""
    cfg, out, change = data_sweep
    (out / "units" / "unit-00001.nc").unlink()
    (out / "results.nc").unlink()
    change()
    before = _snapshot(out)
    _refused(["sweep", cfg, "--out", out, "--no-progress"], capsys, "choose a new output folder (--out)")
    assert _snapshot(out) == before
    assert main(["sweep", str(cfg), "--out", str(out.parent / "fresh"), "--no-progress"]) == 0  # as the line says


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- verification of results.nc


@pytest.fixture
def finished(tmp_path):
    cfg = _cfg().replace(train={"lr": [0.05, 0.1]}, sweep={"seeds_per_unit": 1})
    out = tmp_path / "r"
    ds = run_sweep(cfg, out, progress=False)
    return cfg, out, ds


def _damage_and_check(out: Path, capsys, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        thermosgd.load(out)
    with pytest.raises(UsageError, match=words):
        thermosgd.load(out / "results.nc")
    assert main(["status", str(out)]) == 0
    line = capsys.readouterr().out
    assert "results.nc is NOT usable" in line and "re-run the same command" in line


def _rebuilds(cfg, out: Path, ds) -> None:
    again = run_sweep(cfg, out, progress=False)
    loaded = thermosgd.load(out)
    for name in ds.data_vars:
        np.testing.assert_array_equal(loaded[name].values, ds[name].values)
        np.testing.assert_array_equal(again[name].values, ds[name].values)
    assert status(out).results_problem is None


def test_flipped_bytes_in_results_are_detected_and_rebuilt(finished, capsys):
    cfg, out, ds = finished
    raw = bytearray((out / "results.nc").read_bytes())
    raw[-8:] = bytes(b ^ 0xFF for b in raw[-8:])  # inside the last variable's data
    (out / "results.nc").write_bytes(bytes(raw))
    _damage_and_check(out, capsys, "does not match its checksum")
    _rebuilds(cfg, out, ds)


def test_truncated_results_are_detected(finished, capsys):
    cfg, out, ds = finished
    raw = (out / "results.nc").read_bytes()
    (out / "results.nc").write_bytes(raw[: len(raw) // 2])
    _damage_and_check(out, capsys, "does not match its checksum")
    _rebuilds(cfg, out, ds)


def test_results_of_another_config_are_detected(finished, tmp_path, capsys):
    cfg, out, ds = finished
    other = tmp_path / "other"
    run_sweep(cfg.replace(train={"lr": [0.05, 0.2]}), other, progress=False)
    shutil.copy(other / "results.nc", out / "results.nc")  # the file alone: its bytes differ
    _damage_and_check(out, capsys, "does not match its checksum")
    shutil.copy(other / "results.nc.sha256", out / "results.nc.sha256")  # with its checksum file
    _damage_and_check(out, capsys, "written for another configuration")
    _rebuilds(cfg, out, ds)


def test_missing_checksum_says_how_to_rebuild(finished, capsys):
    cfg, out, ds = finished
    (out / "results.nc.sha256").unlink()
    _damage_and_check(out, capsys, "no checksum file")
    _rebuilds(cfg, out, ds)


# --------------------------------------------------------------------------- the scheduler probe


def test_scheduler_probe_tells_a_dask_scheduler_from_another_server(monkeypatch):
    """A port that accepts connections but speaks another protocol is refused in one line, before a
    Dask Client (whose failed construction would block 20 s in its destructor) is made."""
    import socket
    import threading

    from distributed import LocalCluster

    from thermosgd.sweep import executors
    from thermosgd.sweep.executors import check_scheduler

    monkeypatch.setattr(executors, "PROBE_TIMEOUT", 0.5)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_nonsense():  # the TCP check, then the Dask handshake
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 8)

    threading.Thread(target=answer_nonsense, daemon=True).start()
    with server, pytest.raises(UsageError, match="no Dask scheduler answers"):
        check_scheduler(f"tcp://127.0.0.1:{port}")
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers
    with silent, pytest.raises(UsageError, match="no Dask scheduler answers"):
        check_scheduler(f"tcp://127.0.0.1:{silent.getsockname()[1]}")
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address=None) as cluster:
        check_scheduler(cluster.scheduler_address)  # a real scheduler passes
