"""The command line: presets at tiny size, custom sweeps, and bad input → exit 2."""

import json
import os
import subprocess
import sys

import pytest

import thermosgd
from thermosgd import presets
from thermosgd.cli import main

TWOLAYER = [p.name for p in presets.PRESETS.values() if p.kind == "twolayer"]


def test_list(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ["fig2-top", "fig3", "fig10", "walk", "fig2-middle", "fig11"]:
        assert name in out


@pytest.mark.parametrize("name", TWOLAYER)
def test_every_twolayer_preset_tiny(name, tmp_path):
    out = tmp_path / name
    assert main(["reproduce", name, "--seeds", "2", "--steps", "20", "--out", str(out), "--no-progress"]) == 0
    ds = thermosgd.load(out)
    p = presets.get(name)
    assert ds.sizes["seed"] == 2 and int(ds.step.values[-1]) == 20
    assert ds.sizes[p.over] == len(p.params["train"][p.over if p.over == "lr" else "batch_size"])
    assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert (out / "figures" / f"{name}.pdf").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == 2


def test_sweep_command_and_dry_run(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nlr = [0.05, 0.1]\nseeds = 3\nsteps = 20\n[sweep]\nseeds_per_unit = 2\n")
    assert main(["sweep", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "units       2" in out and "replicas    6" in out
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert (tmp_path / "r" / "figures" / "activation_rate-vs-lr.png").exists()
    assert main(["status", str(tmp_path / "r")]) == 0
    assert "2/2 units done" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["reproduce", "fig99"], "unknown preset"),
        (["reproduce", "fig3", "--steps", "0"], "steps must be positive, got 0 (--steps)"),
        (["reproduce", "fig3", "--seeds", "-1"], "seeds must be positive, got -1 (--seeds)"),
        (["reproduce", "fig3", "--steps", "ten"], "invalid int"),
        (["sweep", "missing.toml", "--out", "x"], "cannot read config"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_toml_and_bad_value(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nlr = [-0.1]\n")
    assert main(["sweep", str(p), "--out", str(tmp_path / "o")]) == 2
    assert "[train] lr" in capsys.readouterr().err
    p.write_text("[train\n")
    assert main(["sweep", str(p), "--out", str(tmp_path / "o")]) == 2
    assert "malformed TOML" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert main(["reproduce", "fig3", "--steps", "5", "--seeds", "1", "--out", str(ro / "x")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_output_path_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["reproduce", "fig3", "--steps", "5", "--seeds", "1", "--out", str(f / "sub")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_subprocess_exit_code():
    r = subprocess.run([sys.executable, "-m", "thermosgd", "reproduce", "nope"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("error: unknown preset")


@pytest.mark.parametrize("name", ["fig2-bottom", "drift", "equal-error", "generalization"])
def test_reproduce_wiring_quick(name, tmp_path):
    """The deep and analysis presets run through `thermosgd reproduce` (smoke size)."""
    out = tmp_path / name
    assert main(["reproduce", name, "--quick", "--substitute-digits", "--out", str(out), "--no-progress"]) == 0
    written = [p for p in out.rglob("*") if p.suffix in (".png", ".json", ".nc")]
    assert any(p.suffix == ".png" for p in written) and any(p.stat().st_size > 0 for p in written)


def test_collapse_on_probe_metric_and_unwritable_figure(tmp_path, capsys):
    """Probe-set metrics (recorded every probe_every steps, NaN between) can be fitted;
    an unwritable figure path is one line and exit 2."""
    out = tmp_path / "fig3"
    assert main(["reproduce", "fig3", "--seeds", "3", "--steps", "200", "--out", str(out), "--no-progress"]) == 0
    ds = thermosgd.load(out)
    assert ds.loss.isnull().any() and ds.loss.notnull().any()  # probe_every > record_every
    capsys.readouterr()
    assert main(["collapse", str(out), "--metric", "loss", "--over", "lr", "--n-boot", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metric"] == "loss"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert (
        main(
            [
                "collapse",
                str(out),
                "--metric",
                "loss",
                "--over",
                "lr",
                "--n-boot",
                "0",
                "--figure",
                str(blocker / "fig"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_presets_do_not_overwrite_other_runs(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["reproduce", "fig3", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert main(["reproduce", "equal-error", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "holds a two-layer sweep" in capsys.readouterr().err
    other = tmp_path / "y"
    assert main(["reproduce", "equal-error", "--quick", "--out", str(other), "--no-progress"]) == 0
    assert main(["reproduce", "equal-error", "--quick", "--seeds", "3", "--out", str(other), "--no-progress"]) == 2
    assert "another run" in capsys.readouterr().err
