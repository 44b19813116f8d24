"""The test twin of the ensemble: plain SGD on any ``nn.Module``, one run after another.

Not a product path (the deep presets are studies, :mod:`thermosgd.studies`): this is
the sequential reference loop (``torch.optim.SGD``, one run at a time) that the tests of
:class:`thermosgd.deep.ensemble.Ensemble` compare its batched step and instruments
against, and the small ensemble loop that drives ``Ensemble.step`` the same way.

One run = one (lr, batch_size, seed); a sweep trains every run, merged into the
project's results format (dims ``lr, batch_size, seed, step``). Every random draw comes
from generators seeded by the run's seed: the same seed gives the same initial
weights, training set and minibatch sequence for every lr and batch size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import xarray as xr
from torch import nn

from thermosgd.errors import UsageError
from thermosgd.instruments.recorder import Instrument, Recorder, Schedule, combine_runs
from thermosgd.progress import bar as progress_bar
from thermosgd.seeds import derive_seed
from thermosgd.threads import threads_for

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainSet:
    """A finite training set, kept in its stored dtype and scaled per minibatch.

    Attributes:
        inputs: ``(n, *input_shape)``, any dtype (uint8 images stay uint8 in memory).
        targets: ``(n, *target_shape)``.
        scale: float inputs are ``inputs.float() * scale``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    scale: float = 1.0

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float inputs ``(len(index), *input_shape)`` and their targets."""
        return self.inputs[index].to(torch.float32) * self.scale, self.targets[index]


@dataclass
class Run:
    """What one run needs, built fresh from its seed by the sweep's ``setup`` callable.

    Attributes:
        model: freshly initialized network.
        data: its training set.
        instruments: variable name -> ``fn(model) -> result``, recorded on the schedule.
    """

    model: nn.Module
    data: TrainSet
    instruments: Mapping[str, Instrument]


def stream_seed(seed: int, stream: int) -> int:
    """Independent 63-bit seed for random stream ``stream`` of run seed ``seed``."""
    return derive_seed(seed, stream)  # stream: an id of thermosgd.seeds.STREAMS["deep.*"] (+ index)


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def train_run(
    run: Run,
    loss_fn: LossFn,
    *,
    lr: float,
    batch_size: int,
    steps: int,
    seed: int,
    schedule: Schedule,
    record_steps: Sequence[int],
    bar=None,
    device: str | torch.device = "cpu",
) -> xr.Dataset:
    """Train ``run.model`` with plain SGD and return its recorded instruments.

    Minibatches are drawn uniformly with replacement from ``run.data``. A run whose
    loss or weights become NaN/inf stops; it is marked ``diverged`` and its later
    values are NaN.

    Args:
        run: model, data and instruments.
        loss_fn: ``loss_fn(model(x), y) -> scalar`` (mean over the minibatch).
        lr: learning rate eta.
        batch_size: minibatch size |B|.
        steps: number of SGD updates.
        seed: run seed (minibatch draws use its stream 1).
        schedule: ``step -> bool``, when to record (step s = after s updates).
        record_steps: all steps the schedule selects in ``0..steps`` (the dataset's step axis).
        bar: progress bar advanced by one per update.
        device: where the model is trained (it is moved there); minibatch indices
            are drawn on the CPU and each minibatch moved, so the draws are the
            same on every device. The instruments must already expect ``device``.

    Returns:
        Dataset with dims ``(lr, batch_size, seed, step)``, each of the first three of size 1.
    """
    if batch_size < 1 or batch_size > len(run.data):
        raise UsageError(f"batch size {batch_size} must be between 1 and the training set size {len(run.data)}")
    recorder = Recorder(run.instruments, schedule)
    run.model.to(device)  # in place for modules; a no-op on the CPU
    gen = torch.Generator().manual_seed(stream_seed(seed, 1))
    opt = torch.optim.SGD(run.model.parameters(), lr=lr)
    diverged = False
    for step in range(steps + 1):
        recorder(step, run.model)
        if step == steps:
            break
        x, y = run.data.batch(torch.randint(len(run.data), (batch_size,), generator=gen))
        x, y = x.to(device), y.to(device)
        loss = loss_fn(run.model(x), y)
        if not torch.isfinite(loss):
            diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if bar is not None:
            bar.update(1)
    # Non-finite parameters give a non-finite loss at the next step, so only the
    # final state needs a look at the parameters themselves.
    if not diverged and not _finite(run.model):
        diverged = True
    if diverged and bar is not None:
        bar.update(steps - step)
    return recorder.to_dataset(lr=lr, batch_size=batch_size, seed=seed, steps=record_steps, diverged=diverged)


def train_sweep(
    setup: Callable[[int], Run],
    loss_fn: LossFn,
    *,
    lrs: Sequence[float],
    batch_sizes: Sequence[int],
    seeds: Sequence[int],
    steps: int,
    schedule: Schedule,
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    desc: str = "train",
    device: str | torch.device = "cpu",
    ensemble: bool = True,
) -> xr.Dataset:
    """Every (lr, batch_size, seed) run, merged into one Dataset.

    Args:
        setup: ``seed -> Run``; called once per run, so each run starts from fresh
            weights (identical for equal seeds).
        loss_fn: training loss, ``loss_fn(outputs, targets) -> scalar``.
        lrs, batch_sizes, seeds: the grid.
        steps: SGD updates per run.
        schedule: ``step -> bool``, when instruments run.
        config: stored as JSON in ``attrs["config"]``.
        progress: show progress over all updates of all runs (see thermosgd.progress).
        device: where each run trains (see :func:`train_run`).
        ensemble: train all seeds × lrs of a batch size at once (default; CPU only for now —
            on another device the runs go one after another);
            False: one run after another with ``torch.optim.SGD`` (the reference).

    Returns:
        Dataset with dims ``(lr, batch_size, seed, step)`` plus the ``diverged`` flags,
        ``attrs["kind"] == "deep"``.
    """
    record_steps = [s for s in range(steps + 1) if schedule(s)]
    grid = list(itertools.product(lrs, batch_sizes, seeds))
    runs = []
    with progress_bar(steps * len(grid), desc=desc, unit="step", enabled=progress) as bar:
        if ensemble and torch.device(device).type == "cpu":
            for bsz in batch_sizes:
                runs += train_ensemble(
                    setup,
                    loss_fn,
                    lrs=lrs,
                    batch_size=int(bsz),
                    seeds=seeds,
                    steps=steps,
                    schedule=schedule,
                    record_steps=record_steps,
                    bar=bar,
                )
        else:
            for lr, bsz, seed in grid:
                runs.append(
                    train_run(
                        setup(seed),
                        loss_fn,
                        lr=float(lr),
                        batch_size=int(bsz),
                        steps=steps,
                        seed=int(seed),
                        schedule=schedule,
                        record_steps=record_steps,
                        bar=bar,
                        device=device,
                    )
                )
    return combine_runs(runs, config=config, kind="deep")


def train_ensemble(
    setup: Callable[[int], Run],
    loss_fn: LossFn,
    *,
    lrs: Sequence[float],
    batch_size: int,
    seeds: Sequence[int],
    steps: int,
    schedule: Schedule,
    record_steps: Sequence[int],
    bar=None,
    batched: bool = True,
) -> list[xr.Dataset]:
    """Train the runs ``lrs × seeds`` at one batch size as one ensemble.

    Each replica sees what :func:`train_run` would give it: its seed's initial
    weights and training set (``setup(seed)``), its own minibatch stream (stream 1
    of its seed, so replicas of one seed draw the same minibatches), its learning
    rate; a replica whose loss turns NaN/inf stops there and is marked diverged.

    Args:
        setup, loss_fn, lrs, seeds, steps, schedule, record_steps, bar: as in
            :func:`train_sweep` / :func:`train_run`.
        batch_size: |B|, shared by the ensemble.
        batched: hand-batched layers when the architecture allows (False: vmap).

    Returns:
        One single-run Dataset per replica (as :func:`train_run` returns).
    """
    from thermosgd.deep.ensemble import Ensemble

    grid = [(float(lr), int(seed)) for lr in lrs for seed in seeds]
    runs = [setup(seed) for _, seed in grid]
    for run in runs:
        if batch_size < 1 or batch_size > len(run.data):
            raise UsageError(f"batch size {batch_size} must be between 1 and the training set size {len(run.data)}")
    ens = Ensemble([run.model for run in runs], batched=batched)
    work = len(grid) * batch_size * sum(p[0].numel() for p in ens.params.values())
    with threads_for(work):
        return _train_ensemble(
            ens,
            runs,
            grid,
            loss_fn,
            batch_size=batch_size,
            seeds=seeds,
            steps=steps,
            schedule=schedule,
            record_steps=record_steps,
            bar=bar,
        )


def _record_ensemble(ens, runs, step, alive, recorders) -> None:
    """Every instrument of every live replica at ``step``, on that replica's own module
    (its ``Run.model``, into which the replica's parameters are copied first)."""
    for e in range(ens.size):
        if bool(alive[e]):
            model = ens.load_into(runs[e].model, e)
            recorders[e].record(step, {name: tool(model) for name, tool in runs[e].instruments.items()})


def _train_ensemble(ens, runs, grid, loss_fn, *, batch_size, seeds, steps, schedule, record_steps, bar):
    """The body of :func:`train_ensemble`."""
    recorders = [Recorder(run.instruments, schedule) for run in runs]
    lr = torch.tensor([g[0] for g in grid], dtype=next(iter(ens.params.values())).dtype)
    seed_list = list(dict.fromkeys(int(s) for s in seeds))
    first = {seed: grid.index((grid[0][0], seed)) for seed in seed_list}  # a replica of each seed
    which = torch.tensor([seed_list.index(seed) for _, seed in grid])
    gens = {seed: torch.Generator().manual_seed(stream_seed(seed, 1)) for seed in seed_list}
    alive = torch.ones(len(grid), dtype=torch.bool)
    # Minibatches are drawn for a chunk of steps at once (torch.randint gives the same
    # numbers in one call as in many), at most ~64 MiB of inputs per chunk.
    sample = runs[0].data.batch(torch.zeros(1, dtype=torch.long))[0].numel()
    chunk = max(1, min(256, (1 << 24) // max(1, len(grid) * batch_size * sample)))
    for step in range(steps + 1):
        if schedule(step):
            _record_ensemble(ens, runs, step, alive, recorders)
        if step == steps:
            break
        if step % chunk == 0:
            n = min(chunk, steps - step)
            xs, ys = [], []
            for seed in seed_list:  # every run of one seed draws the same minibatches
                data = runs[first[seed]].data
                x, y = data.batch(torch.randint(len(data), (n * batch_size,), generator=gens[seed]))
                xs.append(x.reshape(n, batch_size, *x.shape[1:]))
                ys.append(y.reshape(n, batch_size, *y.shape[1:]))
            xc, yc = torch.stack(xs, 1)[:, which], torch.stack(ys, 1)[:, which]  # (n, E, B, ...)
        _, alive = ens.step(loss_fn, xc[step % chunk], yc[step % chunk], lr, alive)
        if not bool(alive.any()):
            if bar is not None:
                bar.update(len(grid) * (steps - step))
            break
        if bar is not None:
            bar.update(len(grid))
    # Non-finite parameters give a non-finite loss at the next step, so only the
    # final state needs a look at the parameters themselves.
    diverged = ~(alive & ens.finite())
    return [
        recorders[e].to_dataset(
            lr=lr_, batch_size=batch_size, seed=seed, steps=record_steps, diverged=bool(diverged[e])
        )
        for e, (lr_, seed) in enumerate(grid)
    ]
