"""Deep ensembles: the training step of the CNN and the MLP, and whole presets.

Run by hand (not a test)::

    python benchmarks/bench_deep_ensemble.py [--steps 60] [--seeds 8]
    python benchmarks/bench_deep_ensemble.py --preset fig2-middle [--seeds 2] [--steps 3000]

Without ``--preset``, one run prints for two architectures the training step alone
(no instruments), 3 learning rates × ``--seeds`` replicas, in one process on torch's
default threads, as replica-steps/s:

* CNN: fig2-bottom's (5 convolutions of 10 channels, 5x5 kernels, then Linear) on
  8x8 digits-sized inputs padded to keep their size, 10 classes, |B| = 32;
* MLP: fig2-middle's (6 Linear layers of width 100) on 100 Gaussian inputs, |B| = 1, BCE;

each by three paths on the same minibatches: a per-run loop (an ``nn.Module`` and
``optim.SGD`` per run, one run after the other), plain ``torch.func`` (``vmap`` of
``grad`` over ``functional_call`` on the stacked parameters, then one foreach update)
and :class:`thermosgd.deep.ensemble.Ensemble`'s step; with the ratios of the ensemble
to the other two.

With ``--preset``: the wall time and peak memory of ``thermosgd reproduce PRESET`` (the
study path, instruments, figures and report included) in a fresh process, at the
preset's default size or the ``--seeds``/``--steps`` given.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _architectures(seeds: int):
    """(name, models, inputs (E, B, ...) per step, targets, loss) of the two step benchmarks."""
    import torch
    from torch import nn

    from thermosgd.deep.models import cnn, mlp

    E = len(LRS) * seeds
    gen = torch.Generator().manual_seed(0)
    cnn_x = torch.rand(E, 32, 1, 8, 8, generator=gen)
    cnn_y = torch.randint(0, 10, (E, 32), generator=gen)
    mlp_x = torch.randn(E, 1, 100, generator=gen)
    mlp_y = torch.randint(0, 2, (E, 1, 1), generator=gen).float()
    return [
        ("CNN", [cnn(1, 8, 10, seed=e, padding=2) for e in range(E)], cnn_x, cnn_y, nn.CrossEntropyLoss()),
        ("MLP", [mlp(100, 100, 6, 1, seed=e) for e in range(E)], mlp_x, mlp_y, nn.BCEWithLogitsLoss()),
    ]


LRS = (0.025, 0.05, 0.1)


def _per_run_loop(models, x, y, loss_fn, steps: int) -> float:
    """Seconds for ``steps`` SGD steps of each model, one run after the other."""
    import copy
    import time

    import torch

    lrs = [LRS[e % len(LRS)] for e in range(len(models))]
    t0 = time.perf_counter()
    for e, model in enumerate(models):
        model = copy.deepcopy(model)
        opt = torch.optim.SGD(model.parameters(), lr=lrs[e])
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[e]), y[e]).backward()
            opt.step()
    return time.perf_counter() - t0


def _plain_vmap(models, x, y, loss_fn, steps: int) -> float:
    """Seconds for ``steps`` steps of all models as ``vmap(grad(functional_call))`` plus one foreach update."""
    import copy
    import time

    import torch
    from torch.func import functional_call, grad, stack_module_state, vmap

    params, buffers = stack_module_state([copy.deepcopy(m) for m in models])
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    lr = torch.tensor([LRS[e % len(LRS)] for e in range(len(models))])

    def one(p, b, xe, ye):
        return loss_fn(functional_call(base, (p, b), (xe,)), ye)

    step = vmap(grad(one))
    names = list(params)
    scales = [lr.view(-1, *[1] * (params[k].dim() - 1)) for k in names]
    t0 = time.perf_counter()
    for _ in range(steps):
        g = step(params, buffers, x, y)
        torch._foreach_addcmul_([params[k] for k in names], [g[k] for k in names], scales, value=-1.0)
    return time.perf_counter() - t0


def _ensemble(models, x, y, loss_fn, steps: int) -> float:
    """Seconds for ``steps`` steps of :class:`Ensemble` (with the thread choice ``train_ensemble`` makes)."""
    import copy
    import time

    import torch

    from thermosgd.deep.ensemble import Ensemble
    from thermosgd.threads import threads_for

    ens = Ensemble([copy.deepcopy(m) for m in models])
    lr = torch.tensor([LRS[e % len(LRS)] for e in range(len(models))])
    alive = torch.ones(len(models), dtype=torch.bool)
    work = len(models) * x.shape[1] * sum(p[0].numel() for p in ens.params.values())
    with threads_for(work):
        t0 = time.perf_counter()
        for _ in range(steps):
            ens.step(loss_fn, x, y, lr, alive)
        return time.perf_counter() - t0


def step_table(seeds: int, steps: int) -> None:
    """Print the training-step comparison (module docstring) for the CNN and the MLP."""
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    print(f"{len(LRS)} learning rates × {seeds} seeds, {steps} steps; replica-steps/s")
    for name, models, x, y, loss_fn in _architectures(seeds):
        E = len(models)
        rates = {}
        for label, fn in (("per-run loop", _per_run_loop), ("torch.func vmap", _plain_vmap), ("ensemble", _ensemble)):
            fn(models, x, y, loss_fn, 3)  # warm-up: first-call allocations, vmap's tracing
            rates[label] = E * steps / fn(models, x, y, loss_fn, steps)
        row = "   ".join(f"{k} {v:9,.0f}" for k, v in rates.items())
        ens = rates["ensemble"]
        print(
            f"  {name}: {row}   ensemble / loop {ens / rates['per-run loop']:5.1f}x"
            f"   ensemble / vmap {ens / rates['torch.func vmap']:5.1f}x",
            flush=True,
        )
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None, help="whole-preset comparison (e.g. fig2-middle)")
    ap.add_argument("--seeds", type=int, default=0, help="default: the preset's (steps table: 8)")
    ap.add_argument("--steps", type=int, default=0, help="default: the preset's (steps table: 60)")
    args = ap.parse_args(argv)
    from thermosgd.threads import passive_waits

    passive_waits()  # as the console script does, before torch loads (here and in the subprocesses)
    if args.preset is None:
        step_table(args.seeds or 8, args.steps or 60)
        return
    print(f"{args.preset}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        size = [f for k, v in (("--seeds", args.seeds), ("--steps", args.steps)) if v for f in (k, str(v))]
        cmd = [sys.executable, "-m", "thermosgd", "reproduce", args.preset, "--out", str(Path(tmp) / "run")]
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, *size, "--no-progress"], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(proc.stderr)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**10
        print(f"whole preset (study path, figures and report included): {seconds:.1f} s, peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
