"""Vectorized ensemble SGD for the two-layer ReLU net f(x) = V σ(W x + b).

A whole grid of learning rates × batch sizes × seeds is one computation: the
parameters carry a leading replica dim R = L·K·S (lr, batch size, seed) and
every step is a handful of batched tensor ops, with hand-written gradients of
Eq. 13/16 (tested against ``torch.autograd``). Replicas never mix: a diverging
replica turns into NaN on its own and is frozen and marked, the rest go on.

Shapes used below: L learning rates, K batch sizes, S seeds, B = max batch size,
N hidden units, M inputs, P probe samples.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from thermosgd.config import SweepConfig
from thermosgd.checks import replica_seeds, require_config
from thermosgd.errors import UsageError
from thermosgd.twolayer.data import INIT, SampleStream, UserData, generator

_CHUNK = 256  # minibatches drawn per stream at once
# First-layer weights trained together at most (1M float32 = 4 MiB): beyond this the
# step is bound by memory traffic (measured on the fig2-top grid: 162k replica-steps/s
# with 128 replicas of 100×100, 103k with 512).
_BLOCK_ENTRIES = 1 << 20


@dataclass
class Params:
    """Parameters of R = L·K·S replicas, ordered (lr, batch size, seed): W (R, N, M), b (R, N), V (R, N)."""

    W: torch.Tensor
    b: torch.Tensor
    V: torch.Tensor


def init_params(cfg: SweepConfig, gen: torch.Generator, dtype: torch.dtype):
    """One replica's initial (W (N, M), b (N,), V (N,)), documented in ModelConfig."""
    M, N, s = cfg.model.inputs, cfg.model.hidden, cfg.model.init_scale
    if cfg.model.init == "torch":
        # nn.Linear: kaiming_uniform(a=√5) gives U(-1/√fan_in, 1/√fan_in), bias alike.
        W = (torch.rand(N, M, generator=gen, dtype=dtype) * 2 - 1) / math.sqrt(M)
        b = (torch.rand(N, generator=gen, dtype=dtype) * 2 - 1) / math.sqrt(M)
        V = (torch.rand(N, generator=gen, dtype=dtype) * 2 - 1) / math.sqrt(N)
    else:
        W = torch.randn(N, M, generator=gen, dtype=dtype) / math.sqrt(M)
        b = torch.zeros(N, dtype=dtype)
        V = torch.randn(N, generator=gen, dtype=dtype) / math.sqrt(N)
    if not cfg.model.bias:
        b = torch.zeros(N, dtype=dtype)
    return W * s, b * s, V * s


