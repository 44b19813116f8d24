"""The two-layer per-sample moments are :mod:`thermosgd.instruments._moments`' (issue 19).

``probe_metrics``, ``per_sample_variance`` and ``population_moments`` are checked against a
slow, obviously-right twin: every sample's gradient by autograd, then ``torch.var``. The
compiled kernels ``probe`` (lanes) and ``row_probe`` (rows) stay compiled and are checked as
twins of ``_moments`` directly, on the same parameters and probe samples. float64 throughout;
tolerance 1e-10 relative (sums in other orders agree to ~1e-15; the margin covers the
closed forms' cancellation of second moment and squared mean).
"""

import numpy as np
import pytest
import torch

from thermosgd.instruments import _moments as moments
from thermosgd.seeds import derive_seed
from thermosgd.twolayer import drift, fused, measure, noise
from thermosgd.twolayer.losses import dloss_df, loss_value
from thermosgd.twolayer.params import Params

RTOL = 1e-10
F64 = torch.float64


def _gen(*path: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(19, *path))


def _net(R: int, N: int, M: int, P: int, seed: int):
    g = _gen(seed)
    W, b, V = (torch.randn(*s, generator=g, dtype=F64) for s in ((R, N, M), (R, N), (R, N)))
    x = torch.randn(R, P, M, generator=g, dtype=F64)
    y = (torch.rand(R, P, generator=g) < 0.5).to(F64)
    return W, b, V, x, y


def _autograd_grads(W, b, V, x, y, loss):
    """Every sample's gradient (R, P, N·M + 2N) by autograd, one sample at a time (W, b, V order)."""
    rows = []
    for r in range(W.shape[0]):
        per = []
        for i in range(x.shape[1]):
            w, bb, v = (t[r].clone().requires_grad_() for t in (W, b, V))
            f = torch.relu(w @ x[r, i] + bb) @ v
            gw, gb, gv = torch.autograd.grad(loss_value(f, y[r, i], loss), (w, bb, v))
            per.append(torch.cat([gw.flatten(), gb, gv]))
        rows.append(torch.stack(per))
    return torch.stack(rows)


def _close(actual, expected):
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64), rtol=RTOL, atol=0
    )


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_per_sample_variance_is_the_autograd_variance(loss):
    W, b, V, x, y = _net(3, 4, 3, 17, seed=1)
    _close(noise.per_sample_variance(W, b, V, x, y, loss), _autograd_grads(W, b, V, x, y, loss).var(1))


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_probe_metrics_are_the_autograd_variances(loss):
    R, N, M, P = 3, 4, 3, 17
    W, b, V, x, y = _net(R, N, M, P, seed=2)
    bsz = torch.tensor([1.0, 4.0, 8.0], dtype=F64)
    got = measure.probe_metrics(
        Params(W.clone(), b.clone(), V.clone()), x, y, bsz, loss=loss, bias=True, need_grads=True, exact_rate=True
    )
    var = _autograd_grads(W, b, V, x, y, loss).var(1)  # (R, N·M + 2N)
    _close(got["grad_var_W"], var[:, : N * M].mean(1) / bsz)
    _close(got["grad_var_b"], var[:, N * M : N * M + N].mean(1) / bsz)
    _close(got["grad_var_V"], var[:, N * M + N :].mean(1) / bsz)
    _close(got["grad_var"], var.mean(1) / bsz)


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_population_moments_average_the_labels_exactly(loss):
    """Random labels: the label-averaged moments equal those over both labels of every x (2n samples)."""
    S, N, M, n = 2, 4, 3, 40
    W, b, V, x, _ = _net(S, N, M, n, seed=3)
    x = x[0]
    got = drift.population_moments(W, b, V, x, torch.zeros(n, dtype=F64), loss, True)
    xx = torch.cat([x, x]).expand(S, 2 * n, M)
    yy = torch.cat([torch.zeros(n, dtype=F64), torch.ones(n, dtype=F64)]).expand(S, 2 * n)
    grads = _autograd_grads(W, b, V, xx, yy, loss)  # (S, 2n, N·M + 2N)
    _close(got["G_b"], grads[:, :, N * M : N * M + N].mean(1))
    _close(got["G_V"], grads[:, :, N * M + N :].mean(1))
    _close(got["var_b"], grads[:, :, N * M : N * M + N].var(1, correction=0))
    _close(got["var_V"], grads[:, :, N * M + N :].var(1, correction=0))


def _moments_of(W, b, V, x, y, loss):
    """``(var_V, var_W, var_b)`` summed over entries (R,), unbiased, and the errors δ: from ``_moments``."""
    z = torch.baddbmm(b.unsqueeze(1), x, W.mT)
    a = z.clamp_min(0.0)
    e = dloss_df(torch.bmm(a, V.unsqueeze(-1)).squeeze(-1), y, loss)
    delta = (z > 0).to(F64) * e.unsqueeze(-1) * V.unsqueeze(1)
    P = x.shape[1]
    m2 = (
        moments.linear_weight_deviations(a, e.unsqueeze(-1)),
        moments.linear_weight_deviations(x, delta),
        moments.bias_deviations(delta),
    )
    return tuple(moments.normalize(v, P) for v in m2), delta


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_lane_probe_kernel_is_a_twin_of_moments(loss):
    from thermosgd.twolayer.lanes import LANES

    probe = fused._kernels().probe  # through fused: numba's cache goes outside the source tree

    NB, N, M, P = 2, 3, 4, 9
    R = NB * LANES
    W, b, V, x, y = _net(R, N, M, P, seed=4)
    lanes = lambda t: np.ascontiguousarray(t.reshape(NB, LANES, *t.shape[1:]).movedim(1, -1).numpy())  # noqa: E731
    out = np.full((6, NB, LANES), np.nan)
    probe(lanes(W), lanes(b), lanes(V), lanes(x), lanes(y), 0, loss == "mse", True, out, 0, NB)
    (var_V, var_W, var_b), _ = _moments_of(W, b, V, x, y, loss)
    _close(out[3].reshape(R), var_V)
    _close(out[4].reshape(R), var_W)
    _close(out[5].reshape(R), var_b)


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_row_probe_kernel_is_a_twin_of_moments(loss):
    """``row_probe`` gives V's and b's variances and E‖δ‖²‖x‖² for W; the caller subtracts W's squared mean."""
    row_probe = fused._kernels().row_probe

    R, N, M, P = 5, 3, 4, 11
    W, b, V, x, y = _net(R, N, M, P, seed=5)
    z = torch.baddbmm(b.unsqueeze(1), x, W.mT).numpy()
    delta, out = np.empty_like(z), np.full((6, R), np.nan)
    seed = np.arange(R)
    row_probe(z, V.numpy(), y.numpy(), seed, (x * x).sum(-1).numpy(), loss == "mse", True, delta, out, 0, R)
    (var_V, var_W, var_b), want_delta = _moments_of(W, b, V, x, y, loss)
    _close(delta, want_delta)
    _close(out[3], var_V)
    _close(out[5], var_b)
    gW = torch.bmm(torch.from_numpy(delta).mT, x) / P  # as fused.RowEnsemble.probe completes W's row
    _close((torch.from_numpy(out[4]) - gW.pow(2).sum((-1, -2))) * (P / (P - 1)), var_W)
