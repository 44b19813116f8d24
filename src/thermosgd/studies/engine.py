"""Train a study's seeds: one ensemble of a unit's seeds × learning rates per batch size, one loop.

A seed's model comes from ``factory(seed=s)`` once and is copied to every
learning rate; every learning rate of a (seed, batch size) sees the same samples
and noise draws, from that seed's own generators. Every kernel of a step computes
each replica apart from the others (batched GEMMs, grouped convolutions,
per-replica reductions; tested bit for bit against ensembles of other seeds), so a
replica's numbers depend on its seed, batch size and the config's learning rates
only, never on the seeds beside it, the unit layout or the executor: a resumed or
redistributed study is bit-identical to an uninterrupted one. Training the seeds
together pays the per-step Python and dispatch cost once per step instead of once
per seed; plain SGD ("sgd" noise) on a Linear/ReLU stack takes the ensemble's
hand-written in-place step, the other noise models its weighted step.

On a GPU (``[train] device``) the models are built and every random number is
drawn on the CPU exactly as on a CPU run; then the ensemble's parameters, the
probe sets and each step's samples and noise are moved to the device, which
comes from one place (:func:`device`). Records come back to the CPU.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from torch import nn

from thermosgd.checks import torch_device
from thermosgd.deep.ensemble import Ensemble, batched_layers
from thermosgd.deep.noise import frozen_noise, step_weights
from thermosgd.errors import UsageError
from thermosgd.instruments.activations import replica_activation_rates
from thermosgd.instruments.gradient_variance import (
    replica_gradient_variance,
    replica_gradient_variance_batched,
    replica_per_sample_gradients,
)
from thermosgd.instruments.hessian import _mlp_layers, hessian_trace, stacked_trace_bound
from thermosgd.instruments.norms import replica_weight_norms
from thermosgd.instruments.schedule import log_spaced
from thermosgd.precision import full_float32
from thermosgd.studies import model as models
from thermosgd.studies.data import HESSIAN, NOISE, NOISE_INIT, Samples, generator
from thermosgd.studies.spec import Study
from thermosgd.threads import threads_for

GRAD_ELEMENTS = 1 << 25  # per-sample gradient entries held at once (replicas are chunked to fit)
ENSEMBLE_ELEMENTS = 1 << 24  # parameter entries of one ensemble (more seeds train as several ensembles)
GUARD = 64  # elements past the last replica's loss: more than two AVX-512 vectors of float32
#: Layers whose batched kernels keep each replica's bits whatever the ensemble (bmm, grouped
#: convolution, ReLU, reshapes): models of these alone train all of a unit's seeds as one ensemble.
SHARED_LAYERS = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten)


def device(study: Study) -> torch.device:
    """Where ``study`` trains: ``[train] device``, refused in one line when this machine lacks that GPU."""
    try:
        return torch_device(study.cfg.train.device, "[train] device")
    except UsageError as exc:
        raise UsageError(str(exc), param="device") from None


def _on(samples: Samples, dev: torch.device) -> Samples:
    """``samples`` on ``dev`` (the same tensors on the CPU)."""
    return Samples(samples.x.to(dev), samples.y.to(dev))


def _cpu(values: dict) -> dict:
    """:func:`measure`'s values on the CPU."""
    return {k: ({n: x.cpu() for n, x in v.items()} if isinstance(v, dict) else v.cpu()) for k, v in values.items()}


def record_steps(study: Study) -> list[int]:
    """The recorded steps: ``[record] steps``, or ``points`` log-spaced steps from 0 to ``[train] steps``."""
    r, steps = study.cfg.record, study.cfg.train.steps
    return list(r.steps) if r.steps else log_spaced(steps, r.points).steps(steps)


