"""Train a study's seeds: one ensemble over the learning rates per (seed, batch size), one loop.

A seed's model comes from ``factory(seed=s)`` once and is copied to every
learning rate; every learning rate of a (seed, batch size) sees the same samples
and noise draws. So a replica's numbers depend on its seed, batch size and the
config's learning rates only, never on the unit layout or the executor: a
resumed or redistributed study is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import torch
import xarray as xr
from torch import nn

from thermosgd.deep.ensemble import Ensemble, ensemble_gradient_variance
from thermosgd.deep.noise import frozen_noise, step_weights
from thermosgd.errors import UsageError
from thermosgd.instruments.activations import replica_activation_rates
from thermosgd.instruments.gradient_variance import replica_gradient_variance, replica_per_sample_gradients
from thermosgd.instruments.hessian import _mlp_layers, hessian_trace, stacked_trace_bound
from thermosgd.instruments.norms import replica_weight_norms
from thermosgd.instruments.schedule import log_spaced
from thermosgd.studies import model as models
from thermosgd.studies.data import HESSIAN, NOISE, NOISE_INIT, Samples, generator
from thermosgd.studies.spec import Study
from thermosgd.threads import threads_for

GRAD_ELEMENTS = 1 << 25  # per-sample gradient entries held at once (replicas are chunked to fit)


def record_steps(study: Study) -> list[int]:
    """The recorded steps: ``[record] steps``, or ``points`` log-spaced steps from 0 to ``[train] steps``."""
    r, steps = study.cfg.record, study.cfg.train.steps
    return list(r.steps) if r.steps else log_spaced(steps, r.points).steps(steps)


def _expand(samples: Samples, E: int) -> tuple[torch.Tensor, torch.Tensor]:
    return samples.x.unsqueeze(0).expand(E, *samples.x.shape), samples.y.unsqueeze(0).expand(E, *samples.y.shape)


def _one_sample(loss: str):
    each = models.sample_losses(loss)
    return lambda out, y: each(out.unsqueeze(0), y.unsqueeze(0)).mean()


def measure(study: Study, ens: Ensemble, probe: Samples, test: Samples | None, hess_gen) -> dict:
    """Every instrument of every replica on the probe (and held-out) set.

    Returns:
        name -> ``(E,)`` float64 for the overall variables, and ``name_layer`` -> {layer: ``(E,)``}.
    """
    loss, E = study.cfg.train.loss, ens.size
    out: dict = {}
    for prefix, samples in (("", probe), ("test_", test)):
        if samples is None:
            continue
        x, y = _expand(samples, E)
        with torch.no_grad():
            outputs = ens.forward(x)
            out[prefix + "loss"] = models.sample_losses(loss)(outputs, y).to(torch.float64).mean(1)
            right = models.correct(loss, outputs, y)
        if right is not None:
            out[prefix + "accuracy"] = right.mean(1)
    x, y = _expand(probe, E)
    out["grad_var"], out["grad_var_layer"] = _grad_var(ens, _one_sample(loss), x, y)
    rates = replica_activation_rates(ens.template, ens.params, ens.buffers, x)
    if rates is not None:
        out["activation_rate"], out["activation_rate_layer"] = rates
    out["weight_norm"], out["weight_norm_layer"] = replica_weight_norms(ens.template, ens.params)
    out["last_weight_norm"] = list(out["weight_norm_layer"].values())[-1]
    if study.cfg.record.hessian:
        out["hessian_trace"], out["hessian_trace_stderr"] = _hessian(study, ens, probe, hess_gen)
        bound = _trace_bound(study, ens, probe)
        if bound is not None:
            out["hessian_trace_bound"] = bound
    return out


def _trace_bound(study: Study, ens: Ensemble, probe: Samples) -> torch.Tensor | None:
    """The A.5 bound (Eq. 62) on each replica's probe-loss Hessian trace, where it applies:
    a ReLU MLP (``nn.Sequential`` of Linear and ReLU) with the bce or cross-entropy loss."""
    loss = {"bce": nn.BCEWithLogitsLoss(), "cross_entropy": nn.CrossEntropyLoss()}.get(study.cfg.train.loss)
    try:
        linears = _mlp_layers(ens.template)
    except UsageError:
        return None
    if loss is None:
        return None
    names = {id(m): name for name, m in ens.template.named_modules()}
    weights = [ens.params[f"{names[id(m)]}.weight"] for m in linears]
    biases = [ens.params.get(f"{names[id(m)]}.bias") for m in linears]
    x = probe.x.reshape(1, len(probe), -1).expand(ens.size, -1, -1)
    return stacked_trace_bound(loss, x, weights, biases).mean(1)


def _grad_var(ens: Ensemble, loss_fn, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Per-sample gradient variance of every replica: by layer hooks on the batched layers, else
    by torch.func over chunks of replicas that keep the per-sample gradients in memory bounds."""
    if ens.layers is not None:
        return ensemble_gradient_variance(ens, loss_fn, x, y)
    E, n = ens.size, x.shape[1]
    chunk = max(1, GRAD_ELEMENTS // (n * sum(p[0].numel() for p in ens.params.values())))
    parts = [
        replica_gradient_variance(
            replica_per_sample_gradients(
                ens.template,
                {k: v[i : i + chunk] for k, v in ens.params.items()},
                {k: v[i : i + chunk] for k, v in ens.buffers.items()},
                loss_fn,
                x[i : i + chunk],
                y[i : i + chunk],
            )
        )
        for i in range(0, E, chunk)
    ]
    return torch.cat([p[0] for p in parts]), {k: torch.cat([p[1][k] for p in parts]) for k in parts[0][1]}


def _hessian(study: Study, ens: Ensemble, probe: Samples, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """Hutchinson's trace of each replica's probe-loss Hessian and its standard error."""
    one = copy.deepcopy(ens.template)
    values, errors = [], []
    for e in range(ens.size):
        est = hessian_trace(
            ens.load_into(one, e),
            _one_sample(study.cfg.train.loss),
            probe.x,
            probe.y,
            samples=study.cfg.record.hessian_samples,
            generator=gen,
        )
        values.append(est.value)
        errors.append(est.stderr)
    return torch.tensor(values, dtype=torch.float64), torch.tensor(errors, dtype=torch.float64)


def _frozen_variance(study: Study, ens: Ensemble, seed: int, bi: int) -> dict[str, torch.Tensor]:
    """σ₀²: each entry's unbiased per-sample-gradient variance at initialization on G samples."""
    s = study.data.stream(seed, bi, NOISE_INIT).next(study.cfg.train.gd_batch)
    one = {k: v[:1] for k, v in ens.params.items()}
    grads = replica_per_sample_gradients(
        ens.template, one, {k: v[:1] for k, v in ens.buffers.items()}, _one_sample(study.cfg.train.loss), *_expand(s, 1)
    )
    var = {k: g[0].var(dim=0, correction=1) for k, g in grads.items()}
    return {k: v.unsqueeze(0).expand(ens.size, *v.shape) for k, v in var.items()}


def train_seed(study: Study, seed: int, bi: int, steps: list[int]) -> tuple[list[dict], np.ndarray]:
    """Train every learning rate of one seed at the ``bi``-th batch size and measure at ``steps``.

    Returns:
        Per recorded step, :func:`measure`'s values (NaN for replicas that diverged
        earlier), and ``(L,)`` the step at which each replica diverged (-1: never).
    """
    cfg = study.cfg
    t, dtype = cfg.train, study.data.dtype
    model = models.build(study.factory, t.seed, seed, dtype)
    models.check_layers(model)
    probe, test = study.data.probe(seed), study.data.held_out(seed)
    models.check_independent(model, t.loss, probe.x, probe.y)
    ens = Ensemble([copy.deepcopy(model) for _ in t.lr])
    L, bs = ens.size, t.batch_size[bi]
    lr = torch.tensor(t.lr, dtype=dtype)
    alive, diverged = torch.ones(L, dtype=torch.bool), np.full(L, -1, dtype=np.int64)
    stream, noise_gen = study.data.stream(seed, bi), generator(t.seed, seed, NOISE, bi)
    hess_gen = generator(t.seed, seed, HESSIAN, bi)
    sigma2 = _frozen_variance(study, ens, seed, bi) if t.noise == "frozen" else None
    each, n = models.sample_losses(t.loss), bs if t.noise == "sgd" else t.gd_batch
    records: list[dict] = []
    wanted = set(steps)
    for step in range(t.steps + 1):
        if step in wanted:
            values = measure(study, ens, probe, test, hess_gen)
            records.append(_mask(values, alive))
        if step == t.steps:
            break
        x, y = _expand(stream.next(n), L)
        z = torch.randn(n, generator=noise_gen, dtype=dtype) if t.noise == "gaussian" else None
        extra = None
        if sigma2 is not None:
            draws = {k: torch.randn(v.shape[1:], generator=noise_gen, dtype=dtype) for k, v in sigma2.items()}
            extra = frozen_noise(sigma2, lr, bs, draws)
        _, updated = ens.weighted_step(each, x, y, step_weights(t.noise, lr, bs, n, z), alive, extra)
        newly = alive & ~(updated & ens.finite())
        diverged[newly.numpy()] = step
        alive &= ~newly
    return records, diverged


def _mask(values: dict, alive: torch.Tensor) -> dict:
    """NaN for the replicas that have diverged."""
    nan = torch.tensor(float("nan"), dtype=torch.float64)

    def m(v: torch.Tensor) -> torch.Tensor:
        return torch.where(alive, v.to(torch.float64), nan)

    return {k: ({n: m(x) for n, x in v.items()} if isinstance(v, dict) else m(v)) for k, v in values.items()}


LAYER_DIMS = {"grad_var_layer": "layer", "activation_rate_layer": "relu_layer", "weight_norm_layer": "weight_layer"}


def compute_unit(study: Study, seeds: tuple[int, ...]) -> xr.Dataset:
    """Train ``seeds`` (every lr × batch size) into a Dataset with dims ``(lr, batch_size, seed, step)``.

    Per-layer variables add a layer dimension (``layer``: modules with trainable
    parameters; ``relu_layer``: ``nn.ReLU`` modules; ``weight_layer``: modules with a weight).
    """
    t, steps = study.cfg.train, record_steps(study)
    L, K, S, T = len(t.lr), len(t.batch_size), len(seeds), len(steps)
    grid: dict = {}
    diverged = np.full((L, K, S), -1, dtype=np.int32)
    for si, seed in enumerate(seeds):
        for bi in range(K):
            # One intra-op thread always (threads_for(0)): a replica's bits must not depend on where
            # its unit runs, and on small models threads cost more than they save.
            with threads_for(0), warnings.catch_warnings():
                # vmap's fallback for ops without a batching rule (attention on the CPU) is slower, not wrong.
                warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
                records, diverged[:, bi, si] = train_seed(study, seed, bi, steps)
            for ti, rec in enumerate(records):
                for name, v in rec.items():
                    if isinstance(v, dict):
                        for layer, x in v.items():
                            grid.setdefault(name, {}).setdefault(layer, np.full((L, K, S, T), np.nan))
                            grid[name][layer][:, bi, si, ti] = x.numpy()
                    else:
                        grid.setdefault(name, np.full((L, K, S, T), np.nan))[:, bi, si, ti] = v.numpy()
    dims = ("lr", "batch_size", "seed", "step")
    data: dict = {}
    coords: dict = {
        "lr": np.array(t.lr, dtype=np.float64),
        "batch_size": np.array(t.batch_size, dtype=np.int32),
        "seed": np.array(seeds, dtype=np.int32),
        "step": np.array(steps, dtype=np.int32),
    }
    for name, v in grid.items():
        if isinstance(v, dict):
            dim = LAYER_DIMS[name]
            coords[dim] = list(v)
            data[name] = ((*dims, dim), np.stack(list(v.values()), axis=-1))
        else:
            data[name] = (dims, v)
    data["diverged"] = (dims[:3], diverged >= 0)
    data["diverged_step"] = (dims[:3], diverged)
    ds = xr.Dataset(data, coords=coords)
    ds.attrs = {
        "kind": "study",
        "config": json.dumps(study.stamp(), sort_keys=True),
        "grad_var_definition": (
            "mean over parameter entries of the unbiased variance (1/(n-1)) of the per-sample "
            "gradients over the probe set (not divided by |B|)"
        ),
        "activation_rate_method": "fraction of positive nn.ReLU outputs over probe samples and units",
    }
    return ds
