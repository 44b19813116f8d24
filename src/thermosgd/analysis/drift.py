"""Measured drift of b_i and V_i² beside the paper's thermophoretic prediction (Sec. 5, Eq. 23–28).

What is compared, precisely
---------------------------
The paper's Eq. 27 is a probability *flux* ``J_t = η²/|B| · ψ`` along the one
direction of the set ``U = {|V_i|, b_i}`` that the shared sign of the gradient
allows (Eq. 7–8), with ``ψ ∝ ρ``. A flux divided by the density is a particle
velocity, so the paper's prediction for the mean drift *per SGD step* of one
unit is::

    d b   = −(η²/|B|) ψ(|V|, W, b, err2; ρ=1) · u_b,
    d |V| = −(η²/|B|) ψ(|V|, W, b, err2; ρ=1) · u_V,      d V² = 2|V| · d|V|,

with ``u = (g_V, g_b)/‖g‖ = (φ1, |V| φ2)/sqrt(φ1² + V² φ2²)`` the unit vector of
the walk in ``(|V|, b)`` (Eq. 23–26) and ``err2 = E[(p − y)²]`` measured.
Conversion factors, stated rather than hidden: (i) ψ as printed carries a
factor ½ that Eq. 10's thermophoretic term lacks (Eq. 10 would give twice the
numbers below); (ii) ``ρ = 1`` (flux per unit density); (iii) ``ψ`` is
evaluated at ``|V|`` (the paper's V → −V map), so both predicted drifts are
negative: towards smaller ``b`` and smaller ``V²``.

Two measurements, both in float64:

* **One step from a fixed point** (:func:`one_step_drift`): clone one state
  ``θ_t`` into R replicas, take one SGD step each with independent minibatches
  and split ``E[Δq]`` and ``E[Δ(q²)]`` into the mean-gradient part and the rest.
  Because ``E[g_B] = ∇L`` exactly, the rest is ``0`` for ``b`` and exactly the
  Itô term ``η² var[g_B] = η² var_x[∇ℓ]/|B| > 0`` for ``V²``: in one step the
  noise moves the *mean* of ``b`` not at all and *raises* ``E[V²]``.
* **Whole trajectories** (:func:`trajectory_drift`): many SGD replicas from one
  shared initialization, each with its own data, beside a reference replica
  that follows the mean gradient (a full-batch step on the pooled minibatches
  of its block of replicas, i.e. |B|·replicas samples: the same samples, so
  the two share their sampling noise, which cancels in the difference). The
  excess ``E[q_t^SGD] − q_t^ref`` is what noise does to the mean beyond the
  mean gradient; its slope over a window is the measured drift per step.
  Standard errors are between independent blocks of replicas (each with its
  own reference). For ``V²`` the excess is split (:func:`excess_parts`) into
  the replica variance of ``V`` (the accumulated Itô/diffusion piece, ≥ 0) and
  the shift of the mean, ``E[V]² − V_ref²``; only the latter is a drift
  comparable with the paper's.

Shapes: L learning rates, K batch sizes, N hidden units, M inputs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from thermosgd.errors import UsageError
from thermosgd.config import SweepConfig, from_dict
from thermosgd.twolayer import theory
from thermosgd.twolayer.data import DATA, INIT, PROBE, SampleStream, generator
from thermosgd.twolayer.engine import dloss_df, init_params, sgd_step

__all__ = [
    "DriftSetup",
    "OneStep",
    "one_step_moments",
    "population_moments",
    "predicted_drift",
    "one_step_drift",
    "trajectory_drift",
    "window_drift",
    "excess_parts",
    "fit_scaling",
    "drift_summary",
    "drift_table",
    "drift_experiment",
]

_F64 = torch.float64


# --------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftSetup:
    """The model and task of the drift experiments (Gaussian inputs, as in Sec. 5).

    Attributes:
        inputs: M. hidden: N.
        labels: "random" (the paper's setting: y ~ Bernoulli(½) independent of x)
            or "teacher" (a learnable task, so that err2 falls during training).
        loss: "bce" or "mse".
        init: "torch" or "gaussian" (see :class:`thermosgd.config.ModelConfig`).
        init_scale: multiplies the initial parameters.
        seed: master seed of the initialization, the data and the teacher.
    """

    inputs: int = 10
    hidden: int = 10
    labels: str = "random"
    loss: str = "bce"
    init: str = "torch"
    init_scale: float = 1.0
    seed: int = 0

    def config(self) -> SweepConfig:
        if self.labels not in ("random", "teacher"):
            raise UsageError(f"labels must be 'random' or 'teacher', got {self.labels!r}")
        return from_dict({
            "model": {"inputs": self.inputs, "hidden": self.hidden, "init": self.init,
                      "init_scale": self.init_scale},
            "data": {"inputs": "gaussian", "labels": self.labels},
            "train": {"loss": self.loss, "dtype": "float64", "seed": self.seed},
        })


def _initial_state(setup: DriftSetup):
    cfg = setup.config()
    return init_params(cfg, generator(setup.seed, 0, INIT), _F64)


def _residual(f: torch.Tensor, y: torch.Tensor, loss: str, random_labels: bool):
    """Per-sample ``e = ∂ℓ/∂f`` and ``e²``, averaged over y when labels are random.

    For y ~ Bernoulli(½) independent of x, ``∂ℓ/∂f`` is linear in y for both
    losses, so ``E_y[e] = e(y=½)`` and ``E_y[e²] = e(½)² + ¼`` exactly; this
    removes the label noise from every population average (Rao–Blackwell).
    """
    if random_labels:
        e = dloss_df(f, torch.full_like(f, 0.5), loss)
        return e, e * e + 0.25
    e = dloss_df(f, y, loss)
    return e, e * e


# --------------------------------------------------------------------------
# Generic one-step estimator
# --------------------------------------------------------------------------


@dataclass
class OneStep:
    """Decomposition of the one-step moments of a coordinate q (all arrays (P,), per step).

    ``mean``/``se`` pairs: Monte Carlo mean over clones and its standard error.

    Attributes:
        dq: ``E[Δq]``.
        gradient: ``−η G`` (the noiseless step).
        excess: ``E[Δq] + η G``; 0 in expectation for any unbiased gradient noise.
        dq2: ``E[Δ(q²)]``.
        gradient_q2: ``−2η q G + η² G²`` (what the noiseless step does to q²).
        excess_q2: ``E[Δ(q²)] − gradient_q2``; in expectation the Itô term ``η² var[g]``.
        ito: ``η² var[g]`` from the supplied gradient variance (NaN if not given).
    """

    dq: np.ndarray
    dq_se: np.ndarray
    gradient: np.ndarray
    excess: np.ndarray
    excess_se: np.ndarray
    dq2: np.ndarray
    dq2_se: np.ndarray
    gradient_q2: np.ndarray
    excess_q2: np.ndarray
    excess_q2_se: np.ndarray
    ito: np.ndarray


def one_step_moments(q0, q1, mean_grad, lr, *, grad_var=None, mean_grad_se=None) -> OneStep:
    """Split the one-step drift of R clones of ``q0`` into mean-gradient and noise parts.

    Args:
        q0: ``(P,)`` the shared state.
        q1: ``(R, P)`` the state of each clone after one step.
        mean_grad: ``(P,)`` the mean gradient ``G`` at ``q0`` (the step is ``−η g``, ``E g = G``).
        lr: ``η``.
        grad_var: optional ``(P,)`` variance of the stochastic gradient ``g``
            (per-sample variance / |B| for a minibatch); gives ``ito``.
        mean_grad_se: optional ``(P,)`` Monte Carlo standard error of ``G``,
            added in quadrature to the standard errors of the excesses.

    Returns:
        :class:`OneStep`.
    """
    q0 = torch.as_tensor(q0, dtype=_F64)
    q1 = torch.as_tensor(q1, dtype=_F64)
    G = torch.as_tensor(mean_grad, dtype=_F64)
    R = q1.shape[0]
    if R < 2:
        raise UsageError("one_step_moments needs at least 2 clones")
    dq = q1 - q0
    dq2 = q1 * q1 - q0 * q0
    gse = torch.zeros_like(G) if mean_grad_se is None else torch.as_tensor(mean_grad_se, dtype=_F64)
    dq_m, dq_se = dq.mean(0), dq.std(0) / math.sqrt(R)
    d2_m, d2_se = dq2.mean(0), dq2.std(0) / math.sqrt(R)
    grad = -lr * G
    grad_q2 = -2 * lr * q0 * G + lr**2 * G * G
    ito = torch.full_like(G, float("nan")) if grad_var is None else lr**2 * torch.as_tensor(grad_var, dtype=_F64)
    n = lambda t: t.numpy().copy()  # noqa: E731
    return OneStep(
        dq=n(dq_m), dq_se=n(dq_se), gradient=n(grad),
        excess=n(dq_m - grad), excess_se=n(torch.hypot(dq_se, lr * gse)),
        dq2=n(d2_m), dq2_se=n(d2_se), gradient_q2=n(grad_q2),
        excess_q2=n(d2_m - grad_q2),
        excess_q2_se=n(torch.hypot(d2_se, (2 * lr * (q0 - lr * G)).abs() * gse)),
        ito=n(ito),
    )


# --------------------------------------------------------------------------
# Two-layer pieces
# --------------------------------------------------------------------------


def population_moments(W, b, V, x, y, loss: str, random_labels: bool) -> dict:
    """Mean gradient, per-sample gradient variance and err2 over a large sample.

    Args:
        W: ``(S, N, M)``; b, V: ``(S, N)`` — S states.
        x: ``(n, M)`` inputs; y: ``(n,)`` labels (ignored when ``random_labels``).
        loss: "bce" or "mse". random_labels: average over y ~ Bernoulli(½) exactly.

    Returns:
        dict of float64 tensors: ``G_b, G_V, var_b, var_V, se_G_b, se_G_V``
        ``(S, N)`` (per-sample variances of ``∂ℓ/∂b_i``, ``∂ℓ/∂V_i``; standard
        errors of the means over x) and ``err2`` ``(S,)`` = ``E[(∂ℓ/∂f)²]``
        (``E[(p − y)²]`` for BCE).
    """
    z = torch.einsum("snm,km->skn", W, x) + b.unsqueeze(1)  # (S, n, N)
    s = (z > 0).to(_F64)
    a = z.clamp_min(0.0)
    f = (a * V.unsqueeze(1)).sum(-1)  # (S, n)
    e, e2 = _residual(f, y.expand_as(f), loss, random_labels)
    n = x.shape[0]
    ga, gs = e.unsqueeze(-1) * a, e.unsqueeze(-1) * s  # per-x (label-averaged) terms
    G_V, G_b = ga.mean(1), V * gs.mean(1)
    var_V = (e2.unsqueeze(-1) * a * a).mean(1) - G_V**2
    var_b = V * V * (e2.unsqueeze(-1) * s).mean(1) - G_b**2
    return {
        "G_b": G_b, "G_V": G_V, "var_b": var_b, "var_V": var_V,
        "se_G_V": ga.std(1) / math.sqrt(n), "se_G_b": V.abs() * gs.std(1) / math.sqrt(n),
        "err2": e2.mean(1),
    }


def predicted_drift(V, W, b, err2, lr, batch_size):
    """The paper's thermophoretic drift per step of ``b`` and ``V²`` (module docstring).

    Args:
        V: ``(...)``; W: ``(..., M)``; b: ``(...)``; err2: float or ``(...)``.
        lr: η; batch_size: |B| (floats or broadcastable tensors).

    Returns:
        ``(db, dV2)``, float64 tensors ``(...)``, both ≤ 0.
    """
    Va = torch.as_tensor(V, dtype=_F64).abs()
    p1, p2 = theory.phi1(W, b, err2), theory.phi2(W, b, err2)
    j = theory.thermophoretic_flow(Va, W, b, err2, lr, batch_size)
    norm = torch.sqrt(p1 * p1 + Va * Va * p2 * p2)
    db = torch.nan_to_num(-j * Va * p2 / norm)
    dabs = torch.nan_to_num(-j * p1 / norm)
    return db, 2 * Va * dabs


def _grid_wl(lrs, bss, R, Bmax):
    """Per-sample step weights (L·K·R, Bmax): η/|B| on the first |B| samples."""
    wl = torch.zeros(len(lrs), len(bss), R, Bmax, dtype=_F64)
    for li, lr in enumerate(lrs):
        for ki, bs in enumerate(bss):
            wl[li, ki, :, :bs] = lr / bs
    return wl.reshape(-1, Bmax)


def _check_grid(lrs, bss):
    lrs, bss = [float(v) for v in lrs], [int(v) for v in bss]
    if not lrs or not bss:
        raise UsageError("need at least one learning rate and one batch size")
    if any(not (v > 0) or not math.isfinite(v) for v in lrs):
        raise UsageError(f"learning rates must be positive and finite, got {lrs}")
    if any(v < 1 for v in bss):
        raise UsageError(f"batch sizes must be >= 1, got {bss}")
    return lrs, bss


def one_step_drift(setup: DriftSetup, states, lrs, batch_sizes, *, clones: int = 4096,
                   pop_size: int = 1 << 14, seed: int = 1) -> xr.Dataset:
    """One-step drift of b_i and V_i² from fixed states, for every (η, |B|).

    Args:
        setup: model and task.
        states: ``(W (L, K, N, M), b (L, K, N), V (L, K, N))``, the state cloned
            for each grid point (e.g. the same initialization everywhere).
        lrs, batch_sizes: the grid (L, K).
        clones: R replicas per grid point, one SGD step each.
        pop_size: samples for the mean gradient and variance.
        seed: seed of the clones' minibatches and of the population sample.

    Returns:
        Dataset with dims (lr, batch_size, unit); for ``b`` and ``V2``:
        ``{q}_step`` (E[Δq]), ``{q}_gradient``, ``{q}_excess`` (± ``_se``),
        ``V2_ito`` (η² var/|B|), ``{q}_predicted`` (paper), and ``err2``.
    """
    lrs, bss = _check_grid(lrs, batch_sizes)
    if clones < 2:
        raise UsageError(f"clones must be >= 2, got {clones}")
    cfg = setup.config()
    random_labels = setup.labels == "random"
    W, b, V = (torch.as_tensor(t, dtype=_F64) for t in states)
    L, K, N, M = W.shape
    stream = SampleStream(cfg, setup.seed, 0, dtype=_F64)
    px, py = stream.sample(pop_size, generator(setup.seed, seed, PROBE))
    pop = population_moments(W.reshape(L * K, N, M), b.reshape(L * K, N), V.reshape(L * K, N),
                             px, py, setup.loss, random_labels)
    R, Bmax = clones, max(bss)
    Wc = W.reshape(L * K, 1, N, M).expand(L * K, R, N, M).reshape(-1, N, M).clone()
    bc = b.reshape(L * K, 1, N).expand(L * K, R, N).reshape(-1, N).clone()
    Vc = V.reshape(L * K, 1, N).expand(L * K, R, N).reshape(-1, N).clone()
    x, y = stream.sample(L * K * R * Bmax, generator(setup.seed, seed, DATA))
    sgd_step(Wc, bc, Vc, x.view(-1, Bmax, M), y.view(-1, Bmax), _grid_wl(lrs, bss, R, Bmax), setup.loss)
    bc, Vc = bc.view(L, K, R, N), Vc.view(L, K, R, N)
    out = {k: np.full((L, K, N), np.nan) for k in (
        "b_step", "b_step_se", "b_gradient", "b_excess", "b_excess_se", "b_predicted",
        "V2_step", "V2_step_se", "V2_gradient", "V2_excess", "V2_excess_se", "V2_ito", "V2_predicted")}
    err2 = pop["err2"].view(L, K)
    for li, lr in enumerate(lrs):
        for ki, bs in enumerate(bss):
            g = li * K + ki
            ob = one_step_moments(b[li, ki], bc[li, ki], pop["G_b"][g], lr,
                                  grad_var=pop["var_b"][g] / bs, mean_grad_se=pop["se_G_b"][g])
            ov = one_step_moments(V[li, ki], Vc[li, ki], pop["G_V"][g], lr,
                                  grad_var=pop["var_V"][g] / bs, mean_grad_se=pop["se_G_V"][g])
            pb, pv = predicted_drift(V[li, ki], W[li, ki], b[li, ki], err2[li, ki], lr, bs)
            vals = {
                "b_step": ob.dq, "b_step_se": ob.dq_se, "b_gradient": ob.gradient,
                "b_excess": ob.excess, "b_excess_se": ob.excess_se, "b_predicted": pb.numpy(),
                "V2_step": ov.dq2, "V2_step_se": ov.dq2_se, "V2_gradient": ov.gradient_q2,
                "V2_excess": ov.excess_q2, "V2_excess_se": ov.excess_q2_se, "V2_ito": ov.ito,
                "V2_predicted": pv.numpy(),
            }
            for k, v in vals.items():
                out[k][li, ki] = v
    dims = ("lr", "batch_size", "unit")
    ds = xr.Dataset({k: (dims, v) for k, v in out.items()},
                    coords={"lr": lrs, "batch_size": bss, "unit": np.arange(N)})
    ds["err2"] = (("lr", "batch_size"), err2.numpy().copy())
    ds.attrs.update(clones=R, pop_size=pop_size, labels=setup.labels, loss=setup.loss)
    return ds


# --------------------------------------------------------------------------
# Whole trajectories
# --------------------------------------------------------------------------


def trajectory_drift(setup: DriftSetup, lrs, batch_sizes, *, steps: int = 800, blocks: int = 16,
                     per_block: int = 128, record_every: int = 20, seed: int = 1) -> xr.Dataset:
    """SGD ensembles from one shared initialization beside their mean-gradient references.

    Every (η, |B|) grid point runs ``blocks × per_block`` SGD replicas; all
    grid points see the same minibatch draws (common random numbers, which
    sharpens the η and |B| comparisons). Each block also carries a reference
    replica that steps with the mean gradient over the block's pooled
    minibatches (``per_block·|B|`` samples).

    Args:
        setup: model and task (Gaussian inputs).
        lrs, batch_sizes: the grid (L, K).
        steps: SGD steps T.
        blocks: independent blocks (standard errors and bootstrap are over blocks; ≥ 2).
        per_block: SGD replicas per block.
        record_every: record every k steps (and at T).
        seed: seed of the minibatch draws.

    Returns:
        Dataset with dims (lr, batch_size, block, step, unit):
        ``b, V, V2`` (block means over replicas), ``b_ref, V_ref, V2_ref`` (reference),
        ``b_predicted, V2_predicted`` (the paper's drift per step, block mean),
        and (lr, batch_size, block, step): ``err2`` (E[(∂ℓ/∂f)²] on the fresh
        minibatch of that step), ``activation_rate``.
    """
    lrs, bss = _check_grid(lrs, batch_sizes)
    if blocks < 2 or per_block < 1 or steps < 1 or record_every < 1:
        raise UsageError("need blocks >= 2, per_block >= 1, steps >= 1, record_every >= 1")
    cfg = setup.config()
    random_labels = setup.labels == "random"
    W0, b0, V0 = _initial_state(setup)
    N, M = W0.shape
    L, K, Q, P = len(lrs), len(bss), blocks, per_block
    R, Bmax, G = Q * P, max(bss), len(lrs) * len(bss)
    W = W0.expand(G * R, N, M).clone()
    b = b0.expand(G * R, N).clone()
    V = V0.expand(G * R, N).clone()
    Wr, br, Vr = W0.expand(G * Q, N, M).clone(), b0.expand(G * Q, N).clone(), V0.expand(G * Q, N).clone()
    wl = _grid_wl(lrs, bss, R, Bmax)
    # Reference: block q's pooled samples, weight η/(P·|B|) on each replica's first |B|.
    wl_ref = _grid_wl(lrs, bss, Q, Bmax).view(G * Q, 1, Bmax).expand(G * Q, P, Bmax) / P
    wl_ref = wl_ref.reshape(G * Q, P * Bmax).contiguous()
    lr_t = torch.tensor(lrs, dtype=_F64).view(L, 1, 1).expand(L, K, R).reshape(-1, 1)
    bs_t = torch.tensor(bss, dtype=_F64).view(1, K, 1).expand(L, K, R).reshape(-1, 1)
    valid = (wl > 0).to(_F64)
    stream = SampleStream(cfg, setup.seed, 0, dtype=_F64)
    gen = generator(setup.seed, seed, DATA)

    rec_steps = np.unique(np.append(np.arange(0, steps + 1, record_every), steps))
    shape = (len(rec_steps), L, K, Q)
    buf = {k: np.full((*shape, N), np.nan)
           for k in ("b", "V", "V2", "b_ref", "V_ref", "V2_ref", "b_predicted", "V2_predicted")}
    buf.update({k: np.full(shape, np.nan) for k in ("err2", "activation_rate")})

    def block_mean(t):  # (G·R, ...) -> (L, K, Q, ...)
        return t.reshape(L, K, Q, P, *t.shape[1:]).mean(3).numpy()

    def record(i, x, y):
        z = torch.baddbmm(b.unsqueeze(1), x, W.mT)
        f = torch.bmm(z.clamp_min(0.0), V.unsqueeze(-1)).squeeze(-1)
        _, e2 = _residual(f, y, setup.loss, random_labels)
        err2 = (e2 * valid).sum(-1) / valid.sum(-1)  # (G·R,)
        err2_blk = torch.from_numpy(block_mean(err2))  # (L, K, Q)
        e2_rep = err2_blk.unsqueeze(3).expand(L, K, Q, P).reshape(-1, 1)
        pb, pv = predicted_drift(V, W, b, e2_rep, lr_t, bs_t)
        buf["err2"][i] = err2_blk.numpy()
        buf["activation_rate"][i] = block_mean(torch.special.ndtr(b / W.norm(dim=-1)).mean(-1))
        buf["b"][i], buf["V"][i], buf["V2"][i] = block_mean(b), block_mean(V), block_mean(V * V)
        buf["b_predicted"][i], buf["V2_predicted"][i] = block_mean(pb), block_mean(pv)
        buf["b_ref"][i] = br.view(L, K, Q, N).numpy()
        buf["V_ref"][i] = Vr.view(L, K, Q, N).numpy()
        buf["V2_ref"][i] = (Vr * Vr).view(L, K, Q, N).numpy()

    ri = 0
    for step in range(steps + 1):
        x, y = stream.sample(R * Bmax, gen)
        x, y = x.view(1, R, Bmax, M), y.view(1, R, Bmax)
        xg = x.expand(G, R, Bmax, M).reshape(G * R, Bmax, M)
        yg = y.expand(G, R, Bmax).reshape(G * R, Bmax)
        if step == rec_steps[ri]:
            record(ri, xg, yg)
            ri += 1
        if step == steps:
            break
        sgd_step(W, b, V, xg, yg, wl, setup.loss)
        sgd_step(Wr, br, Vr, xg.view(G * Q, P * Bmax, M), yg.view(G * Q, P * Bmax), wl_ref, setup.loss)
    if not (torch.isfinite(W).all() and torch.isfinite(V).all()):
        raise UsageError("SGD diverged in the drift experiment; use smaller learning rates")

    d5 = ("step", "lr", "batch_size", "block", "unit")
    ds = xr.Dataset(
        {k: (d5 if v.ndim == 5 else d5[:-1], v) for k, v in buf.items()},
        coords={"step": rec_steps, "lr": lrs, "batch_size": bss, "block": np.arange(Q), "unit": np.arange(N)},
    ).transpose("lr", "batch_size", "block", "step", ...)
    ds.attrs.update(per_block=P, blocks=Q, labels=setup.labels, loss=setup.loss,
                    setup=json.dumps(setup.__dict__))
    return ds


def window_drift(ds: xr.Dataset, var: str, window: tuple[float, float]) -> xr.DataArray:
    """Per-step change of ``var`` over a window of steps, by linear interpolation.

    Args:
        ds: a :func:`trajectory_drift` dataset.
        var: a data variable with a ``step`` dim (e.g. ``"b"``, or a derived excess).
        window: ``(t1, t2)`` steps, t1 < t2.

    Returns:
        ``(var(t2) − var(t1)) / (t2 − t1)``, the step dim removed.
    """
    t1, t2 = window
    if not t2 > t1:
        raise UsageError(f"window must have t1 < t2, got {window}")
    da = ds[var] if isinstance(var, str) else var
    v = da.interp(step=[t1, t2])
    return (v.isel(step=1, drop=True) - v.isel(step=0, drop=True)) / (t2 - t1)


def excess_parts(traj: xr.Dataset) -> xr.Dataset:
    """The noise-induced excess of the ensemble means over the reference, split into labelled pieces.

    Per (lr, batch_size, block, step, unit), with P replicas per block:

    * ``b``: ``E[b] − b_ref`` (a pure shift of the mean);
    * ``V2``: ``E[V²] − V_ref²`` (total), the sum of
    * ``V2_var``: ``var(V)`` over the block's replicas (unbiased): the accumulated
      Itô/diffusion piece, ≥ 0 by construction, and
    * ``V2_shift``: ``V2 − V2_var``, an unbiased estimate of ``E[V]² − V_ref²``
      ≈ ``2|V| · (shift of |V|)``: the piece comparable with the paper's drift of V².
    """
    P = traj.attrs.get("per_block", 2)
    var = (traj["V2"] - traj["V"] ** 2) * (P / (P - 1) if P > 1 else np.nan)
    total = traj["V2"] - traj["V2_ref"]
    return xr.Dataset({"b": traj["b"] - traj["b_ref"], "V2": total, "V2_var": var, "V2_shift": total - var})


def _window_mean(da: xr.DataArray, window) -> xr.DataArray:
    """Time average over the window (trapezoid on the recorded steps, interpolated ends)."""
    t1, t2 = window
    steps = da["step"].values
    grid = np.unique(np.concatenate([[t1, t2], steps[(steps > t1) & (steps < t2)]]))
    v = da.interp(step=grid)
    return v.integrate("step") / (t2 - t1)


# --------------------------------------------------------------------------
# Scaling fit and summary
# --------------------------------------------------------------------------


@dataclass
class ScalingFit:
    """``|d| = c · η^α · |B|^(−β)`` fitted by least squares on logs.

    Attributes:
        alpha, beta: point estimates. alpha_ci, beta_ci: percentile intervals.
        sign: common sign of the values (0 if mixed: no fit).
        valid_fraction: share of bootstrap draws with one common sign (used for the CI).
    """

    alpha: float
    beta: float
    alpha_ci: tuple[float, float]
    beta_ci: tuple[float, float]
    sign: int
    valid_fraction: float
    level: float = 0.95
    n_boot: int = 0

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _loglog(lr, bs, values):
    A = np.column_stack([np.ones_like(lr), np.log(lr), -np.log(bs)])
    coef, *_ = np.linalg.lstsq(A, np.log(np.abs(values)), rcond=None)
    return coef[1], coef[2]


def fit_scaling(lr, bs, values, draws=None, level: float = 0.95) -> ScalingFit:
    """Fit ``|value| ∝ η^α |B|^(−β)`` over grid points.

    Args:
        lr, bs: ``(n,)`` η and |B| of each point (at least 3 points, 2 distinct
            values of each for both exponents; otherwise the missing one is NaN).
        values: ``(n,)`` estimates; they must share one sign.
        draws: optional ``(n_boot, n)`` bootstrap replicates of ``values``
            (from resampling blocks): the interval is the percentile interval of
            the refitted exponents over draws that keep one common sign.
        level: interval level.

    Returns:
        :class:`ScalingFit` (exponents NaN when the signs are mixed).
    """
    lr, bs, values = (np.asarray(v, dtype=float) for v in (lr, bs, values))
    nan = float("nan")
    signs = np.sign(values)
    if len(values) < 3 or not np.all(signs == signs[0]) or signs[0] == 0:
        return ScalingFit(nan, nan, (nan, nan), (nan, nan), 0, 0.0, level, 0)
    vary_lr, vary_bs = np.unique(lr).size > 1, np.unique(bs).size > 1
    lr_fit = lr if vary_lr else np.ones_like(lr)
    bs_fit = bs if vary_bs else np.ones_like(bs)
    alpha, beta = _loglog(lr_fit, bs_fit, values)
    a_ci = b_ci = (nan, nan)
    valid = 0.0
    n_boot = 0 if draws is None else len(draws)
    if n_boot:
        draws = np.asarray(draws, dtype=float)
        ok = np.all(np.sign(draws) == signs[0], axis=1)
        valid = float(ok.mean())
        if ok.sum() >= 10:
            ab = np.array([_loglog(lr_fit, bs_fit, d) for d in draws[ok]])
            q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
            a_ci = tuple(float(v) for v in np.percentile(ab[:, 0], q))
            b_ci = tuple(float(v) for v in np.percentile(ab[:, 1], q))
    if not vary_lr:
        alpha, a_ci = nan, (nan, nan)
    if not vary_bs:
        beta, b_ci = nan, (nan, nan)
    return ScalingFit(float(alpha), float(beta), a_ci, b_ci, int(signs[0]), valid, level, n_boot)


@dataclass
class DriftSummary:
    """Tables of the drift experiment (see :func:`drift_summary`)."""

    one_step: list[dict] = field(default_factory=list)
    windows: list[dict] = field(default_factory=list)
    fits: dict = field(default_factory=dict)
    err2: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"one_step": self.one_step, "windows": self.windows, "fits": self.fits,
                "err2": self.err2, "notes": self.notes}


def _ratio(a, b):
    return float(a / b) if b != 0 and np.isfinite(a) and np.isfinite(b) else float("nan")


def drift_summary(one: xr.Dataset, traj: xr.Dataset, *, windows=None, n_boot: int = 500,
                  seed: int = 0) -> DriftSummary:
    """Measured vs predicted drift: one-step pieces, window drifts, exponents, err2.

    Args:
        one: :func:`one_step_drift` result (at the shared initialization).
        traj: :func:`trajectory_drift` result.
        windows: ``{"early": (t1, t2), "late": (t1, t2)}`` in steps; default the
            first and last quarter of the run.
        n_boot: bootstrap resamples over blocks for the exponent intervals.
        seed: bootstrap seed.

    Returns:
        :class:`DriftSummary`; every drift is per SGD step, averaged over units.
    """
    T = float(traj["step"].values[-1])
    windows = windows or {"early": (0.0, T / 4), "late": (3 * T / 4, T)}
    rng = np.random.default_rng(seed)
    Q = traj.sizes["block"]
    boot_idx = rng.integers(0, Q, size=(n_boot, Q))
    s = DriftSummary()
    lrs, bss = traj["lr"].values, traj["batch_size"].values
    grid = [(float(a), int(c)) for a in lrs for c in bss]
    glr = np.array([g[0] for g in grid])
    gbs = np.array([g[1] for g in grid])

    # One step at the initialization.
    um = one.mean("unit")
    N = one.sizes["unit"]
    for lr, bs in grid:
        r = um.sel(lr=lr, batch_size=bs)
        se = lambda k: float(np.sqrt((one[k].sel(lr=lr, batch_size=bs) ** 2).sum()) / N)  # noqa: E731
        s.one_step.append({
            "lr": lr, "batch_size": bs, "eta2_over_B": lr**2 / bs,
            "b_step": float(r["b_step"]), "b_gradient": float(r["b_gradient"]),
            "b_excess": float(r["b_excess"]), "b_excess_se": se("b_excess_se"),
            "b_predicted": float(r["b_predicted"]),
            "V2_step": float(r["V2_step"]), "V2_gradient": float(r["V2_gradient"]),
            "V2_excess": float(r["V2_excess"]), "V2_excess_se": se("V2_excess_se"),
            "V2_ito": float(r["V2_ito"]), "V2_predicted": float(r["V2_predicted"]),
            "V2_excess_over_ito": _ratio(float(r["V2_excess"]), float(r["V2_ito"])),
            "V2_excess_over_predicted": _ratio(float(r["V2_excess"]), float(r["V2_predicted"])),
        })
    v2 = np.array([row["V2_excess"] for row in s.one_step])
    v2se = np.array([row["V2_excess_se"] for row in s.one_step])
    # Clones of different grid points use independent minibatches: parametric draws.
    draws = v2 + v2se * rng.standard_normal((n_boot, len(v2)))
    s.fits["one_step_V2_excess"] = fit_scaling(glr, gbs, v2, draws).to_dict()

    # Whole trajectories.
    parts = excess_parts(traj)
    for q in ("b", "V2", "V2_var", "V2_shift"):
        ex = parts[q].mean("unit")  # (lr, bs, block, step)
        pred = traj["b_predicted" if q == "b" else "V2_predicted"].mean("unit")
        for name, win in windows.items():
            d = window_drift(traj, ex, win)  # (lr, bs, block)
            p = _window_mean(pred, win)
            dm, pm = d.mean("block"), p.mean("block")
            dse = d.std("block", ddof=1) / math.sqrt(Q)
            per_unit = window_drift(traj, parts[q].mean("block"), win)
            for lr, bs in grid:
                m, e = float(dm.sel(lr=lr, batch_size=bs)), float(dse.sel(lr=lr, batch_size=bs))
                # The variance piece is diffusion, not a drift: the paper predicts no drift for it.
                pv = float(pm.sel(lr=lr, batch_size=bs)) if q != "V2_var" else float("nan")
                s.windows.append({
                    "quantity": q, "window": name, "steps": list(win), "lr": lr, "batch_size": bs,
                    "measured": m, "measured_se": e, "z": m / e if e > 0 else float("nan"),
                    "predicted": pv, "measured_over_predicted": _ratio(m, pv),
                    "units_negative": float((per_unit.sel(lr=lr, batch_size=bs) < 0).mean()),
                })
            vals = np.array([float(dm.sel(lr=lr, batch_size=bs)) for lr, bs in grid])
            dv = d.values.reshape(len(grid), Q)  # (grid, block), grid order lr-major
            draws = dv[:, boot_idx].mean(-1).T  # (n_boot, grid)
            s.fits[f"{q}_{name}"] = fit_scaling(glr, gbs, vals, draws).to_dict()
            pvals = np.array([float(pm.sel(lr=lr, batch_size=bs)) for lr, bs in grid])
            if q in ("b", "V2_shift"):
                # The prediction is a deterministic function of the recorded states: no interval.
                s.fits[f"{q}_{name}_predicted"] = fit_scaling(glr, gbs, pvals).to_dict()

    e2 = traj["err2"].mean("block")
    for name, win in windows.items():
        w = _window_mean(e2, win)
        s.err2[name] = {f"lr={lr:g},B={bs}": float(w.sel(lr=lr, batch_size=bs)) for lr, bs in grid}
    s.err2["initial"] = float(e2.isel(step=0).mean())
    s.notes = _unfittable(lrs, bss) + [
        "all drifts are per SGD step, averaged over hidden units; measured = slope of "
        "E[q]_SGD - q_ref (mean-gradient reference on the same samples) over the window",
        "predicted = paper's J_t/rho projected on b and V^2 (psi as printed, with its factor 1/2; "
        "Eq. 10 without it would double the prediction), err2 measured",
        "one step: b_excess should be 0 (unbiased noise), V2_excess should equal the Ito term "
        "eta^2 var/|B| (> 0)",
        "trajectories: V2 = V2_var (replica variance of V: accumulated Ito/diffusion piece) + V2_shift "
        "(E[V]^2 - V_ref^2: the mean-shift piece, the one comparable with the paper's drift of V^2)",
    ]
    return s


def _unfittable(lrs, bss) -> list[str]:
    """Notes on the exponents a grid cannot determine (an exponent needs two values of its parameter)."""
    notes = []
    if len(set(map(float, lrs))) < 2:
        notes.append("alpha (the eta exponent) cannot be fitted from one value of eta: give at least two --lr values")
    if len(set(map(int, bss))) < 2:
        notes.append("beta (the |B| exponent) cannot be fitted from one value of |B|: give at least two "
                     "--batch-size values")
    if len(lrs) * len(bss) < 3:
        notes.append("no exponent is fitted from fewer than 3 (eta, |B|) points")
    return notes


def _exponent_cells(f: dict, key: str, missing: str | None) -> str:
    """Table cells ``value | CI`` of one fitted exponent, or why there is none."""
    v, ci = f[key], f[key + "_ci"]
    if missing or not math.isfinite(v):
        return f"n/a ({missing or 'the values differ in sign'}) | "
    return f"{v:.2f} | [{ci[0]:.2f}, {ci[1]:.2f}]"


def _fmt(v, se=None):
    if se is None:
        return f"{v:+.3g}"
    return f"{v:+.3g} ± {se:.2g}"


def drift_table(s: DriftSummary) -> str:
    """Markdown tables of a :class:`DriftSummary`."""
    lines = ["### One SGD step from the shared initialization (per step, mean over units)", "",
             "| η | \\|B\\| | E[Δb] | −η∂_bL | excess b | paper b | E[ΔV²] | gradient part | excess V² "
             "| Itô η²var/\\|B\\| | excess/Itô | paper V² | excess/paper |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in s.one_step:
        lines.append(
            f"| {r['lr']:g} | {r['batch_size']} | {_fmt(r['b_step'])} | {_fmt(r['b_gradient'])} | "
            f"{_fmt(r['b_excess'], r['b_excess_se'])} | {_fmt(r['b_predicted'])} | {_fmt(r['V2_step'])} | "
            f"{_fmt(r['V2_gradient'])} | {_fmt(r['V2_excess'], r['V2_excess_se'])} | {_fmt(r['V2_ito'])} | "
            f"{r['V2_excess_over_ito']:.3f} | {_fmt(r['V2_predicted'])} | {r['V2_excess_over_predicted']:+.3g} |")
    lines += ["", "### Whole trajectories: noise-induced drift of the ensemble mean per step "
              "(E[q]_SGD − q_ref; ± s.e. over blocks)", "",
              "| q | window (steps) | η | \\|B\\| | measured | z | units < 0 | paper | measured/paper | err2 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in s.windows:
        e2 = s.err2[r["window"]][f"lr={r['lr']:g},B={r['batch_size']}"]
        lines.append(
            f"| {r['quantity']} | {r['window']} {r['steps'][0]:g}–{r['steps'][1]:g} | {r['lr']:g} | "
            f"{r['batch_size']} | {_fmt(r['measured'], r['measured_se'])} | {r['z']:+.1f} | "
            f"{r['units_negative']:.0%} | "
            f"{_fmt(r['predicted'])} | {r['measured_over_predicted']:+.3g} | {e2:.4f} |")
    lines += ["", "### Scaling |drift| ∝ η^α |B|^(−β) (paper: α = 2, β = 1)", "",
              "| quantity | α | 95% CI | β | 95% CI | sign | bootstrap draws with one sign |",
              "|---|---|---|---|---|---|---|"]
    few = "fewer than 3 grid points" if len(s.one_step) < 3 else None
    missing_alpha = "one η: cannot be fitted" if len({r["lr"] for r in s.one_step}) < 2 else few
    missing_beta = "one \\|B\\|: cannot be fitted" if len({r["batch_size"] for r in s.one_step}) < 2 else few
    for k, f in s.fits.items():
        lines.append(
            f"| {k} | {_exponent_cells(f, 'alpha', missing_alpha)} | {_exponent_cells(f, 'beta', missing_beta)} | "
            f"{f['sign']:+d} | {f['valid_fraction']:.2f} |")
    lines += ["", f"err2 = E[(p−y)²]: initial {s.err2['initial']:.4f}; " + "; ".join(
        f"{w} mean over grid {np.mean(list(v.values())):.4f}" for w, v in s.err2.items() if w != "initial"), ""]
    lines += [f"- {n}" for n in s.notes]
    return "\n".join(lines) + "\n"


def drift_experiment(setup: DriftSetup, lrs, batch_sizes, *, steps: int = 800, blocks: int = 16,
                     per_block: int = 128, clones: int = 4096, record_every: int = 20,
                     seed: int = 1, n_boot: int = 500):
    """Both measurements and their summary for one grid.

    The one-step clones start from the same shared initialization as the
    trajectories (the paper's "early phase").

    Returns:
        ``(one, traj, summary)``: :func:`one_step_drift` and
        :func:`trajectory_drift` datasets and a :class:`DriftSummary`.
    """
    lrs, bss = _check_grid(lrs, batch_sizes)
    W0, b0, V0 = _initial_state(setup)
    L, K = len(lrs), len(bss)
    states = (W0.expand(L, K, *W0.shape), b0.expand(L, K, *b0.shape), V0.expand(L, K, *V0.shape))
    one = one_step_drift(setup, states, lrs, bss, clones=clones, seed=seed + 1)
    traj = trajectory_drift(setup, lrs, bss, steps=steps, blocks=blocks, per_block=per_block,
                            record_every=record_every, seed=seed)
    return one, traj, drift_summary(one, traj, n_boot=n_boot, seed=seed)
