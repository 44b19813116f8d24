"""`thermosgd walk`: a good run prints one JSON object; bad input is one line and exit code 2."""

import json
import subprocess
import sys

import pytest

from thermosgd.cli import main


def test_reflecting_walk_json(capsys):
    rc = main(
        [
            "walk",
            "--g",
            "1+0.5*q",
            "--domain",
            "reflect:0,4",
            "--eta",
            "0.2",
            "--particles",
            "4000",
            "--steps",
            "400",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stationary_exponent_eq10"] == pytest.approx(1.0, rel=1e-6)
    # seed 0: k is about 2 with a standard error near 0.03; 0.4 is far outside.
    assert out["stationary_exponent"] == pytest.approx(2.0, abs=0.4)
    f = out["thermophoretic_flux"]
    assert {"measured", "measured_stderr", "eq10", "fokker_planck", "ratio_eq10"} <= set(f)
    assert f["eq10"] < 0


def test_free_two_dimensional_walk_and_out_dir(tmp_path, capsys):
    rc = main(
        [
            "walk",
            "--g",
            "(1+0.5*q[0], exp(0.3*q[1]))",
            "--dim",
            "2",
            "--eta",
            "0.1",
            "--particles",
            "2000",
            "--steps",
            "50",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "thermophoretic flux" in text and "only fitted in a reflecting box" in text
    data = json.loads((tmp_path / "run" / "walk.json").read_text())
    assert data["stationary_exponent"] is None and len(data["mean_displacement"]) == 2
    assert (tmp_path / "run" / "density.png").exists()


def test_periodic_independent_gaussian(capsys):
    rc = main(
        [
            "walk",
            "--g",
            "1+0.5*sin(q)",
            "--domain",
            "periodic:0,6.283185307179586",
            "--eta",
            "0.1",
            "--particles",
            "2000",
            "--steps",
            "30",
            "--noise",
            "gaussian",
            "--independent",
            "--json",
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["noise"] == "gaussian" and out["shared"] is False


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--g", "__import__('os')", "--eta", "0.1"], "not allowed"),
        (["--g", "q.real", "--eta", "0.1"], "unsafe"),
        (["--g", "(lambda: 1)()", "--eta", "0.1"], "not allowed"),
        (["--g", "1+", "--eta", "0.1"], "cannot parse"),
        (["--g", "1+q", "--domain", "reflect:-2,1", "--eta", "0.1"], "positive"),
        (["--g", "1-q", "--domain", "periodic:0,2", "--eta", "0.1"], "positive"),
        (["--g", "1", "--domain", "reflect:2,1", "--eta", "0.1"], "LO < HI"),
        (["--g", "1", "--domain", "reflect:1,1", "--eta", "0.1"], "LO < HI"),
        (["--g", "1", "--domain", "box:0,1", "--eta", "0.1"], "--domain"),
        (["--g", "1", "--domain", "reflect:0", "--eta", "0.1"], "two numbers"),
        (["--g", "1", "--eta", "0"], "--eta"),
        (["--g", "1", "--eta", "-0.1"], "--eta"),
        (["--g", "1", "--eta", "0.1", "--particles", "0"], "--particles"),
        (["--g", "1", "--eta", "0.1", "--steps", "-3"], "--steps"),
        (["--g", "1", "--eta", "abc"], "invalid float"),
        (["--g", "1+q", "--dim", "2", "--eta", "0.1"], "q[0]"),
        (["--g", "0.5+q", "--eta", "1.0", "--steps", "50"], "positive"),  # free walk reaches g <= 0
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    rc = main(["walk", *argv, "--particles", "200"] if "--particles" not in argv else ["walk", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error:") and "\n" not in err
    assert words in err


def test_subprocess_exit_code_2():
    proc = subprocess.run(
        [sys.executable, "-m", "thermosgd", "walk", "--g", "__import__('os').system('echo hi')", "--eta", "0.1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:")
