"""Drift runs of the two-layer model: clones and ensembles beside mean-gradient references (Sec. 5, Eq. 23–28).

This module trains (one step of many clones; whole SGD trajectories); the
estimators and the summary that turn its datasets into numbers are in
:mod:`thermosgd.analysis.drift`.

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
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from thermosgd.config import SweepConfig, from_dict
from thermosgd.errors import UsageError
from thermosgd.instruments import _moments as moments
from thermosgd.twolayer import theory
from thermosgd.twolayer.data import DATA, INIT, PROBE, SampleStream, generator
from thermosgd.twolayer.losses import dloss_df
from thermosgd.twolayer.params import init_params
from thermosgd.twolayer.steps import sgd_step

__all__ = [
    "DriftSetup",
    "OneStep",
    "one_step_moments",
    "population_moments",
    "predicted_drift",
    "one_step_drift",
    "trajectory_drift",
    "drift_runs",
    "initial_state",
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
        return from_dict(
            {
                "model": {
                    "inputs": self.inputs,
                    "hidden": self.hidden,
                    "init": self.init,
                    "init_scale": self.init_scale,
                },
                "data": {"inputs": "gaussian", "labels": self.labels},
                "train": {"loss": self.loss, "dtype": "float64", "seed": self.seed},
            }
        )


def initial_state(setup: DriftSetup):
    """The shared initialization ``(W (N, M), b (N,), V (N,))`` of every drift run, float64."""
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
        dq=n(dq_m),
        dq_se=n(dq_se),
        gradient=n(grad),
        excess=n(dq_m - grad),
        excess_se=n(torch.hypot(dq_se, lr * gse)),
        dq2=n(d2_m),
        dq2_se=n(d2_se),
        gradient_q2=n(grad_q2),
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
    # The label-averaged variances are _moments' ÷|B| ones over 2n samples: each x with the two
    # errors e ± sqrt(e2 − e²) (y = 0 and y = 1 for random labels, whose mean square is e2).
    spread = (e2 - e * e).clamp_min(0.0).sqrt()
    e_pm = torch.cat([e - spread, e + spread], 1).unsqueeze(-1)  # (S, 2n, 1)
    a_pm, s_pm = torch.cat([a, a], 1), torch.cat([s, s], 1)
    var_V = moments.normalize(moments.linear_weight_deviations(a_pm, e_pm, per_entry=True), 2 * n, "biased")
    var_b = moments.normalize(moments.bias_deviations(e_pm * s_pm * V.unsqueeze(1), per_entry=True), 2 * n, "biased")
    return {
        "G_b": G_b,
        "G_V": G_V,
        "var_b": var_b,
        "var_V": var_V[:, 0],
        "se_G_V": ga.std(1) / math.sqrt(n),
        "se_G_b": V.abs() * gs.std(1) / math.sqrt(n),
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


_ONE_STEP_VARS = (
    "b_step",
    "b_step_se",
    "b_gradient",
    "b_excess",
    "b_excess_se",
    "b_predicted",
    "V2_step",
    "V2_step_se",
    "V2_gradient",
    "V2_excess",
    "V2_excess_se",
    "V2_ito",
    "V2_predicted",
)


def one_step_drift(
    setup: DriftSetup, states, lrs, batch_sizes, *, clones: int = 4096, pop_size: int = 1 << 14, seed: int = 1
) -> xr.Dataset:
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
        raise UsageError(f"clones must be >= 2, got {clones}", param="clones")
    cfg = setup.config()
    W, b, V = (torch.as_tensor(t, dtype=_F64) for t in states)
    L, K, N, M = W.shape
    stream = SampleStream(cfg, setup.seed, 0, dtype=_F64)
    px, py = stream.sample(pop_size, generator(setup.seed, seed, PROBE))
    flat = (W.reshape(L * K, N, M), b.reshape(L * K, N), V.reshape(L * K, N))
    pop = population_moments(*flat, px, py, setup.loss, setup.labels == "random")
    bc, Vc = _clone_step(setup, stream, (W, b, V), lrs, bss, clones, generator(setup.seed, seed, DATA))
    out = {k: np.full((L, K, N), np.nan) for k in _ONE_STEP_VARS}
    err2 = pop["err2"].view(L, K)
    for li, lr in enumerate(lrs):
        for ki, bs in enumerate(bss):
            vals = _one_step_values(pop, li * K + ki, (W[li, ki], b[li, ki], V[li, ki]), bc[li, ki], Vc[li, ki], lr, bs)
            for k, v in vals.items():
                out[k][li, ki] = v
    dims = ("lr", "batch_size", "unit")
    ds = xr.Dataset({k: (dims, v) for k, v in out.items()}, coords={"lr": lrs, "batch_size": bss, "unit": np.arange(N)})
    ds["err2"] = (("lr", "batch_size"), err2.numpy().copy())
    ds.attrs.update(clones=clones, pop_size=pop_size, labels=setup.labels, loss=setup.loss)
    return ds


def _clone_step(setup: DriftSetup, stream: SampleStream, states, lrs, bss, clones: int, gen):
    """``clones`` copies of each grid point's state after one SGD step: ``b``, ``V`` (L, K, R, N)."""
    W, b, V = states
    L, K, N, M = W.shape
    R, Bmax = clones, max(bss)
    Wc = W.reshape(L * K, 1, N, M).expand(L * K, R, N, M).reshape(-1, N, M).clone()
    bc = b.reshape(L * K, 1, N).expand(L * K, R, N).reshape(-1, N).clone()
    Vc = V.reshape(L * K, 1, N).expand(L * K, R, N).reshape(-1, N).clone()
    x, y = stream.sample(L * K * R * Bmax, gen)
    sgd_step(Wc, bc, Vc, x.view(-1, Bmax, M), y.view(-1, Bmax), _grid_wl(lrs, bss, R, Bmax), setup.loss)
    return bc.view(L, K, R, N), Vc.view(L, K, R, N)