def _stack(parts: list[Samples], L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each seed's samples once per learning rate, seed after seed: ``(S·L, n, ...)`` inputs and targets.

    Always a fresh contiguous copy, whatever S: a replica's kernels then see the same
    memory layout alone in its ensemble as among other seeds (a stride-0 view of one
    seed's samples could take another kernel path, with other bits).
    """
    x = torch.cat([s.x.unsqueeze(0).expand(L, *s.x.shape) for s in parts])
    y = torch.cat([s.y.unsqueeze(0).expand(L, *s.y.shape) for s in parts])
    return x, y


def _one_sample(loss: str):
    each = models.sample_losses(loss)
    return lambda out, y: each(out.unsqueeze(0), y.unsqueeze(0)).mean()


def measure(study: Study, ens: Ensemble, probe: Samples, test: Samples | None, hess_gen) -> dict:
    """Every instrument of every replica of one seed's ensemble on the seed's probe (and held-out) set.

    Returns:
        name -> ``(E,)`` float64 for the overall variables, and ``name_layer`` -> {layer: ``(E,)``},
        on the CPU whatever the ensemble's device.
    """
    loss, E = study.cfg.train.loss, ens.size
    out: dict = {}
    for prefix, samples in (("", probe), ("test_", test)):
        if samples is None:
            continue
        x, y = _stack([samples], E)
        with torch.no_grad():
            outputs = ens.forward(x)
            out[prefix + "loss"] = models.sample_losses(loss)(outputs, y).to(torch.float64).mean(1)
            right = models.correct(loss, outputs, y)
        if right is not None:
            out[prefix + "accuracy"] = right.mean(1)
    x, y = _stack([probe], E)
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
    return _cpu(out)


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
        return replica_gradient_variance_batched(ens, loss_fn, x, y)
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


def _frozen_variance(study: Study, ens: Ensemble, seed: int, bi: int, first: int) -> dict[str, torch.Tensor]:
    """σ₀² of ``seed`` (replicas ``first`` on): each entry's unbiased per-sample-gradient variance at
    initialization on G samples, ``(L, *shape)``."""
    s = study.data.stream(seed, bi, NOISE_INIT).next(study.cfg.train.gd_batch)
    s = _on(s, next(iter(ens.params.values())).device)
    one = {k: v[first : first + 1] for k, v in ens.params.items()}
    grads = replica_per_sample_gradients(
        ens.template,
        one,
        {k: v[first : first + 1] for k, v in ens.buffers.items()},
        _one_sample(study.cfg.train.loss),
        *_stack([s], 1),
    )
    var = {k: g[0].var(dim=0, correction=1) for k, g in grads.items()}
    return {k: v.unsqueeze(0).expand(len(study.cfg.train.lr), *v.shape) for k, v in var.items()}


@dataclass(frozen=True)
class _Seed:
    """One seed of an ensemble: its probe and held-out sets and its Hessian-probe generator."""

    probe: Samples
    test: Samples | None
    hess_gen: torch.Generator


def _build(study: Study, seeds: tuple[int, ...], bi: int, dev: torch.device) -> tuple[Ensemble, list[_Seed]]:
    """One ensemble of every seed × learning rate (replica ``e``: seed ``seeds[e // L]``) on ``dev``,
    each seed's model from the factory (built and checked on the CPU, so its initial weights
    are the same bits on every device, then copied to ``dev``), and what each seed is measured on."""
    t, dtype = study.cfg.train, study.data.dtype
    replicas, parts = [], []
    for seed in seeds:
        model = models.build(study.factory, t.seed, seed, dtype)
        models.check_layers(model)
        probe = study.data.probe(seed)
        models.check_independent(model, t.loss, probe.x, probe.y)
        replicas += [copy.deepcopy(model).to(dev) for _ in t.lr]
        test = study.data.held_out(seed)
        hess = generator(t.seed, seed, HESSIAN, bi)  # on the CPU: hessian_trace moves its probes
        parts.append(_Seed(_on(probe, dev), None if test is None else _on(test, dev), hess))
    return Ensemble(replicas), parts


def _replicas(ens: Ensemble, first: int, modules: list[nn.Module]) -> Ensemble:
    """A copy of replicas ``first`` … ``first + len(modules) - 1`` as an ensemble of their own
    (``modules``: as many modules of the architecture to copy them through).

    Measurements run on each seed's own ensemble, the same in every layout: the
    instruments' elementwise kernels (exp, log1p, …) round the last elements of a
    tensor on a scalar path and the rest on a vector path, so on the whole ensemble a
    replica's bits would depend on its place in it.
    """
    return Ensemble([ens.load_into(m, first + i) for i, m in enumerate(modules)])


def _finite(ens: Ensemble) -> torch.Tensor:
    """``ens.finite()`` for the price of one read of the parameters in the usual case.

    A sum over a replica's entries is finite whenever they all are, barring overflow;
    only when some sum is not (divergence, or overflow) is every entry checked.
    """
    with torch.no_grad():
        sums = torch.stack([p.reshape(ens.size, -1).sum(1) for p in ens.params.values()], 1)
        if bool(torch.isfinite(sums).all()):
            return torch.ones(ens.size, dtype=torch.bool, device=sums.device)
    return ens.finite()


def _guarded(each):
    """``each`` (per-sample losses) computed with ``GUARD`` elements of padding after the replicas.

    An elementwise kernel on the CPU computes a tensor's last few elements (fewer than
    two vector widths) on a scalar path that rounds exp, log1p and the like differently
    from its vector path; with the padding no replica's loss is ever among them, so its
    bits do not depend on how many replicas follow it.
    """

    def losses(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pad = -(-GUARD // max(1, y.shape[1]))  # the per-sample losses, (E, n), are the smallest tensor
        out = torch.cat([out, out.new_zeros(pad, *out.shape[1:])])
        y = torch.cat([y, y[:1].expand(pad, *y.shape[1:])])
        return each(out, y)[:-pad]

    return losses


def _mean_loss(each):
    """One replica's mean per-sample loss, for ``Ensemble.step`` (which vmaps it over the replicas).

    Each replica's samples are followed by ``GUARD`` padding samples, so the scalar tail
    of an elementwise kernel (see :func:`_guarded`) falls in the last replica's padding.
    """

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = out.shape[0]
        out = torch.cat([out, out.new_zeros(GUARD, *out.shape[1:])])
        y = torch.cat([y, y[:1].expand(GUARD, *y.shape[1:])])
        return each(out.unsqueeze(0), y.unsqueeze(0))[0, :n].mean()

    return loss


class _Noise:
    """Each step's per-sample weights and "frozen" noise, every seed from its own generator.

    The normals and the weights are computed on the CPU (the same bits on every device)
    and moved to ``dev``; the "frozen" noise is σ₀ (on ``dev``) times moved normals.
    """

    def __init__(self, study: Study, ens: Ensemble, seeds: tuple[int, ...], bi: int, n: int, dev: torch.device):
        t = study.cfg.train
        self.noise, self.n, self.bs, self.dtype, self.dev = t.noise, n, t.batch_size[bi], study.data.dtype, dev
        self.lr = torch.tensor(t.lr, dtype=self.dtype)
        self.lr_dev = self.lr.to(dev)
        self.lr_all = self.lr.repeat(len(seeds)).to(dev)
        self.gens = [generator(t.seed, seed, NOISE, bi) for seed in seeds]
        L = len(t.lr)
        self.sigma2 = (
            [_frozen_variance(study, ens, seed, bi, si * L) for si, seed in enumerate(seeds)]
            if t.noise == "frozen"
            else None
        )

    def draw(self) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """``(E, n)`` weights and the ``(E, *shape)`` extra step per parameter (None unless "frozen")."""
        ws, extras = [], []
        for si, gen in enumerate(self.gens):
            z = torch.randn(self.n, generator=gen, dtype=self.dtype) if self.noise == "gaussian" else None
            ws.append(step_weights(self.noise, self.lr, self.bs, self.n, z))
            if self.sigma2 is not None:
                s2 = self.sigma2[si]
                draws = {
                    k: torch.randn(v.shape[1:], generator=gen, dtype=self.dtype).to(self.dev) for k, v in s2.items()
                }
                extras.append(frozen_noise(s2, self.lr_dev, self.bs, draws))
        extra = {k: torch.cat([e[k] for e in extras]) for k in extras[0]} if extras else None
        return torch.cat(ws).to(self.dev), extra


def train_seeds(study: Study, seeds: tuple[int, ...], bi: int, steps: list[int]) -> tuple[list[dict], np.ndarray]:
    """Train every learning rate of ``seeds`` at the ``bi``-th batch size as one ensemble; measure at ``steps``.

    Replica ``e`` is learning rate ``e % L`` of seed ``seeds[e // L]``; its samples, noise
    and probe draws come from its seed's generators alone, so its numbers do not depend
    on which seeds share the ensemble (tested bit for bit).

    Returns:
        Per recorded step, :func:`measure`'s values (NaN for replicas that diverged
        earlier), and ``(S·L,)`` the step at which each replica diverged (-1: never).
    """
    with full_float32():  # the same float32 arithmetic on every device
        return _train_seeds(study, seeds, bi, steps)


def _train_seeds(study: Study, seeds: tuple[int, ...], bi: int, steps: list[int]) -> tuple[list[dict], np.ndarray]:
    t, dev = study.cfg.train, device(study)
    ens, parts = _build(study, seeds, bi, dev)
    E, L = ens.size, len(t.lr)
    alive, diverged = torch.ones(E, dtype=torch.bool, device=dev), np.full(E, -1, dtype=np.int64)
    streams = [study.data.stream(seed, bi) for seed in seeds]
    each, n = _guarded(models.sample_losses(t.loss)), t.batch_size[bi] if t.noise == "sgd" else t.gd_batch
    noise = _Noise(study, ens, seeds, bi, n, dev)
    plain, mean = t.noise == "sgd" and ens.by_hand, _mean_loss(models.sample_losses(t.loss))
    modules = [copy.deepcopy(ens.template) for _ in range(L)]
    records: list[dict] = []
    wanted = set(steps)
    for step in range(t.steps + 1):
        if step in wanted:
            values = [
                measure(study, _replicas(ens, i * L, modules), p.probe, p.test, p.hess_gen) for i, p in enumerate(parts)
            ]
            records.append(_mask(_join(values), alive.cpu()))
        if step == t.steps:
            break
        x, y = _stack([_on(s.next(n), dev) for s in streams], L)  # drawn on the CPU, moved per seed
        if plain:  # SGD on a Linear/ReLU stack: the ensemble's hand-written backward, updates in place
            _, updated = ens.step(mean, x, y, noise.lr_all, alive)
        else:
            w, extra = noise.draw()
            _, updated = ens.weighted_step(each, x, y, w, alive, extra)
        newly = alive & ~(updated & _finite(ens))
        diverged[newly.cpu().numpy()] = step
        alive &= ~newly
    return records, diverged


def _join(values: list[dict]) -> dict:
    """:func:`measure`'s values of consecutive seeds, replica after replica."""
    first = values[0]
    return {
        k: {n: torch.cat([v[k][n] for v in values]) for n in x}
        if isinstance(x, dict)
        else torch.cat([v[k] for v in values])
        for k, x in first.items()
    }


def train_seed(study: Study, seed: int, bi: int, steps: list[int]) -> tuple[list[dict], np.ndarray]:
    """:func:`train_seeds` of one seed: ``(L,)`` divergence steps."""
    return train_seeds(study, (seed,), bi, steps)


def _mask(values: dict, alive: torch.Tensor) -> dict:
    """NaN for the replicas that have diverged."""
    nan = torch.tensor(float("nan"), dtype=torch.float64)

    def m(v: torch.Tensor) -> torch.Tensor:
        return torch.where(alive, v.to(torch.float64), nan)

    return {k: ({n: m(x) for n, x in v.items()} if isinstance(v, dict) else m(v)) for k, v in values.items()}


def ensemble_seeds(study: Study, seeds: tuple[int, ...]) -> list[tuple[int, ...]]:
    """``seeds`` cut into consecutive groups trained as one ensemble each.

    A group's ensemble holds at most ``ENSEMBLE_ELEMENTS`` parameters. Only models made
    of :data:`SHARED_LAYERS` share ensembles across seeds: their kernels compute each
    replica apart (tested bit for bit); any other layer (tanh, GELU, LayerNorm, …) may
    round a replica by its place in the ensemble, so each seed trains alone.
    """
    t = study.cfg.train
    model = models.build(study.factory, t.seed, seeds[0], study.data.dtype)
    layers = batched_layers(model)
    if layers is None or any(type(layer) not in SHARED_LAYERS for _, layer in layers):
        return [(seed,) for seed in seeds]
    size = sum(p.numel() for p in model.parameters())
    k = max(1, ENSEMBLE_ELEMENTS // (len(t.lr) * size))
    return [seeds[i : i + k] for i in range(0, len(seeds), k)]


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
    start = 0
    for group in ensemble_seeds(study, seeds):
        where = slice(start, start + len(group))
        start += len(group)
        for bi in range(K):
            # One intra-op thread always (threads_for(0)): a replica's bits must not depend on where
            # its unit runs, and on small models threads cost more than they save.
            with threads_for(0), warnings.catch_warnings():
                # vmap's fallback for ops without a batching rule (attention on the CPU) is slower, not wrong.
                warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
                records, div = train_seeds(study, group, bi, steps)
            diverged[:, bi, where] = div.reshape(len(group), L).T  # replicas are seed-major
            for ti, rec in enumerate(records):
                for name, v in rec.items():
                    if isinstance(v, dict):
                        for layer, x in v.items():
                            grid.setdefault(name, {}).setdefault(layer, np.full((L, K, S, T), np.nan))
                            grid[name][layer][:, bi, where, ti] = x.numpy().reshape(len(group), L).T
                    else:
                        cells = grid.setdefault(name, np.full((L, K, S, T), np.nan))
                        cells[:, bi, where, ti] = v.numpy().reshape(len(group), L).T
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
