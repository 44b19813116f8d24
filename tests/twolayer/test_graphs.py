"""The torch reference's steps as captured graphs (on a GPU: CUDA graphs, twolayer/graphs.py).

CI has no GPU, so here the capture is a stand-in with CUDA graphs' semantics: capturing
records the function without running it, and each replay runs it again on whatever the
fixed windows then hold. The twin is the eager loop, and the runs must be the same bits:
windows, the binary decomposition of a run, chunk boundaries, freezing and the fallback
all happen on the CPU exactly as on a GPU. tests/test_device.py compares graphs with the
eager loop on a real GPU.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import thermosgd
from thermosgd.config import from_dict
from thermosgd.twolayer import graphs
from thermosgd.twolayer.graphs import StepGraphs


def _cfg(noise: str = "sgd", **train):
    return from_dict(
        {
            "model": {"inputs": 4, "hidden": 5},
            "data": {"probe_size": 8},
            "train": {
                "lr": [0.05, 3.0],  # 3.0 diverges: replicas are frozen between replays
                "batch_size": [1, 2],
                "seeds": 3,
                "steps": 600,
                "record_every": 7,  # runs of 7 (4 + 2 + 1) and shorter ones at chunk ends
                "fused": False,
                "noise": noise,
                "gd_batch": 6,
                "dtype": "float64",
                **train,
            },
        }
    )


@pytest.fixture
def captured(monkeypatch):
    """Replace CUDA capture by the stand-in on the CPU; returns the list of captured functions."""
    made: list = []

    def capture(fn):
        made.append(fn)
        return SimpleNamespace(replay=fn)

    monkeypatch.setattr(graphs, "capture_for", lambda device: capture)
    return made


@pytest.mark.parametrize(
    "noise,train",
    [("sgd", {}), ("sgd", {"svag": 2}), ("gd", {}), ("gaussian", {}), ("frozen", {}), ("sgd", {"record_every": 1})],
)
def test_graph_replays_are_the_eager_steps_bit_for_bit(captured, monkeypatch, noise, train):
    cfg = _cfg(noise, **train)
    replayed = thermosgd.train(cfg)
    assert captured, "the graph path was not taken"
    monkeypatch.setattr(graphs, "capture_for", lambda device: None)
    eager = thermosgd.train(cfg)
    for name in eager.data_vars:
        np.testing.assert_array_equal(replayed[name].values, eager[name].values, err_msg=name)
    if noise == "sgd" and not train:
        assert bool(eager.diverged.any()) and not bool(eager.diverged.all())  # freezing was exercised


def test_a_run_is_replayed_as_its_binary_decomposition():
    ran: list[tuple[int, float]] = []
    made: list[int] = []

    def capture(fn):
        made.append(len(made))
        return SimpleNamespace(replay=fn)

    g = StepGraphs(lambda x, y: ran.append((0, float(x))), chunk=256, capture=capture)
    xs = torch.arange(256.0)
    g.run((xs, None), 3, 13)  # 8 + 4 + 1
    assert [v for _, v in ran] == list(range(3, 16)) and sorted(g.graphs) == [1, 4, 8]
    g.run((xs, None), 16, 12)  # 8 + 4: both captured already
    assert len(made) == 3 and [v for _, v in ran[13:]] == list(range(16, 28))
    assert StepGraphs(lambda *a: None, chunk=300, capture=capture).longest == 256


def test_a_failed_capture_steps_eagerly_and_says_so_once(monkeypatch, capsys):
    def broken(fn):
        raise RuntimeError("operation not permitted when stream is capturing")

    cfg = _cfg()
    eager = thermosgd.train(cfg)
    monkeypatch.setattr(graphs, "capture_for", lambda device: broken)
    monkeypatch.setattr(graphs, "_said_fallback", False)
    fallback = thermosgd.train(cfg)
    thermosgd.train(cfg)
    err = capsys.readouterr().err
    assert err.count("CUDA graphs could not be captured (RuntimeError: operation not permitted") == 1
    for name in eager.data_vars:
        np.testing.assert_array_equal(fallback[name].values, eager[name].values, err_msg=name)


def test_graphs_only_on_a_cuda_device():
    assert graphs.capture_for(torch.device("cpu")) is None
    assert graphs.capture_for(torch.device("cuda", 0)) is graphs._cuda_capture


@pytest.mark.parametrize("noise,train", [("sgd", {}), ("sgd", {"batch_size": [1, 3]}), ("gaussian", {})])
def test_the_gpu_element_wise_products_are_the_batched_ones(monkeypatch, noise, train):
    """On a GPU, tiny batched products are element-wise products and sums (steps._bmm). Forced here on
    the CPU for every size that would take that form on a GPU: the whole run in float64 equals the
    batched-GEMM run to 1e-12 relative (the same sums in another order)."""
    from thermosgd.twolayer import steps

    cfg = _cfg(noise, **train).replace(train={"lr": [0.05, 0.1]})
    reference = thermosgd.train(cfg)
    taken = []

    def tiny(a, b):
        small = a.shape[-2] * a.shape[-1] + b.shape[-2] * b.shape[-1] <= steps.TINY_ON_GPU
        taken.append(small)
        return small

    monkeypatch.setattr(steps, "_tiny", tiny)
    element_wise = thermosgd.train(cfg)
    assert any(taken)
    for name in reference.data_vars:
        np.testing.assert_allclose(
            element_wise[name].values, reference[name].values, rtol=1e-12, atol=1e-14, err_msg=name
        )