def _one_step_values(pop: dict, g: int, state, b1, V1, lr: float, bs: int) -> dict[str, np.ndarray]:
    """One grid point's variables of :func:`one_step_drift`, each (N,): state ``(W, b, V)`` before the
    step, ``b1``, ``V1`` (R, N) the clones after it, ``pop`` the population moments (point ``g``)."""
    W, b, V = state
    ob = one_step_moments(b, b1, pop["G_b"][g], lr, grad_var=pop["var_b"][g] / bs, mean_grad_se=pop["se_G_b"][g])
    ov = one_step_moments(V, V1, pop["G_V"][g], lr, grad_var=pop["var_V"][g] / bs, mean_grad_se=pop["se_G_V"][g])
    pb, pv = predicted_drift(V, W, b, pop["err2"][g], lr, bs)
    return {
        "b_step": ob.dq,
        "b_step_se": ob.dq_se,
        "b_gradient": ob.gradient,
        "b_excess": ob.excess,
        "b_excess_se": ob.excess_se,
        "b_predicted": pb.numpy(),
        "V2_step": ov.dq2,
        "V2_step_se": ov.dq2_se,
        "V2_gradient": ov.gradient_q2,
        "V2_excess": ov.excess_q2,
        "V2_excess_se": ov.excess_q2_se,
        "V2_ito": ov.ito,
        "V2_predicted": pv.numpy(),
    }


# --------------------------------------------------------------------------
# Whole trajectories
# --------------------------------------------------------------------------

_TRAJ_UNIT_VARS = ("b", "V", "V2", "b_ref", "V_ref", "V2_ref", "b_predicted", "V2_predicted")
_TRAJ_VARS = ("err2", "activation_rate")


