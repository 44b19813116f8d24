"""Vectorized ensemble SGD for the two-layer ReLU net f(x) = V σ(W x + b).

A whole grid of learning rates × batch sizes × seeds is one computation: the
parameters carry a leading replica dim R = L·K·S (lr, batch size, seed) and
every step is a handful of batched tensor ops, with hand-written gradients of
Eq. 13/16 (tested against ``torch.autograd``). Replicas never mix: a diverging
replica turns into NaN on its own and is frozen and marked, the rest go on.

The pieces, one job each: :mod:`~thermosgd.twolayer.params` (initialization),
:mod:`~thermosgd.twolayer.steps` (the update), :mod:`~thermosgd.twolayer.measure`
(what is recorded; when is a schedule from :mod:`thermosgd.instruments.schedule`),
:mod:`~thermosgd.twolayer.results` (the dataset). This module holds the loop.

Shapes used below: L learning rates, K batch sizes, S seeds, B = max batch size,
N hidden units, M inputs, P probe samples.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from thermosgd.config import SweepConfig
from thermosgd.errors import UsageError
from thermosgd.instruments.schedule import every
from thermosgd.twolayer.data import SampleStream, UserData
from thermosgd.twolayer.measure import METRICS, TEST_METRICS, ProbeSet, measure
from thermosgd.twolayer.params import Params, init_ensemble
from thermosgd.twolayer.results import Records, diverged_steps, to_dataset
from thermosgd.twolayer.steps import minibatch_weights, sgd_step

_CHUNK = 256  # minibatches drawn per stream at once
# First-layer weights trained together at most (1M float32 = 4 MiB): beyond this the
# step is bound by memory traffic (measured on the fig2-top grid: 162k replica-steps/s
# with 128 replicas of 100×100, 103k with 512).
_BLOCK_ENTRIES = 1 << 20


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
    t = cfg.train
    seeds = list(t.seeds if seeds is None else seeds)
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
        return UserData.from_npz(cfg.data.file, inputs=cfg.model.inputs, loss=cfg.train.loss)
    test = (None, None) if test_data is None else test_data
    return UserData(*data, *test, inputs=cfg.model.inputs, loss=cfg.train.loss)


def _train(cfg: SweepConfig, seeds, user: UserData | None, *, progress: bool = False,
           desc: str | None = None) -> xr.Dataset:
    """Body of :func:`train` for one block of seeds: initialize, loop, assemble."""
    t = cfg.train
    dtype = torch.float64 if t.dtype == "float64" else torch.float32
    L, K, S = len(t.lr), len(t.batch_size), len(seeds)
    p = init_ensemble(cfg, seeds, dtype)
    data = _Data(cfg, seeds, user, dtype)
    probe = data.probe_set()
    wl = minibatch_weights(t.lr, t.batch_size, S, dtype)

    record = every(t.record_every, last=t.steps)
    probe_due = every(cfg.probe_every_steps, last=t.steps)
    records = Records(METRICS + (TEST_METRICS if probe.test_x is not None else ()),
                      np.array(record.steps(t.steps)), L * K * S, dtype)
    # Running ‖W_i‖² for the exact activation rate at (almost) every step without a
    # pass over W (which for large N·M costs more than the SGD step itself);
    # recomputed from W at every chunk so rounding cannot accumulate.
    row_norms2 = p.W.pow(2).sum(-1) if _dense(records.steps, t.steps) else None
    gaussian = cfg.data.inputs == "gaussian"

    def measure_at(i: int, step: int) -> None:
        row_norm = p.W.norm(dim=-1) if row_norms2 is None else row_norms2.clamp_min(0.0).sqrt()
        records.put(i, measure(p, row_norm, probe, loss=t.loss, bias=cfg.model.bias, gaussian=gaussian,
                               with_probe=probe_due(step)))

    bar = tqdm(total=t.steps, desc=desc or "train", unit="step", disable=not progress, leave=False)
    measure_at(0, 0)
    ri, step = 1, 0
    while step < t.steps:
        n = min(_CHUNK, t.steps - step)
        xs, ys = data.chunk(n)  # (n, R, B, M), (n, R, B)
        if row_norms2 is not None:
            torch.sum(p.W.pow(2), -1, out=row_norms2)
        _freeze_nonfinite(p, wl, row_norms2)
        for c in range(n):
            sgd_step(p.W, p.b, p.V, xs[c], ys[c], wl, t.loss, cfg.model.bias, row_norms2)
            step += 1
            if record(step):
                measure_at(ri, step)
                ri += 1
        bar.update(n)
    bar.close()
    method = ("exact: mean_i Phi(b_i/||W_i||) for x ~ N(0, I)" if gaussian
              else f"Monte Carlo on a fixed probe set of {probe.x.shape[1]} samples")
    return to_dataset(cfg, seeds, records, diverged_steps(records), activation_rate_method=method)


def _dense(steps: np.ndarray, total: int) -> bool:
    """Whether a schedule records on average at least every 4th step (then ‖W_i‖ is tracked)."""
    return 4 * (len(steps) - 1) >= total


def _freeze_nonfinite(p: Params, wl: torch.Tensor, row_norms2: torch.Tensor | None) -> None:
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


class _Data:
    """The seeded sample streams of one block of seeds and its probe set.

    With ``share_data`` there is one stream per seed, replayed for every
    (lr, batch size); otherwise one per replica.
    """

    def __init__(self, cfg: SweepConfig, seeds, user: UserData | None, dtype: torch.dtype):
        t = cfg.train
        self.L, self.K, self.S = len(t.lr), len(t.batch_size), len(seeds)
        self.B, self.shared = max(t.batch_size), t.share_data
        self.batch_sizes, self.dtype = t.batch_size, dtype
        per_seed = [SampleStream(cfg, t.seed, s, dtype=dtype, dataset=user) for s in seeds]
        self.streams = per_seed if self.shared else [
            SampleStream(cfg, t.seed, s, li, ki, dtype=dtype, dataset=user)
            for li in range(self.L) for ki in range(self.K) for s in seeds
        ]
        self.probes = per_seed  # the probe set is per seed in either case

    def _replicate(self, v: torch.Tensor) -> torch.Tensor:
        """(S, ...) per-seed tensor → (L·K·S, ...) in replica order (lr, batch, seed)."""
        return v.unsqueeze(0).expand(self.L * self.K, *v.shape).reshape(-1, *v.shape[1:])

    def probe_set(self) -> ProbeSet:
        px, py = (torch.stack(v) for v in zip(*(st.probe() for st in self.probes)))  # (S, P, M), (S, P)
        bsz = torch.tensor(self.batch_sizes, dtype=self.dtype).view(1, self.K, 1)
        out = ProbeSet(self._replicate(px), self._replicate(py),
                       bsz.expand(self.L, self.K, self.S).reshape(-1))
        tests = [st.test() for st in self.probes]
        if tests[0] is not None:
            out.test_x, out.test_y = (self._replicate(torch.stack(v)) for v in zip(*tests))
        return out

    def chunk(self, n: int):
        """Minibatches for n ≤ _CHUNK steps: x (n, R, B, M), y (n, R, B).

        Always draws a whole chunk and keeps the first n steps: torch's vectorized
        samplers give different numbers for different request sizes, and a run of T
        steps must see the same first T minibatches as a longer run.
        """
        xs, ys = zip(*(tuple(v[:n] for v in st.batches(_CHUNK, self.B)) for st in self.streams))
        x, y = torch.stack(xs, 1), torch.stack(ys, 1)  # (n, streams, B, M)
        if self.shared:  # streams are the S seeds
            R = self.L * self.K * self.S
            x = x.unsqueeze(1).expand(n, self.L * self.K, *x.shape[1:]).reshape(n, R, self.B, -1)
            y = y.unsqueeze(1).expand(n, self.L * self.K, *y.shape[1:]).reshape(n, R, self.B)
        return x, y
