"""The drift trajectories train in the engine's one loop (``engine._integrate``) exactly as a plain loop would.

The twin below is the loop ``trajectory_drift`` had before it moved onto ``_integrate``: one
draw of ``R·|B|max`` samples per step, shared by the grid, recorded before stepping. Bit for bit
on one machine (same operations in the same order), over several chunks of the engine's loop.
"""

import numpy as np
import torch

from thermosgd.twolayer import drift
from thermosgd.twolayer.data import DATA, SampleStream, generator
from thermosgd.twolayer.steps import sgd_step


def _plain_loop(setup, lrs, bss, *, steps, blocks, per_block, record_every, seed):
    """(b, V, b_ref, V_ref) at the recorded steps, (steps, L, K, Q, N): block means and references."""
    W0, b0, V0 = drift.initial_state(setup)
    N, M = W0.shape
    L, K, Q, P = len(lrs), len(bss), blocks, per_block
    R, B, G = Q * P, max(bss), L * K
    W, b, V = W0.expand(G * R, N, M).clone(), b0.expand(G * R, N).clone(), V0.expand(G * R, N).clone()
    Wr, br, Vr = W0.expand(G * Q, N, M).clone(), b0.expand(G * Q, N).clone(), V0.expand(G * Q, N).clone()
    wl = drift._grid_wl(lrs, bss, R, B)
    wl_ref = (drift._grid_wl(lrs, bss, Q, B).view(G * Q, 1, B).expand(G * Q, P, B) / P).reshape(G * Q, P * B)
    stream = SampleStream(setup.config(), setup.seed, 0, dtype=torch.float64)
    gen = generator(setup.seed, seed, DATA)
    out = []
    for step in range(steps + 1):
        x, y = stream.sample(R * B, gen)
        x = x.view(1, R, B, M).expand(G, R, B, M).reshape(G * R, B, M)
        y = y.view(1, R, B).expand(G, R, B).reshape(G * R, B)
        if step % record_every == 0 or step == steps:
            mean = lambda t: t.reshape(L, K, Q, P, N).mean(3).numpy().copy()  # noqa: E731
            out.append((mean(b), mean(V), br.view(L, K, Q, N).numpy().copy(), Vr.view(L, K, Q, N).numpy().copy()))
        if step == steps:
            break
        sgd_step(W, b, V, x, y, wl, setup.loss)
        sgd_step(Wr, br, Vr, x.view(G * Q, P * B, M), y.view(G * Q, P * B), wl_ref, setup.loss)
    return [np.stack(v) for v in zip(*out)]


def test_trajectories_equal_a_plain_step_loop_bit_for_bit():
    setup = drift.DriftSetup(inputs=5, hidden=4, labels="teacher", loss="mse", seed=3)
    kw = dict(steps=41, blocks=2, per_block=6, record_every=10, seed=2)  # 41 steps: three chunks of 16
    ds = drift.trajectory_drift(setup, [0.05, 0.2], [2, 5], **kw)
    want = _plain_loop(setup, [0.05, 0.2], [2, 5], **kw)
    assert ds["step"].values.tolist() == [0, 10, 20, 30, 40, 41]
    for name, expected in zip(("b", "V", "b_ref", "V_ref"), want):
        got = ds[name].transpose("step", "lr", "batch_size", "block", "unit").values
        np.testing.assert_array_equal(got, expected, err_msg=name)