def trajectory_drift(
    setup: DriftSetup,
    lrs,
    batch_sizes,
    *,
    steps: int = 800,
    blocks: int = 16,
    per_block: int = 128,
    record_every: int = 20,
    seed: int = 1,
) -> xr.Dataset:
    """SGD ensembles from one shared initialization beside their mean-gradient references.

    Every (η, |B|) grid point runs ``blocks × per_block`` SGD replicas; all
    grid points see the same minibatch draws (common random numbers, which
    sharpens the η and |B| comparisons). Each block also carries a reference
    replica that steps with the mean gradient over the block's pooled
    minibatches (``per_block·|B|`` samples). Trained by the engine's one loop
    (:func:`thermosgd.twolayer.engine._integrate`) with :class:`_DriftBackend`.

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
    from thermosgd.twolayer.engine import _integrate

    lrs, bss = _check_grid(lrs, batch_sizes)
    if blocks < 2 or per_block < 1 or steps < 1 or record_every < 1:
        raise UsageError("need blocks >= 2, per_block >= 1, steps >= 1, record_every >= 1")
    rec_steps = np.unique(np.append(np.arange(0, steps + 1, record_every), steps))
    backend = _DriftBackend(setup, lrs, bss, blocks, per_block, seed)
    N = backend.W.shape[1]
    shape = (len(rec_steps), len(lrs), len(bss), blocks)
    buf = _Buffers({k: np.full((*shape, N), np.nan) for k in _TRAJ_UNIT_VARS})
    buf.arrays.update({k: np.full(shape, np.nan) for k in _TRAJ_VARS})
    due = set(rec_steps.tolist())
    _integrate(backend, backend, backend.plan, buf, _NoGuard(), _NoBar(), due.__contains__, lambda s: True, steps, 1)
    if not (torch.isfinite(backend.W).all() and torch.isfinite(backend.V).all()):
        raise UsageError("SGD diverged in the drift experiment; use smaller learning rates", param="lrs")
    d5 = ("step", "lr", "batch_size", "block", "unit")
    coords = {"step": rec_steps, "lr": lrs, "batch_size": bss, "block": np.arange(blocks), "unit": np.arange(N)}
    ds = xr.Dataset({k: (d5 if v.ndim == 5 else d5[:-1], v) for k, v in buf.arrays.items()}, coords=coords)
    ds = ds.transpose("lr", "batch_size", "block", "step", ...)
    ds.attrs.update(
        per_block=per_block, blocks=blocks, labels=setup.labels, loss=setup.loss, setup=json.dumps(setup.__dict__)
    )
    return ds


class _Buffers:
    """The engine loop's record sink for :func:`trajectory_drift`: record i's values into numpy arrays."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def put(self, i: int, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            self.arrays[k][i] = v.numpy()


