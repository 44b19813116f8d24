"""``[train] sampling``: minibatches from a finite set, with replacement ("iid") or in epochs ("reshuffle").

The twins: "iid" against the draw it has always been (``torch.randint`` on the
replica's data stream, written out here), "reshuffle" against the definition of
an epoch (every sample exactly once), on the very buffers both engine paths read.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import thermosgd
from thermosgd.config import from_dict
from thermosgd.errors import UsageError
from thermosgd.twolayer import engine, workers
from thermosgd.twolayer.data import DATA, SampleStream, generator
from thermosgd.twolayer.engine import _CHUNK, _Data, draw_processes, draw_threads


def _cfg(sampling: str | None, n: int = 24, **train):
    """A small finite-set configuration; ``sampling`` None leaves the key out (the default)."""
    chosen = {} if sampling is None else {"sampling": sampling}
    return from_dict(
        {
            "model": {"inputs": 3, "hidden": 4},
            "data": {"train_size": n, "probe_size": 8},
            "train": {**chosen, "seed": 5, "dtype": "float64", **train},
        }
    )


def _indices(stream: SampleStream, x: torch.Tensor) -> np.ndarray:
    """Which training sample each row of x (k, M) is (the set's rows are distinct Gaussian draws)."""
    match = (x.unsqueeze(1) == stream.train_x.unsqueeze(0)).all(-1)  # (k, n)
    assert bool((match.sum(1) == 1).all())
    return match.to(torch.int64).argmax(1).numpy()


def test_iid_draws_are_the_draws_of_before_bit_for_bit():
    cfg = _cfg("iid")
    stream = SampleStream(cfg, 5, 2, dtype=torch.float64)
    xs, ys = stream.batches(10, 3)
    idx = torch.randint(0, 24, (30,), generator=generator(5, 2, DATA))  # the one draw "iid" has always made
    assert torch.equal(xs.reshape(30, 3), stream.train_x[idx]) and torch.equal(ys.reshape(30), stream.train_y[idx])


@pytest.mark.parametrize("batch", [1, 4, 5])  # 5 does not divide 24: minibatches straddle epochs
def test_reshuffle_uses_every_sample_once_per_epoch(batch):
    stream = SampleStream(_cfg("reshuffle"), 5, 2, dtype=torch.float64)
    xs, _ = stream.batches(24, batch)  # 24·batch samples = `batch` whole epochs
    idx = _indices(stream, xs.reshape(-1, 3)).reshape(batch, 24)
    for epoch in idx:
        assert sorted(epoch) == list(range(24))
    assert len({tuple(e) for e in idx}) == batch or batch == 1  # a fresh permutation each epoch


def test_reshuffle_is_the_same_sequence_however_it_is_read():
    """Drawn in pieces of any size (chunks, buffers), the stream is one sequence of permutations."""
    a, b = (SampleStream(_cfg("reshuffle"), 5, 1, dtype=torch.float64) for _ in range(2))
    whole, _ = a.batches(50, 1)
    x = torch.empty(35, 3, dtype=torch.float64)
    y = torch.empty(35, dtype=torch.float64)
    b.batches_into(x, y)
    rest, _ = b.batches(15, 1)
    assert torch.equal(torch.cat([x, rest.reshape(15, 3)]), whole.reshape(50, 3))


@pytest.mark.parametrize("share_data", [True, False])
def test_engine_streams_use_every_sample_once_per_epoch_per_replica(share_data):
    """The buffers the reference and the fused loop read: per stream, each epoch a permutation."""
    cfg = _cfg("reshuffle", n=32, seeds=3, lr=[0.05, 0.1], batch_size=[2], share_data=share_data)
    data = _Data(cfg, [0, 1, 2], None, torch.float64)
    xs, _ = data.chunk(_CHUNK, 2, _CHUNK, by_stream=True)  # (streams, chunk, batch, M)
    assert xs.shape[0] == (3 if share_data else 6)
    for stream, x in zip(data.streams, xs):
        idx = _indices(stream, x.reshape(-1, 3)).reshape(-1, 32)  # 16 whole epochs
        for epoch in idx:
            assert sorted(epoch) == list(range(32))


def test_reshuffle_changes_the_run_and_iid_is_the_default():
    iid, explicit = (thermosgd.train(_cfg(s, steps=40, record_every=10)) for s in (None, "iid"))
    np.testing.assert_array_equal(iid.v_norm.values, explicit.v_norm.values)
    shuffled = thermosgd.train(_cfg("reshuffle", steps=40, record_every=10))
    assert not np.array_equal(iid.v_norm.values[..., 1:], shuffled.v_norm.values[..., 1:])
    assert shuffled.attrs["config"].count('"reshuffle"') == 1


def test_reshuffle_fused_equals_reference():
    pytest.importorskip("numba")
    cfg = _cfg("reshuffle", seeds=3, lr=[0.05, 0.3], batch_size=[5], steps=120, record_every=3, probe_every=30)
    ref, fus = thermosgd.train(cfg), thermosgd.train(cfg.replace(train={"fused": True}))
    for name in ("v_norm", "w_norm", "bias_mean", "activation_rate", "loss"):
        np.testing.assert_allclose(fus[name].values, ref[name].values, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize(
    "data, train, message",
    [
        ({"train_size": 0}, {}, "needs a finite training set"),
        ({"train_size": 24}, {"batch_size": [1, 2]}, "needs share_data = false"),
        ({"train_size": 24}, {"sampling": "epochs"}, "is not one of: iid, reshuffle"),
    ],
)
def test_bad_sampling_settings_are_refused_in_one_line(data, train, message):
    with pytest.raises(UsageError, match=message) as err:
        from_dict({"data": data, "train": {"sampling": "reshuffle", **train}})
    assert "\n" not in str(err.value)


def test_reshuffled_replica_does_not_depend_on_the_seeds_trained_with_it():
    cfg = _cfg("reshuffle", seeds=3, lr=[0.05, 0.1], steps=60, record_every=10)
    together = thermosgd.train(cfg)
    alone = thermosgd.train(cfg, seeds=[1])
    np.testing.assert_array_equal(together.v_norm.sel(seed=[1]).values, alone.v_norm.values)


def _two_data(sampling: str) -> tuple[_Data, _Data]:
    """Two identical sample sources of 14 streams (7 seeds × 2 η, one stream per replica)."""
    if sampling == "online":
        cfg = from_dict({"model": {"inputs": 3, "hidden": 4}, "train": {"seed": 5, "seeds": 7, "share_data": False}})
    else:
        cfg = _cfg("reshuffle", n=16, seeds=7, lr=[0.05, 0.1], share_data=False)
    one, many = (_Data(cfg, list(range(7)), None, torch.float64) for _ in range(2))
    return one, many


@pytest.mark.parametrize("sampling", ["online", "reshuffle"])
def test_chunks_drawn_on_several_threads_are_the_one_thread_chunks(sampling):
    """Beside a GPU a chunk's streams are drawn on several threads: each stream keeps its generator,
    so the chunks (two in a row: the generators' states carry over) are the same bits."""
    one, many = _two_data(sampling)
    many.draw_threads = 3  # 14 streams over 3 threads, unequal parts
    for _ in range(2):
        for a, b in zip(one.chunk(_CHUNK, 2, _CHUNK), many.chunk(_CHUNK, 2, _CHUNK)):
            assert torch.equal(a, b)


def test_draw_threads_only_beside_a_gpu():
    assert draw_threads("cpu", 10**5) == 1
    assert draw_threads("cuda", 8) == 1  # too few streams to split
    assert 1 <= draw_threads("cuda", 10**5) <= 8


@pytest.mark.parametrize("sampling", ["online", "reshuffle"])
@pytest.mark.parametrize("by_stream", [False, True])
def test_chunks_drawn_in_worker_processes_are_the_one_process_chunks(sampling, by_stream):
    """Beside a GPU the streams are drawn in forked processes that own them: the same bits, chunk after
    chunk (the generators' and epochs' states live on in the workers), in either layout."""
    one, many = _two_data(sampling)
    many.draw_processes = 3  # 14 streams over 3 processes, unequal parts
    many.start(2, _CHUNK)
    try:
        for n in (_CHUNK, _CHUNK, 5):  # whole chunks, then a partial one
            kept = many.chunk(n, 2, _CHUNK, by_stream=by_stream)
            again = many.chunk(n, 2, _CHUNK, by_stream=by_stream)  # must not overwrite what was returned
            for a, b in zip(
                one.chunk(n, 2, _CHUNK, by_stream=by_stream) + one.chunk(n, 2, _CHUNK, by_stream=by_stream),
                kept + again,
            ):
                assert torch.equal(a, b)
    finally:
        many.close()
    assert many._workers is None


@pytest.mark.parametrize("noise", ["sgd", "gd"])
def test_training_with_drawing_processes_is_the_same_run(monkeypatch, noise):
    """train() with its streams drawn in worker processes (forced here on the CPU) gives the same bits,
    for torch's generators ("sgd") and the Philox streams of the G-sample models ("gd")."""
    train = {"seed": 2, "seeds": 3, "steps": 300, "record_every": 50, "noise": noise, "gd_batch": 16}
    cfg = from_dict({"model": {"inputs": 3, "hidden": 4}, "train": train})
    alone = thermosgd.train(cfg)
    monkeypatch.setattr(engine, "draw_processes", lambda device, streams: 2)
    started = []

    class Counted(workers.StreamWorkers):
        def __init__(self, *args):
            super().__init__(*args)
            started.append(len(self._procs))

    monkeypatch.setattr(workers, "StreamWorkers", Counted)
    forked = thermosgd.train(cfg)
    assert started == [2]
    for name in ("v_norm", "w_norm", "activation_rate", "loss"):
        np.testing.assert_array_equal(forked[name].values, alone[name].values)


def test_a_failing_drawing_process_is_reported_in_one_message(monkeypatch):
    cfg = from_dict({"model": {"inputs": 3, "hidden": 4}, "train": {"seed": 5, "seeds": 4}})
    data = _Data(cfg, list(range(4)), None, torch.float64)
    data.draw_processes = 2

    def broken(x, y):
        raise ValueError("disk on fire")

    monkeypatch.setattr(data.streams[3], "batches_into", broken)  # the fork inherits it
    data.start(1, _CHUNK)
    with pytest.raises(RuntimeError, match="drawing samples failed: ValueError: disk on fire"):
        data.chunk(_CHUNK, 1, _CHUNK)
    data.close()


def test_draw_processes_only_beside_a_gpu_with_many_streams():
    assert draw_processes("cpu", 10**5) == 1
    assert draw_processes("cuda", 100) == 1  # too few streams to be worth a fork
    assert 1 <= draw_processes("cuda", 10**5) <= 16


def test_drawing_processes_leave_ctrl_c_to_the_trainer():
    """An interrupt reaches the whole process group: the workers ignore it (the trainer stops them),
    and keep drawing until told to stop."""
    import os
    import signal

    cfg = from_dict({"model": {"inputs": 3, "hidden": 4}, "train": {"seed": 5, "seeds": 4}})
    one, many = (_Data(cfg, list(range(4)), None, torch.float64) for _ in range(2))
    many.draw_processes = 2
    many.start(1, _CHUNK)
    try:
        for a, b in zip(one.chunk(_CHUNK, 1, _CHUNK), many.chunk(_CHUNK, 1, _CHUNK)):  # the workers are serving
            assert torch.equal(a, b)
        for proc in many._workers._procs:
            os.kill(proc.pid, signal.SIGINT)
        for a, b in zip(one.chunk(_CHUNK, 1, _CHUNK), many.chunk(_CHUNK, 1, _CHUNK)):
            assert torch.equal(a, b)
    finally:
        many.close()
