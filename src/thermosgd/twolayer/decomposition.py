"""The fall decomposed: clones of shared SGD states under four noise models beside their noise-free path.

This module trains; the estimates (parts, shares, intervals) are in
:mod:`thermosgd.analysis.decomposition`.

For any unbiased noise that is independent across steps,
``E[θ_{k+1} | θ_k] = θ_k − η∇L(θ_k)``: noise moves the ensemble mean only
through the nonlinearity of the gradient field and of the observables. To
measure how much it does, and through which property of the noise:

1. **Anchor states.** S SGD trajectories (|B| samples per step, each seed its
   own data) from the drift preset's shared initialization
   (:func:`thermosgd.twolayer.drift.initial_state`); the state of every
   trajectory is kept at each anchor step.
2. **Clones.** From every anchor state, C clones per noise model ("sgd", "gd",
   "gaussian", "frozen": the engine's own step functions,
   :mod:`thermosgd.twolayer.steps`) run ``max(horizons)`` steps with fresh
   samples; the clone means of the observables are kept at each horizon k.
   "frozen" takes σ₀² at the clone's starting state (on G fresh samples, as the
   engine does at initialization), so it begins with SGD's noise and keeps it.
   It differs from SGD's noise in two ways: it does not follow θ, and it drops
   the correlations between parameter entries (a diagonal covariance). A fifth
   model, "frozen_cov" (here only), keeps the full covariance Σ̂(θ₀)/|B| of the
   starting state: ξ = (|B|(G−1))^(−1/2) Σ_i z_i (g_i(θ₀) − ḡ(θ₀)) on G samples
   fixed at the start, so "gaussian" − "frozen_cov" is the dependence on θ
   alone and "frozen_cov" − "frozen" the correlations.
3. **The noise-free path.** From the same state, full-batch gradient descent on
   a fixed sample of ``pop_size`` inputs (labels averaged exactly when they are
   random, as in :func:`thermosgd.twolayer.drift.population_moments`): the
   deterministic part of every change. Its own sampling error is common to all
   four noise models, so the differences between models do not carry it.

Observables per replica: ``bias_mean`` (mean b_i) and ``v_mean`` (mean V_i),
linear in θ, whose noise-induced part is 0 at k = 1; ``w_norm`` (‖W‖_F),
``v2`` (‖V‖² = Σ V_i²) and ``activation_rate`` (mean_i Φ(b_i/‖W_i‖), exact for
x ~ N(0, I)). Everything runs in float64.

Shapes: A anchors, S states (trajectories) per anchor, C clones per state,
H horizons, N hidden units, M inputs, G = ``gd_batch``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import xarray as xr

from thermosgd.errors import UsageError
from thermosgd.progress import bar as progress_bar
from thermosgd.threads import threads_for
from thermosgd.twolayer.data import DATA, PROBE, SampleStream, generator
from thermosgd.twolayer.drift import DriftSetup, initial_state
from thermosgd.twolayer.losses import dloss_df
from thermosgd.twolayer.noise import per_sample_variance
from thermosgd.twolayer.steps import frozen_step, gaussian_step, gd_step, sgd_step

__all__ = [
    "NOISES",
    "OBSERVABLES",
    "DecompositionSettings",
    "observables",
    "anchor_states",
    "per_sample_gradients",
    "frozen_spread",
    "decomposition_runs",
]

_F64 = torch.float64
NOISES = ("sgd", "gd", "gaussian", "frozen", "frozen_cov")
OBSERVABLES = ("bias_mean", "v_mean", "w_norm", "v2", "activation_rate")
_CLONE_STREAM = 11  # stream ids beyond the engine's (data.py's 0–7), so no draw is shared with a sweep
_STATES_PER_BLOCK = 8  # clones of this many states step together (bounds the G-sample intermediates)
_FREE_BLOCK = 32  # noise-free paths computed together


@dataclass(frozen=True)
class DecompositionSettings:
    """What is cloned, how often and for how long.

    Attributes:
        lr: η. batch_size: |B| of "sgd" and of the noise size of "gaussian" and "frozen".
        anchors: steps of the SGD trajectories whose states are cloned (0 = the shared initialization).
        states: S trajectories (independent seeds); intervals are over them.
        clones: C clones per state and noise model.
        horizons: steps k after the anchor at which the clones are measured.
        gd_batch: G, samples per step of "gd", "gaussian" and "frozen" (≥ 2).
        pop_size: inputs of the noise-free path's fixed sample.
        seed: seed of every draw after the initialization (trajectories, clones, the fixed sample).
    """

    lr: float = 0.1
    batch_size: int = 1
    anchors: tuple[int, ...] = (0, 300, 1500)
    states: int = 64
    clones: int = 32
    horizons: tuple[int, ...] = (1, 10, 100)
    gd_batch: int = 128
    pop_size: int = 4096
    seed: int = 1

    def checked(self) -> DecompositionSettings:
        """These settings, or a UsageError naming what is out of range."""
        if not (0 < self.lr < math.inf) or self.batch_size < 1:
            raise UsageError(f"need lr > 0 and batch_size >= 1, got lr = {self.lr}, batch_size = {self.batch_size}")
        if self.states < 2 or self.clones < 1 or self.gd_batch < 2 or self.pop_size < 2:
            raise UsageError("need states >= 2, clones >= 1, gd_batch >= 2 and pop_size >= 2")
        if not self.anchors or min(self.anchors) < 0 or len(set(self.anchors)) != len(self.anchors):
            raise UsageError(f"anchors must be distinct steps >= 0, got {list(self.anchors)}")
        if not self.horizons or min(self.horizons) < 1 or list(self.horizons) != sorted(set(self.horizons)):
            raise UsageError(f"horizons must be increasing steps >= 1, got {list(self.horizons)}")
        return self


def observables(W: torch.Tensor, b: torch.Tensor, V: torch.Tensor) -> dict[str, torch.Tensor]:
    """The measured quantities of R replicas: W (R, N, M), b, V (R, N) → {name: (R,)} (module docstring)."""
    return {
        "bias_mean": b.mean(-1),
        "v_mean": V.mean(-1),
        "w_norm": W.flatten(1).norm(dim=-1),
        "v2": (V * V).sum(-1),
        "activation_rate": torch.special.ndtr(b / W.norm(dim=-1)).mean(-1),
    }


def anchor_states(setup: DriftSetup, s: DecompositionSettings):
    """SGD trajectories from the shared initialization, kept at the anchor steps.

    Returns:
        ``(W (A, S, N, M), b (A, S, N), V (A, S, N))``, float64, anchors in the order given.
    """
    W0, b0, V0 = initial_state(setup)
    S, (N, M), B = s.states, W0.shape, s.batch_size
    W, b, V = W0.expand(S, N, M).clone(), b0.expand(S, N).clone(), V0.expand(S, N).clone()
    stream = SampleStream(setup.config(), setup.seed, 0, dtype=_F64)
    gen = generator(setup.seed, s.seed, DATA)
    wl = torch.full((S, B), s.lr / B, dtype=_F64)
    kept: dict[int, tuple] = {}
    for step in range(max(s.anchors) + 1):
        if step in s.anchors:
            kept[step] = (W.clone(), b.clone(), V.clone())
        if step < max(s.anchors):
            x, y = stream.sample(S * B, gen)
            sgd_step(W, b, V, x.view(S, B, M), y.view(S, B), wl, setup.loss)
    if not all(bool(torch.isfinite(t).all()) for t in (W, b, V)):
        raise UsageError(f"SGD diverged on the way to the anchor states at lr = {s.lr}; use a smaller one")
    return tuple(torch.stack([kept[a][i] for a in s.anchors]) for i in range(3))


def per_sample_gradients(W, b, V, x, y, loss: str) -> torch.Tensor:
    """Per-sample gradients ∇ℓ(θ; x_i, y_i) of R replicas on G samples each.

    Args:
        W: (R, N, M); b, V: (R, N); x: (R, G, M); y: (R, G). loss: "bce" or "mse".

    Returns:
        (R, G, P), entries ordered (W row-major, b, V) as the "frozen" step's, P = N·M + 2N.
    """
    z = torch.baddbmm(b.unsqueeze(1), x, W.mT)  # (R, G, N)
    a = z.clamp_min(0.0)
    e = dloss_df(torch.bmm(a, V.unsqueeze(-1)).squeeze(-1), y, loss)  # (R, G)
    delta = e.unsqueeze(-1) * (z > 0).to(z.dtype) * V.unsqueeze(1)  # ∂ℓ/∂b, (R, G, N)
    g_W = delta.unsqueeze(-1) * x.unsqueeze(2)  # (R, G, N, M)
    return torch.cat([g_W.flatten(2), delta, e.unsqueeze(-1) * a], -1)


def frozen_spread(W, b, V, x, y, loss: str, batch_size: int) -> torch.Tensor:
    """ "frozen_cov"'s noise factor: ξ = Σ_i z_i · spread_i, z ~ N(0, I_G), has covariance Σ̂(θ)/|B|.

    Σ̂ is the unbiased covariance of the per-sample gradients on the G samples of x
    (the "gaussian" step's algebra, with the gradients fixed at this θ); its diagonal
    is :func:`~thermosgd.twolayer.noise.per_sample_variance`, the "frozen" model's σ₀².

    Returns:
        (R, G, P), entries as :func:`per_sample_gradients`.
    """
    g = per_sample_gradients(W, b, V, x, y, loss)
    return (g - g.mean(1, keepdim=True)).mul_((batch_size * (x.shape[1] - 1)) ** -0.5)


def _clone_block(setup, s: DecompositionSettings, noise: str, W, b, V, gen: torch.Generator) -> np.ndarray:
    """Run R clones (W (R, N, M), b, V (R, N), modified in place) under ``noise``.

    Returns:
        (len(OBSERVABLES), H, R) the observables at each horizon.
    """
    R, N, M = W.shape
    stream = SampleStream(setup.config(), setup.seed, 0, dtype=_F64)
    G, B = s.gd_batch, s.batch_size
    lr = torch.full((R,), s.lr, dtype=_F64)
    bs = torch.full((R,), float(B), dtype=_F64)
    scale = spread = None
    if noise in ("frozen", "frozen_cov"):
        x0, y0 = (v.view(R, G, *v.shape[1:]) for v in stream.sample(R * G, gen))
        if noise == "frozen":
            scale = (per_sample_variance(W, b, V, x0, y0, setup.loss) / B).sqrt_()
        else:
            spread = frozen_spread(W, b, V, x0, y0, setup.loss, B)
    out = np.empty((len(OBSERVABLES), len(s.horizons), R))
    h = 0
    for k in range(1, max(s.horizons) + 1):
        n = B if noise == "sgd" else G
        x, y = stream.sample(R * n, gen)
        x, y = x.view(R, n, M), y.view(R, n)
        if noise == "sgd":
            sgd_step(W, b, V, x, y, torch.full((R, B), s.lr / B, dtype=_F64), setup.loss)
        elif noise == "gd":
            gd_step(W, b, V, x, y, lr, setup.loss)
        elif noise == "gaussian":
            gaussian_step(W, b, V, x, y, lr, bs, torch.randn(R, G, generator=gen, dtype=_F64), setup.loss)
        elif noise == "frozen":
            z = torch.randn(R, N * M + 2 * N, generator=gen, dtype=_F64)
            assert scale is not None  # set above for "frozen"
            frozen_step(W, b, V, x, y, lr, scale, z, setup.loss)
        elif noise == "frozen_cov":
            assert spread is not None  # set above for "frozen_cov"
            xi = torch.einsum("rg,rgp->rp", torch.randn(R, G, generator=gen, dtype=_F64), spread)
            frozen_step(W, b, V, x, y, lr, torch.ones_like(xi), xi, setup.loss)
        else:
            raise AssertionError(noise)
        if k == s.horizons[h]:
            obs = observables(W, b, V)
            out[:, h] = np.stack([obs[name].numpy() for name in OBSERVABLES])
            h += 1
    return out


def _noise_free(setup, s: DecompositionSettings, W, b, V, generators) -> np.ndarray:
    """Full-batch descent from R states (modified in place), each on its own fixed sample.

    Args:
        W (R, N, M), b, V (R, N): the states. generators: one per state, for its sample
            of ``pop_size`` inputs (independent samples make the path's sampling error
            part of the scatter between states, so the intervals over states hold it).

    Returns:
        (len(OBSERVABLES), H, R).
    """
    R, N, M = W.shape
    stream = SampleStream(setup.config(), setup.seed, 0, dtype=_F64)
    out = np.empty((len(OBSERVABLES), len(s.horizons), R))
    for i in range(0, R, _FREE_BLOCK):  # a block of states at a time: (states, pop_size, N) intermediates
        j = min(R, i + _FREE_BLOCK)
        x, y = (torch.stack(v) for v in zip(*(stream.sample(s.pop_size, g) for g in generators[i:j])))
        if setup.labels == "random":
            y = torch.full_like(y, 0.5)  # ∂ℓ/∂f is affine in y: the label average is exact at y = ½
        lr = torch.full((j - i,), s.lr, dtype=_F64)
        h = 0
        for k in range(1, max(s.horizons) + 1):
            gd_step(W[i:j], b[i:j], V[i:j], x, y, lr, setup.loss)
            if k == s.horizons[h]:
                obs = observables(W[i:j], b[i:j], V[i:j])
                out[:, h, i:j] = np.stack([obs[name].numpy() for name in OBSERVABLES])
                h += 1
    return out


def decomposition_runs(setup: DriftSetup, settings: DecompositionSettings, *, progress: bool = False) -> xr.Dataset:
    """Anchor states, their clones under every noise model, and their noise-free paths.

    Args:
        setup: model and task (Gaussian inputs), as the drift preset's.
        settings: see :class:`DecompositionSettings`.
        progress: show a progress bar over blocks of states.

    Returns:
        Dataset with coords noise, anchor, state, horizon and, per observable q:
        ``q`` (noise, anchor, state, horizon): the clone mean from each state;
        ``q_start`` (anchor, state): its value at the state; ``q_free``
        (anchor, state, horizon): the noise-free path. Diverged clones raise.
    """
    s = settings.checked()
    with threads_for(_STATES_PER_BLOCK * s.clones * s.gd_batch * setup.hidden * setup.inputs):
        return _runs(setup, s, progress)


def _runs(setup: DriftSetup, s: DecompositionSettings, progress: bool) -> xr.Dataset:
    """Body of :func:`decomposition_runs`."""
    W, b, V = anchor_states(setup, s)
    A, S, N, M = W.shape
    H, C, Q = len(s.horizons), s.clones, len(OBSERVABLES)
    clone_means = np.empty((len(NOISES), Q, H, A, S))
    flat = (W.reshape(A * S, N, M).clone(), b.reshape(A * S, N).clone(), V.reshape(A * S, N).clone())
    free = _noise_free(
        setup, s, *flat, [generator(setup.seed, s.seed, PROBE, a, i) for a in range(A) for i in range(S)]
    )
    blocks = [(a, i) for a in range(A) for i in range(0, S, _STATES_PER_BLOCK)]
    bar = progress_bar(len(blocks) * len(NOISES), desc="decomposition", unit="block", enabled=progress)
    for ni, noise in enumerate(NOISES):
        for a, i in blocks:
            j = min(S, i + _STATES_PER_BLOCK)
            gen = generator(setup.seed, s.seed, _CLONE_STREAM, ni, a, i)
            out = _clone_block(
                setup,
                s,
                noise,
                W[a, i:j].repeat_interleave(C, 0),
                b[a, i:j].repeat_interleave(C, 0),
                V[a, i:j].repeat_interleave(C, 0),
                gen,
            )
            if not np.isfinite(out).all():
                raise UsageError(f"a {noise} clone diverged at lr = {s.lr}; use a smaller one")
            clone_means[ni, :, :, a, i:j] = out.reshape(Q, H, j - i, C).mean(-1)
            bar.update(1)
    bar.close()
    start = observables(W.reshape(A * S, N, M), b.reshape(A * S, N), V.reshape(A * S, N))
    coords = {"noise": list(NOISES), "anchor": list(s.anchors), "state": np.arange(S), "horizon": list(s.horizons)}
    data: dict[str, tuple] = {}
    for qi, q in enumerate(OBSERVABLES):
        data[q] = (("noise", "horizon", "anchor", "state"), clone_means[:, qi])
        data[f"{q}_start"] = (("anchor", "state"), start[q].numpy().reshape(A, S))
        data[f"{q}_free"] = (("horizon", "anchor", "state"), free[qi].reshape(H, A, S))
    ds = xr.Dataset(data, coords=coords).transpose("noise", "anchor", "state", "horizon")
    ds.attrs.update(settings=json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()}))
    ds.attrs.update(setup=json.dumps(setup.__dict__))
    return ds