class _NoGuard:
    """Drift runs freeze no replica; divergence is refused once, at the end."""

    def update(self, step: int, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.zeros(0, dtype=torch.bool)


@dataclass(frozen=True)
class _Plan:
    """The loop's :class:`~thermosgd.twolayer.engine.Plan` for drift runs: plain SGD, no normal draws."""

    batch: int
    chunk: int
    draws: None = None


class _NoBar:
    """Drift runs show no progress bar."""

    def update(self, n: int) -> None:
        pass


class _DriftBackend:
    """The SGD replicas and mean-gradient references of :func:`trajectory_drift`, as an engine backend.

    Also the loop's sample source and plan: step s uses the s-th draw of ``R·|B|max`` samples,
    shared by every grid point, and a record at step s measures on that same minibatch (the one
    step s then trains on). Draw 0 is taken here; the loop's chunks bring draws 1, 2, ... in order.
    """

    by_stream = False

    def __init__(self, setup: DriftSetup, lrs: list[float], bss: list[int], blocks: int, per_block: int, seed: int):
        self.loss, self.random_labels = setup.loss, setup.labels == "random"
        W0, b0, V0 = initial_state(setup)
        N, M = W0.shape
        self.grid = (len(lrs), len(bss), blocks, per_block)
        L, K, Q, P = self.grid
        R, G = Q * P, L * K
        self.batch, self.R, self.M = max(bss), R, M
        # Steps per chunk bound a chunk's memory; results do not depend on it (one draw per step, in order).
        self.plan = _Plan(self.batch, max(1, min(16, (1 << 22) // (R * self.batch * (M + 1)))))
        self.W, self.b, self.V = (
            W0.expand(G * R, N, M).clone(),
            b0.expand(G * R, N).clone(),
            V0.expand(G * R, N).clone(),
        )
        self.Wr, self.br, self.Vr = (t.expand(G * Q, *t.shape).clone() for t in (W0, b0, V0))
        self.wl = _grid_wl(lrs, bss, R, self.batch)
        # Reference: block q's pooled samples, weight η/(P·|B|) on each replica's first |B|.
        wl_ref = _grid_wl(lrs, bss, Q, self.batch).view(G * Q, 1, self.batch).expand(G * Q, P, self.batch) / P
        self.wl_ref = wl_ref.reshape(G * Q, P * self.batch).contiguous()
        self.lr_t = torch.tensor(lrs, dtype=_F64).view(L, 1, 1).expand(L, K, R).reshape(-1, 1)
        self.bs_t = torch.tensor(bss, dtype=_F64).view(1, K, 1).expand(L, K, R).reshape(-1, 1)
        self.valid = (self.wl > 0).to(_F64)
        self.stream = SampleStream(setup.config(), setup.seed, 0, dtype=_F64)
        self.gen = generator(setup.seed, seed, DATA)
        self._use(*self._draw())
        self.pending: tuple = ()

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stream.sample(self.R * self.batch, self.gen)

    def _use(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Make one draw the current minibatch of every grid point: (G·R, |B|max, M), (G·R, |B|max)."""
        G = self.grid[0] * self.grid[1]
        self.x = x.view(1, self.R, self.batch, self.M).expand(G, -1, -1, -1).reshape(-1, self.batch, self.M)
        self.y = y.view(1, self.R, self.batch).expand(G, -1, -1).reshape(-1, self.batch)

    def chunk(self, n: int, batch: int, chunk: int, by_stream: bool = False) -> tuple:
        """The loop's :class:`~thermosgd.twolayer.engine.Samples`: the next n draws, one per step,
        as x (n, R·|B|max, M), y (n, R·|B|max) (``batch`` and ``chunk`` are the plan's own)."""
        xs, ys = zip(*(self._draw() for _ in range(n)))
        return torch.stack(xs), torch.stack(ys)

    def start_chunk(self, chunk: tuple) -> None:
        self.pending = chunk

    def advance(self, c0: int, n: int) -> None:
        G, Q, P = self.grid[0] * self.grid[1], self.grid[2], self.grid[3]
        for c in range(c0, c0 + n):
            sgd_step(self.W, self.b, self.V, self.x, self.y, self.wl, self.loss)
            xr_, yr_ = self.x.view(G * Q, P * self.batch, self.M), self.y.view(G * Q, P * self.batch)
            sgd_step(self.Wr, self.br, self.Vr, xr_, yr_, self.wl_ref, self.loss)
            self._use(self.pending[0][c], self.pending[1][c])

    def measure(self, with_probe: bool) -> dict[str, torch.Tensor]:
        """Block means (L, K, Q, ...) on the current minibatch, and the references."""
        L, K, Q, P = self.grid
        W, b, V = self.W, self.b, self.V

        def block_mean(t: torch.Tensor) -> torch.Tensor:  # (G·R, ...) -> (L, K, Q, ...)
            return t.reshape(L, K, Q, P, *t.shape[1:]).mean(3)

        z = torch.baddbmm(b.unsqueeze(1), self.x, W.mT)
        f = torch.bmm(z.clamp_min(0.0), V.unsqueeze(-1)).squeeze(-1)
        _, e2 = _residual(f, self.y, self.loss, self.random_labels)
        err2 = block_mean((e2 * self.valid).sum(-1) / self.valid.sum(-1))  # (L, K, Q)
        pb, pv = predicted_drift(V, W, b, err2.unsqueeze(3).expand(L, K, Q, P).reshape(-1, 1), self.lr_t, self.bs_t)
        ref = (L, K, Q, -1)
        return {
            "err2": err2,
            "activation_rate": block_mean(torch.special.ndtr(b / W.norm(dim=-1)).mean(-1)),
            "b": block_mean(b),
            "V": block_mean(V),
            "V2": block_mean(V * V),
            "b_predicted": block_mean(pb),
            "V2_predicted": block_mean(pv),
            "b_ref": self.br.view(ref),
            "V_ref": self.Vr.view(ref),
            "V2_ref": (self.Vr * self.Vr).view(ref),
        }

    def freeze(self, bad: torch.Tensor) -> None:
        """Nothing to freeze (:class:`_NoGuard` flags none)."""


def drift_runs(
    setup: DriftSetup,
    lrs,
    batch_sizes,
    *,
    steps: int = 800,
    blocks: int = 16,
    per_block: int = 128,
    clones: int = 4096,
    record_every: int = 20,
    seed: int = 1,
):
    """Both measurements for one grid, from the same shared initialization (the paper's "early phase").

    Returns:
        ``(one, traj)``: the :func:`one_step_drift` and :func:`trajectory_drift` datasets.
    """
    lrs, bss = _check_grid(lrs, batch_sizes)
    W0, b0, V0 = initial_state(setup)
    L, K = len(lrs), len(bss)
    states = (W0.expand(L, K, *W0.shape), b0.expand(L, K, *b0.shape), V0.expand(L, K, *V0.shape))
    one = one_step_drift(setup, states, lrs, bss, clones=clones, seed=seed + 1)
    traj = trajectory_drift(
        setup, lrs, bss, steps=steps, blocks=blocks, per_block=per_block, record_every=record_every, seed=seed
    )
    return one, traj
