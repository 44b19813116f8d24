"""What the engine records about R replicas at a step: norms, activation rate, probe-set metrics.

Every function maps the current parameters (and the fixed probe set) to a dict
of ``(R,)`` tensors; *when* they run is the engine's schedule, not decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from thermosgd.instruments import _moments as moments
from thermosgd.twolayer.losses import dloss_df, loss_value
from thermosgd.twolayer.params import Params

#: Variables recorded at every recorded step (probe-set ones only at probe steps, NaN elsewhere).
METRICS = (
    "activation_rate",
    "v_norm",
    "w_norm",
    "bias_mean",
    "loss",
    "error",
    "grad_var",
    "grad_var_V",
    "grad_var_W",
    "grad_var_b",
)
#: Recorded at probe steps when a held-out set exists.
TEST_METRICS = ("test_loss", "test_error")


@dataclass
class ProbeSet:
    """The fixed samples the probe-set instruments use, per replica.

    Attributes:
        x: (R, P, M) inputs; y: (R, P) labels.
        batch_size: (R,) each replica's |B| (minibatch variance = per-sample / |B|).
        test_x: (R, P', M) held-out inputs or None; test_y: (R, P') or None.
    """

    x: torch.Tensor
    y: torch.Tensor
    batch_size: torch.Tensor
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None


def forward(p: Params, x: torch.Tensor) -> torch.Tensor:
    """Network output f for inputs x (R, P, M) → (R, P)."""
    z = torch.baddbmm(p.b.unsqueeze(1), x, p.W.mT)
    return torch.bmm(z.clamp_min_(0.0), p.V.unsqueeze(-1)).squeeze(-1)


def measure(
    p: Params, row_norm: torch.Tensor, probe: ProbeSet, *, loss: str, bias: bool, gaussian: bool, with_probe: bool
) -> dict[str, torch.Tensor]:
    """The metrics of one recorded step, each (R,).

    Args:
        p: parameters W (R, N, M), b (R, N), V (R, N).
        row_norm: (R, N) ‖W_i‖ (passed in: the engine may track it incrementally).
        probe: the probe (and test) set.
        loss: "bce" or "mse". bias: whether b is trained.
        gaussian: inputs are N(0, I), so the activation rate is exact; otherwise
            it is counted on the probe set.
        with_probe: also compute loss, error and gradient variance (and test metrics).
    """
    values = {"v_norm": p.V.norm(dim=-1), "w_norm": row_norm.norm(dim=-1), "bias_mean": p.b.mean(-1)}
    if gaussian:
        # x ~ N(0, I): unit i's pre-activation is N(b_i, ‖W_i‖²), active w.p. Φ(b_i/‖W_i‖).
        values["activation_rate"] = torch.special.ndtr(p.b / row_norm).mean(-1)
    if with_probe or not gaussian:
        values.update(
            probe_metrics(
                p, probe.x, probe.y, probe.batch_size, loss=loss, bias=bias, need_grads=with_probe, exact_rate=gaussian
            )
        )
    if with_probe and probe.test_x is not None and probe.test_y is not None:
        f = forward(p, probe.test_x)
        values["test_loss"] = loss_value(f, probe.test_y, loss).mean(-1)
        values["test_error"] = torch.ne((f > 0).to(f.dtype), probe.test_y).to(f.dtype).mean(-1)
    return values


def probe_metrics(
    p: Params, px, py, bsz, *, loss: str, bias: bool, need_grads: bool, exact_rate: bool
) -> dict[str, torch.Tensor]:
    """Probe-set instruments for every replica (each of shape (R,)).

    Args:
        p: parameters W (R, N, M), b (R, N), V (R, N).
        px: probe inputs (R, P, M); py: probe labels (R, P).
        bsz: (R,) batch size of each replica (minibatch variance = per-sample / |B|).
        loss: "bce" or "mse". bias: whether b is trained (counts in ``grad_var``).
        need_grads: compute loss, error and gradient variances.
        exact_rate: the activation rate is computed elsewhere (skip the count).

    Gradient variances are :mod:`~thermosgd.instruments._moments`' (unbiased): the two-layer net
    ``f = V·relu(W x + b)`` is three linear maps whose per-sample gradients are (output error ⊗
    input): V's with error ``e = ∂ℓ/∂f`` and input ``a = relu(z)``; W's with errors
    ``δ = e V ⊙ 1[z > 0]`` and input x; b's the errors δ. Never materialized, in float64.
    """
    P = px.shape[-2]
    N, M = p.V.shape[-1], px.shape[-1]
    z = torch.baddbmm(p.b.unsqueeze(1), px, p.W.mT)  # (R, P, N)
    s = (z > 0).to(z.dtype)
    out = {}
    if not exact_rate:
        out["activation_rate"] = s.mean((-1, -2))
    if not need_grads:
        return out
    a = z.clamp_min_(0.0)
    f = torch.bmm(a, p.V.unsqueeze(-1)).squeeze(-1)  # (R, P)
    out["loss"] = loss_value(f, py, loss).mean(-1)
    out["error"] = ((f > 0).to(f.dtype) != py).to(f.dtype).mean(-1)
    e = dloss_df(f, py, loss)  # per-sample ∂ℓ/∂f
    delta = s * (e.unsqueeze(-1) * p.V.unsqueeze(1))  # (R, P, N)
    var_V, var_W, var_b = (
        moments.normalize(m2, P).to(f.dtype)
        for m2 in (
            moments.linear_weight_deviations(a, e.unsqueeze(-1)),
            moments.linear_weight_deviations(px, delta),
            moments.bias_deviations(delta),
        )
    )
    n_b = N if bias else 0
    total = var_V + var_W + (var_b if n_b else 0)
    out["grad_var_V"] = var_V / (N * bsz)
    out["grad_var_W"] = var_W / (N * M * bsz)
    out["grad_var_b"] = var_b / (N * bsz)
    out["grad_var"] = total / ((N + N * M + n_b) * bsz)
    return out
