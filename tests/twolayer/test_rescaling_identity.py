"""An exact identity of ReLU units on the engine's own steps (the rescaling symmetry, Kunin et al. 2021).

For every unit j, Q_j = ‖w_j‖² + b_j² − v_j² is invariant under w_j, b_j → c w_j, c b_j
and v_j → v_j / c, so each per-sample gradient satisfies w·g_w + b g_b − v g_v = 0, and so
does any weighted sum of them. A step θ ← θ − η g built from per-sample gradients (sgd, gd,
gaussian) therefore changes Q_j by exactly η²(‖g_wj‖² + g_bj² − g_vj²). The gradients g
here come from torch.autograd (the twin), the step from the engine: the two agree to
rounding in float64. "frozen" adds noise that is not built from per-sample gradients and
breaks the identity, which shows that the check can fail.
"""

from __future__ import annotations

import pytest
import torch

from thermosgd.twolayer.steps import frozen_step, gaussian_step, gaussian_weights, gd_step, sgd_step

EPS = torch.finfo(torch.float64).eps
R, N, M, G = 3, 6, 4, 9


def _state(seed: int):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(R, N, M, generator=g, dtype=torch.float64)
    b = torch.randn(R, N, generator=g, dtype=torch.float64) * 0.5
    V = torch.randn(R, N, generator=g, dtype=torch.float64)
    x = torch.randn(R, G, M, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (R, G), generator=g).to(torch.float64)
    z = torch.randn(R, G, generator=g, dtype=torch.float64)
    return W, b, V, x, y, z


def _Q(W, b, V):
    return W.pow(2).sum(-1) + b * b - V * V  # (R, N)


def _autograd_direction(W, b, V, x, y, weights, loss):
    """g with θ ← θ − g: the gradient of Σ_i weights_i ℓ(θ; x_i, y_i), one replica at a time."""
    out = []
    for r in range(R):
        Wr, br, Vr = (t[r].clone().requires_grad_(True) for t in (W, b, V))
        f = torch.relu(x[r] @ Wr.T + br) @ Vr
        if loss == "bce":
            ell = torch.nn.functional.binary_cross_entropy_with_logits(f, y[r], reduction="none")
        else:
            ell = 0.5 * (f - y[r]) ** 2
        (weights[r] * ell).sum().backward()
        out.append((Wr.grad, br.grad, Vr.grad))
    return (torch.stack(v) for v in zip(*out))


def _step(noise: str, W, b, V, x, y, z, lr, loss):
    """The engine's step in place, and its per-sample weights (η folded in)."""
    lrs, bs = torch.full((R,), lr, dtype=torch.float64), torch.full((R,), 2.0, dtype=torch.float64)
    if noise == "sgd":
        wl = torch.zeros(R, G, dtype=torch.float64)
        wl[:, :4] = lr / 4  # |B| = 4 of the G samples
        sgd_step(W, b, V, x, y, wl, loss)
        return wl
    if noise == "gd":
        gd_step(W, b, V, x, y, lrs, loss)
        return torch.full((R, G), lr / G, dtype=torch.float64)
    gaussian_step(W, b, V, x, y, lrs, bs, z, loss)
    return gaussian_weights(lrs, bs, z)


@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize("noise", ["sgd", "gd", "gaussian"])
def test_Q_changes_by_exactly_eta_squared_times_the_gradient_form(noise, loss):
    W, b, V, x, y, z = _state(1)
    lr = 0.7
    Q0, scale = _Q(W, b, V), W.pow(2).sum(-1) + b * b + V * V
    W1, b1, V1 = W.clone(), b.clone(), V.clone()
    weights = _step(noise, W1, b1, V1, x, y, z, lr, loss)
    gW, gb, gV = _autograd_direction(W, b, V, x, y, weights, loss)  # θ1 = θ0 − g (η inside the weights)
    predicted = gW.pow(2).sum(-1) + gb * gb - gV * gV
    change = _Q(W1, b1, V1) - Q0
    tol = 64 * EPS * (scale + W1.pow(2).sum(-1) + b1 * b1 + V1 * V1)
    assert bool(((change - predicted).abs() <= tol).all()), (change - predicted).abs().max()
    assert bool((predicted.abs() > 1e6 * tol).any())  # the η² term is far above rounding: it is tested


def test_frozen_noise_breaks_the_identity():
    W, b, V, x, y, _ = _state(2)
    lr = 0.7
    W1, b1, V1 = W.clone(), b.clone(), V.clone()
    scale = torch.full((R, N * M + 2 * N), 0.3, dtype=torch.float64)
    xi = torch.randn(R, N * M + 2 * N, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    frozen_step(W1, b1, V1, x, y, torch.full((R,), lr, dtype=torch.float64), scale, xi, "bce")
    dW, db, dV = W - W1, b - b1, V - V1  # the whole step, noise included
    change = _Q(W1, b1, V1) - _Q(W, b, V)
    predicted = dW.pow(2).sum(-1) + db * db - dV * dV
    assert float((change - predicted).abs().max()) > 1e-3  # the linear term 2(w·Δw + bΔb − vΔv) is back
