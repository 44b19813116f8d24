"""Two-layer presets' closing stage: fits, verdicts and figures, on this process or a forked one."""

from __future__ import annotations

import dataclasses

import numpy as np

from thermosgd import presets
from thermosgd.reproduce import twolayer
from thermosgd.sweep.run import run_sweep


def test_the_forked_side_process_gives_the_same_verdicts_and_figures(tmp_path, monkeypatch):
    preset = presets.get("fig3")
    chosen = presets.experiment_presets(preset)
    assert len(chosen) == 2  # fig3 and fig4: the second goes to the side process
    ds = run_sweep(presets.twolayer_config(preset, seeds=4, steps=200), tmp_path, progress=False)
    monkeypatch.setattr(twolayer, "usable_cores", lambda: 2)  # fork even on a one-core machine
    real = twolayer._side_process
    runs = {}
    for side in (False, True):
        forked = []
        monkeypatch.setattr(twolayer, "_side_process", lambda: forked.append(real()) or forked[-1])
        verdicts = twolayer.judge_and_draw(ds, chosen, tmp_path, side=side)
        assert [f is not None for f in forked] == ([True] if side else [])  # a fork happened, or none was asked
        pngs = {p.name: p.read_bytes() for p in sorted((tmp_path / "figures").glob("*.png"))}
        runs[side] = ([dataclasses.asdict(v) for v in verdicts], pngs)
        for p in (tmp_path / "figures").iterdir():
            p.unlink()
    (serial, serial_png), (forked_v, forked_png) = runs[False], runs[True]
    assert [v["preset"] for v in forked_v] == ["fig3", "fig4"]
    assert all(v["exponent"] is not None and np.isfinite(v["exponent"]) for v in forked_v)
    assert forked_v == serial
    assert sorted(serial_png) == ["fig3.png", "fig4.png"] and forked_png == serial_png


def _torch_work() -> float:
    import torch

    return float(torch.randn(10**6).exp().sum())  # large enough for a parallel region


def test_the_side_process_runs_torch_after_the_parent_did(monkeypatch):
    """A forked child inherits torch's OpenMP pool without its threads; unless it runs on one
    intra-op thread, its first parallel region waits forever (a 60 s timeout guards the test)."""
    import torch

    monkeypatch.setattr(twolayer, "usable_cores", lambda: 2)
    threads = torch.get_num_threads()  # conftest pins 1; the command runs with torch's default
    torch.set_num_threads(2)
    try:
        _torch_work()  # the parent's OpenMP threads exist now
        pool = twolayer._side_process()
        assert pool is not None
        try:
            assert pool.submit(_torch_work).result(timeout=60) > 0
        finally:
            for proc in list(pool._processes.values()):
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)
    finally:
        torch.set_num_threads(threads)
