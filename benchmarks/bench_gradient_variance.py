"""Per-sample gradient variance: thermosgd vs a Python loop vs BackPACK.

thermosgd's default path (one batched backward pass with hooks: closed form for
Linear, one bmm per kernel offset for Conv2d) and its generic torch.func path
(vmap over grad, ``fast=False``) are both timed.

Workloads: the 6-layer fully connected net of Fig. 2 (middle) and the 6-layer CNN of
Fig. 2 (bottom) on a batch of 128. BackPACK's ``Variance`` runs only when
``backpack-for-pytorch`` is installed (it is optional). Targets: >= 5x the loop and no
slower than BackPACK.

Times are the best of several repeats (robust to other load on a shared machine).

Run:  python benchmarks/bench_gradient_variance.py [--batch 128] [--repeats 7]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn

from thermosgd.deep.models import cnn, mlp
from thermosgd.instruments import gradient_variance


def loop_variance(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> float:
    """Baseline: one backward pass per sample, then the unbiased variance."""
    grads = []
    params = [p for p in model.parameters() if p.requires_grad]
    for i in range(len(x)):
        g = torch.autograd.grad(loss_fn(model(x[i : i + 1]), y[i : i + 1]), params)
        grads.append(torch.cat([t.flatten() for t in g]))
    return float(torch.stack(grads).var(dim=0, correction=1).mean())


def backpack_variance(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> float:
    """BackPACK's Variance extension (1/N, gradients of the mean loss), averaged over entries."""
    from backpack import backpack
    from backpack.extensions import Variance

    model.zero_grad(set_to_none=True)
    with backpack(Variance()):
        loss_fn(model(x), y).backward()
    params = list(model.parameters())
    return float(sum(p.variance.sum() for p in params) / sum(p.numel() for p in params))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)  # best of: the least disturbed by other load on a shared machine


def workloads(batch: int):
    g = torch.Generator().manual_seed(0)
    fc = mlp(100, 100, 6, 1, seed=0)
    yield (
        "6-layer FC (width 100, Gaussian x)",
        fc,
        nn.BCEWithLogitsLoss(),
        torch.randn(batch, 100, generator=g),
        torch.randint(0, 2, (batch, 1), generator=g).float(),
    )
    conv = cnn(1, 28, 10, seed=0)
    yield (
        "6-layer CNN (10ch 5x5, 28x28)",
        conv,
        nn.CrossEntropyLoss(),
        torch.rand(batch, 1, 28, 28, generator=g),
        torch.randint(0, 10, (batch,), generator=g),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import backpack
    except ImportError:
        backpack = None
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"best of {args.repeats}; BackPACK {'installed' if backpack else 'not installed (skipped)'}"
    )
    print(
        f"{'workload':34s} {'thermosgd':>10s} {'torch.func':>10s} {'loop':>10s} {'BackPACK':>10s} "
        f"{'loop/ours':>9s} {'BP/ours':>8s}"
    )
    for name, model, loss_fn, x, y in workloads(args.batch):
        t_ours = timed(lambda: gradient_variance(model, loss_fn, x, y), args.repeats)
        t_func = timed(lambda: gradient_variance(model, loss_fn, x, y, fast=False), args.repeats)
        t_loop = timed(lambda: loop_variance(model, loss_fn, x, y), max(2, args.repeats // 3))
        ours = gradient_variance(model, loss_fn, x, y, convention="backpack").value
        assert abs(
            ours - gradient_variance(model, loss_fn, x, y).value * (args.batch - 1) / args.batch**3
        ) <= 1e-6 * abs(ours)
        t_bp = float("nan")
        if backpack is not None:
            bmodel, bloss = backpack.extend(model), backpack.extend(loss_fn)
            xb = x.clone().requires_grad_()  # keeps BackPACK's first hook from warning
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_bp = timed(lambda: backpack_variance(bmodel, bloss, xb, y), args.repeats)
                theirs = backpack_variance(bmodel, bloss, xb, y)
            assert abs(theirs - ours) <= 1e-3 * abs(ours), (theirs, ours)
        print(
            f"{name:34s} {t_ours * 1e3:8.1f}ms {t_func * 1e3:8.1f}ms {t_loop * 1e3:8.1f}ms {t_bp * 1e3:8.1f}ms "
            f"{t_loop / t_ours:8.1f}x {t_bp / t_ours:7.2f}x"
        )


if __name__ == "__main__":
    main()