def dloss_df(f: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """∂ℓ/∂f per sample: σ(f) − y for BCE (Eq. 15), f − y for ½(f − y)²."""
    return torch.sigmoid(f) - y if loss == "bce" else f - y


def loss_value(f: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample loss: BCE on the logit f, −[y log σ(f) + (1−y) log(1−σ(f))], or ½(f−y)²."""
    if loss == "bce":
        return torch.nn.functional.softplus(f) - y * f
    return 0.5 * (f - y) ** 2


def sgd_step(W: torch.Tensor, b: torch.Tensor, V: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             wl: torch.Tensor, loss: str, bias: bool = True, row_norms2: torch.Tensor | None = None) -> None:
    """One plain SGD step (Eq. 13, 16) for R replicas, in place.

    Args:
        W: (R, N, M); b: (R, N); V: (R, N) — updated in place.
        x: (R, B, M) inputs; y: (R, B) labels.
        wl: (R, B) per-sample step weights η/|B| for the replica's first |B|
            samples and 0 for the rest (0 everywhere freezes a replica).
        loss: "bce" or "mse".
        bias: update b (False: b stays fixed).
        row_norms2: optional (R, N) running ‖W_i‖², updated in place exactly
            (from the identity below) so that recording ‖W_i‖ at every step
            needs no extra pass over W.

    The gradient is written out by hand: with e = ∂ℓ/∂f and s = σ'(z),
    ∂ℓ/∂V = e σ(z), ∂ℓ/∂b = e s ⊙ V =: δ, ∂ℓ/∂W = δ xᵀ; folding η/|B| into e
    makes the W update a sum of in-place rank-1 updates (one pass over W each).
    """
    z = torch.baddbmm(b.unsqueeze(1), x, W.mT)  # (R, B, N)
    s = z > 0
    wx = z - b.unsqueeze(1) if row_norms2 is not None else None  # W x before the update
    a = z.clamp_min_(0.0)
    f = torch.bmm(a, V.unsqueeze(-1)).squeeze(-1)  # (R, B)
    el = dloss_df(f, y, loss).mul_(wl)
    gV = torch.bmm(el.unsqueeze(1), a).squeeze(1)  # (R, N)
    delta = (el.unsqueeze(-1) * V.unsqueeze(1)).mul_(s)  # (R, B, N)
    if row_norms2 is not None:
        # ‖W_i − Σ_j δ_ji x_j‖² = ‖W_i‖² − 2 Σ_j δ_ji (W x_j)_i + Σ_jl δ_ji δ_li (x_j · x_l)
        row_norms2.sub_(2.0 * (delta * wx).sum(1))
        row_norms2.add_((delta * torch.bmm(torch.bmm(x, x.mT), delta)).sum(1))
    B = x.shape[1]
    if B <= 4:
        # Rank-1 updates as one elementwise pass over W each: for small matrices
        # this is several times faster than batched GEMM (which is what bmm does).
        for j in range(B):
            W.addcmul_(delta[:, j].unsqueeze(-1), x[:, j].unsqueeze(1), value=-1.0)
    else:
        W.baddbmm_(delta.mT, x, alpha=-1.0)
    if bias:
        b.sub_(delta.sum(1))
    V.sub_(gV)


class _Recorder:
    """Preallocated metric buffers (n_records, L, K, S)."""

    def __init__(self, names, n, shape, dtype):
        self.buf = {k: torch.full((n, *shape), float("nan"), dtype=dtype) for k in names}

    def put(self, i: int, **values):
        for k, v in values.items():
            self.buf[k][i] = v


@contextlib.contextmanager
def _threads_for(work: int):
    """Use one intra-op thread for small per-step work: thread start-up then costs
    more than the arithmetic (and much more on a loaded machine)."""
    old = torch.get_num_threads()
    if work < 4_000_000 and old > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def record_every_small(t) -> bool:
    """Track ‖W_i‖ incrementally when recording at (almost) every step."""
    return t.record_every <= 4


def record_steps(steps: int, every: int) -> np.ndarray:
    s = np.arange(0, steps + 1, every)
    return s if s[-1] == steps else np.append(s, steps)


def train(cfg: SweepConfig, seeds=None, *, data=None, test_data=None, progress: bool = False,
          desc: str | None = None) -> xr.Dataset:
    """Train the grid ``cfg.train.lr × cfg.train.batch_size × seeds`` in one go.

    Args:
        cfg: validated configuration.
        seeds: the replica seeds to train (default: all of ``cfg.train.seeds``);
            a work unit passes a block of them.
        data: optional (x (n, M), y (n,)) tensors or arrays: train on this finite
            set instead of the configured distribution (needs ``inputs = "file"``
            and ``labels = "file"`` in [data]; without ``data`` those read
            ``[data] file``). The activation rate is then counted on the probe
            set, a fixed subset of ``x``.
        test_data: optional held-out (x, y) for ``test_loss`` / ``test_error``.
        progress: show a progress bar over steps.

    Returns:
        Dataset with dims (lr, batch_size, seed, step); see :func:`thermosgd.load`.
    """
    t = require_config(cfg, "train").train
    seeds = list(t.seeds) if seeds is None else replica_seeds(seeds)
    user = load_user_data(cfg, data, test_data)
    per_seed = len(t.lr) * len(t.batch_size) * cfg.model.hidden * cfg.model.inputs  # W entries per seed
    block = max(1, _BLOCK_ENTRIES // per_seed)
    work = per_seed * min(block, len(seeds)) * max(t.batch_size)
    with _threads_for(work):
        if len(seeds) <= block:
            return _train(cfg, seeds, user, progress=progress, desc=desc)
        # Replicas never interact, so blocks of seeds can run one after another:
        # the same numbers, with each block's weights small enough to stay in cache.
        parts = [
            _train(cfg, seeds[i : i + block], user, progress=progress,
                   desc=f"{desc or 'train'} [{i // block + 1}/{-(-len(seeds) // block)}]")
            for i in range(0, len(seeds), block)
        ]
    out = xr.concat(parts, dim="seed", data_vars="all", coords="different", compat="equals", join="exact")
    out.attrs = parts[0].attrs
    return out


def load_user_data(cfg: SweepConfig, data, test_data) -> UserData | None:
    """The user's data set, from tensors or from ``[data] file``."""
    if cfg.data.inputs != "file":
        if data is not None or test_data is not None:
            raise UsageError('data=... needs [data] inputs = "file" and labels = "file" in the config')
        return None
    if data is None:
        if not cfg.data.file:
            raise UsageError('[data] inputs = "file" needs [data] file = "PATH.npz" (or data=(x, y) in Python)')
        return UserData.from_npz(cfg.data.file, inputs=cfg.model.inputs, loss=cfg.train.loss, dtype=cfg.train.dtype)
    return UserData.from_arguments(data, test_data, inputs=cfg.model.inputs, loss=cfg.train.loss, dtype=cfg.train.dtype)


def _train(cfg: SweepConfig, seeds, user: UserData | None, *, progress: bool = False,
           desc: str | None = None) -> xr.Dataset:
    """Body of :func:`train`."""
    t = cfg.train
    seeds = list(t.seeds if seeds is None else seeds)
    dtype = torch.float64 if t.dtype == "float64" else torch.float32
    L, K, S = len(t.lr), len(t.batch_size), len(seeds)
    N, M = cfg.model.hidden, cfg.model.inputs
    B = max(t.batch_size)

    # Initialization: shared per seed, or one per replica.
    init = torch.empty(L, K, S, N * M + 2 * N, dtype=dtype)
    for si, seed in enumerate(seeds):
        for li in range(L):
            for ki in range(K):
                if t.share_init and (li or ki):
                    init[li, ki, si] = init[0, 0, si]
                    continue
                extra = () if t.share_init else (li, ki)
                W, b, V = init_params(cfg, generator(t.seed, seed, INIT, *extra), dtype)
                init[li, ki, si] = torch.cat([W.reshape(-1), b, V])
    R = L * K * S
    p = Params(
        W=init[..., : N * M].reshape(R, N, M).contiguous(),
        b=init[..., N * M : N * M + N].reshape(R, N).contiguous(),
        V=init[..., N * M + N :].reshape(R, N).contiguous(),
    )
    del init

    if t.share_data:
        streams = [SampleStream(cfg, t.seed, s, dtype=dtype, dataset=user) for s in seeds]
    else:
        streams = [
            SampleStream(cfg, t.seed, s, li, ki, dtype=dtype, dataset=user)
            for li in range(L) for ki in range(K) for s in seeds
        ]
    probes = streams if t.share_data else [SampleStream(cfg, t.seed, s, dtype=dtype, dataset=user) for s in seeds]
    px, py = (torch.stack(v) for v in zip(*(st.probe() for st in probes)))  # (S, P, M), (S, P)
    px, py = _replicate(px, L, K), _replicate(py, L, K)  # (R, P, M), (R, P)
    tests = [st.test() for st in probes]
    tx = ty = None
    if tests[0] is not None:
        tx, ty = (_replicate(torch.stack(v), L, K) for v in zip(*tests))

    # Per-sample step weights η/|B| (first |B| samples of the largest batch B).
    wl = torch.zeros(L, K, S, B, dtype=dtype)
    for li, lr in enumerate(t.lr):
        for ki, bs in enumerate(t.batch_size):
            wl[li, ki, :, :bs] = lr / bs
    wl = wl.view(R, B)
    bsz = torch.tensor(t.batch_size, dtype=dtype).view(1, K, 1).expand(L, K, S).reshape(R)

    steps_rec = record_steps(t.steps, t.record_every)
    probe_every = cfg.probe_every_steps
    gaussian = cfg.data.inputs == "gaussian"
    names = ["activation_rate", "v_norm", "w_norm", "bias_mean", "loss", "error",
             "grad_var", "grad_var_V", "grad_var_W", "grad_var_b"]
    if tx is not None:
        names += ["test_loss", "test_error"]
    rec = _Recorder(names, len(steps_rec), (R,), dtype)

    # Running ‖W_i‖² for the exact activation rate at every recorded step without a
    # pass over W (which for large N·M costs more than the SGD step itself);
    # recomputed from W at every chunk so rounding cannot accumulate.
    row_norms2 = p.W.pow(2).sum(-1) if record_every_small(t) else None

    def freeze_diverged():
        """Freeze replicas whose parameters overflowed: NaN from here on, step size 0.

        Replicas never mix, so this only saves work and keeps inf − inf out of the
        arithmetic; when a replica diverged is read off the records at the end.
        """
        norms = p.V.sum(-1) + p.b.sum(-1) + (p.W.sum((-1, -2)) if row_norms2 is None else row_norms2.sum(-1))
        bad = ~torch.isfinite(norms)
        if bool(bad.any()):
            for x in (p.W, p.b, p.V) if row_norms2 is None else (p.W, p.b, p.V, row_norms2):
                x[bad] = float("nan")
            wl[bad] = 0.0

    def measure(i: int, step: int):
        do_probe = step % probe_every == 0 or step == t.steps
        row_norm = p.W.norm(dim=-1) if row_norms2 is None else row_norms2.clamp_min(0.0).sqrt()
        values = {"v_norm": p.V.norm(dim=-1), "w_norm": row_norm.norm(dim=-1), "bias_mean": p.b.mean(-1)}
        if gaussian:
            # x ~ N(0, I): unit i's pre-activation is N(b_i, ‖W_i‖²), active w.p. Φ(b_i/‖W_i‖).
            values["activation_rate"] = torch.special.ndtr(p.b / row_norm).mean(-1)
        if do_probe or not gaussian:
            values.update(probe_metrics(p, px, py, bsz, cfg, need_grads=do_probe, exact_rate=gaussian))
        if do_probe and tx is not None:
            f = forward(p, tx)
            values["test_loss"] = loss_value(f, ty, t.loss).mean(-1)
            values["test_error"] = ((f > 0).to(dtype) != ty).to(dtype).mean(-1)
        rec.put(i, **values)

    bar = tqdm(total=t.steps, desc=desc or "train", unit="step", disable=not progress, leave=False)
    ri = 0
    measure(ri, 0)
    ri += 1
    step = 0
    while step < t.steps:
        n = min(_CHUNK, t.steps - step)
        xs, ys = _draw(streams, n, B, L, K, S, t.share_data)  # (n, R, B, M), (n, R, B)
        if row_norms2 is not None:
            torch.sum(p.W.pow(2), -1, out=row_norms2)
        freeze_diverged()
        for c in range(n):
            sgd_step(p.W, p.b, p.V, xs[c], ys[c], wl, t.loss, cfg.model.bias, row_norms2)
            step += 1
            if ri < len(steps_rec) and step == steps_rec[ri]:
                measure(ri, step)
                ri += 1
        bar.update(n)
    bar.close()

    dims = ("lr", "batch_size", "seed", "step")
    data = {k: (dims, v.T.reshape(L, K, S, -1).numpy()) for k, v in rec.buf.items()}
    if not cfg.model.bias:
        data["grad_var_b"] = (data["grad_var_b"][0], np.full_like(data["grad_var_b"][1], np.nan))
    # A replica diverged at the first recorded step where a parameter norm is not finite.
    bad = ~(torch.isfinite(rec.buf["v_norm"]) & torch.isfinite(rec.buf["w_norm"]) & torch.isfinite(rec.buf["bias_mean"]))
    first = torch.where(bad.any(0), bad.to(torch.int8).argmax(0), torch.tensor(-1))
    diverged_step = np.where(first.numpy() >= 0, steps_rec[first.clamp_min(0).numpy()], -1).reshape(L, K, S)
    data["diverged"] = (("lr", "batch_size", "seed"), diverged_step >= 0)
    data["diverged_step"] = (("lr", "batch_size", "seed"), diverged_step.astype(np.int32))
    ds = xr.Dataset(
        data,
        coords={
            "lr": np.array(t.lr, dtype=np.float64),
            "batch_size": np.array(t.batch_size, dtype=np.int32),
            "seed": np.array(seeds, dtype=np.int32),
            "step": steps_rec.astype(np.int32),
        },
        attrs={
            "kind": "twolayer",
            "config": json.dumps(cfg.to_dict(), sort_keys=True),
            "activation_rate_method": (
                "exact: mean_i Phi(b_i/||W_i||) for x ~ N(0, I)"
                if gaussian
                else f"Monte Carlo on a fixed probe set of {px.shape[1]} samples"
            ),
            "grad_var_definition": (
                "mean over entries of var[minibatch gradient] = per-sample variance "
                "(unbiased, over the probe set) / |B| (Eq. 17-18)"
            ),
        },
    )
    ds["step"].attrs["long_name"] = "SGD iteration"
    return ds


def forward(p: Params, x: torch.Tensor) -> torch.Tensor:
    """Network output f for inputs x (R, P, M) → (R, P)."""
    z = torch.baddbmm(p.b.unsqueeze(1), x, p.W.mT)
    return torch.bmm(z.clamp_min_(0.0), p.V.unsqueeze(-1)).squeeze(-1)


def probe_metrics(p: Params, px, py, bsz, cfg: SweepConfig, *, need_grads: bool, exact_rate: bool) -> dict:
    """Probe-set instruments for every replica (each of shape (R,)).

    Args:
        p: parameters W (R, N, M), b (R, N), V (R, N).
        px: probe inputs (R, P, M); py: probe labels (R, P).
        bsz: (R,) batch size of each replica (minibatch variance = per-sample / |B|).

    Gradient variance uses per-sample gradients without materializing them:
    for W the per-entry second moments summed over entries equal E[‖δ‖²‖x‖²],
    so the cost is one forward and backward pass over the probe set.
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
    loss = cfg.train.loss
    out["loss"] = loss_value(f, py, loss).mean(-1)
    out["error"] = ((f > 0).to(f.dtype) != py).to(f.dtype).mean(-1)
    e = dloss_df(f, py, loss)  # per-sample ∂ℓ/∂f
    corr = P / (P - 1)
    gV_mean = torch.bmm(e.unsqueeze(1), a).squeeze(1) / P
    var_V = (torch.bmm((e * e).unsqueeze(1), a * a).squeeze(1).sum(-1) / P - gV_mean.pow(2).sum(-1)) * corr
    delta = s * (e.unsqueeze(-1) * p.V.unsqueeze(1))  # (R, P, N)
    d2 = delta.pow(2).sum(-1)  # ‖δ_i‖², (R, P)
    var_b = (d2.mean(-1) - delta.mean(1).pow(2).sum(-1)) * corr
    gW_mean = torch.bmm(delta.mT, px) / P
    var_W = ((d2 * px.pow(2).sum(-1)).mean(-1) - gW_mean.pow(2).sum((-1, -2))) * corr
    n_b = N if cfg.model.bias else 0
    total = var_V + var_W + (var_b if n_b else 0)
    out["grad_var_V"] = var_V / (N * bsz)
    out["grad_var_W"] = var_W / (N * M * bsz)
    out["grad_var_b"] = var_b / (N * bsz)
    out["grad_var"] = total / ((N + N * M + n_b) * bsz)
    return out


def _replicate(v: torch.Tensor, L: int, K: int) -> torch.Tensor:
    """(S, ...) per-seed tensor → (L*K*S, ...) in replica order (lr, batch, seed)."""
    return v.unsqueeze(0).expand(L * K, *v.shape).reshape(-1, *v.shape[1:])


def _draw(streams, n, B, L, K, S, shared):
    """Minibatches for n ≤ _CHUNK steps: x (n, R, B, M), y (n, R, B).

    Always draws a whole chunk and keeps the first n steps: torch's vectorized
    samplers give different numbers for different request sizes, and a run of T
    steps must see the same first T minibatches as a longer run.
    """
    xs, ys = zip(*(tuple(v[:n] for v in st.batches(_CHUNK, B)) for st in streams))
    x, y = torch.stack(xs, 1), torch.stack(ys, 1)  # (n, streams, B, M)
    if shared:  # streams are the S seeds
        x = x.unsqueeze(1).expand(n, L * K, *x.shape[1:]).reshape(n, L * K * S, B, -1)
        y = y.unsqueeze(1).expand(n, L * K, *y.shape[1:]).reshape(n, L * K * S, B)
    return x, y
