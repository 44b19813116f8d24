"""Where a two-layer GPU run's time goes: set-up, the loop, the CPU's draws, the step's kernels.

Run by hand on a CUDA machine (``gpu_check.sh`` does not run it)::

    python benchmarks/gpu_profile.py [--replicas 65536] [--cpu-dry-run] [--tables FILE]

For fig3 and fig2-top on the benchmark's grid it prints, from one process:

- the whole ``train()``, and the part inside the training loop (``engine._integrate``), as run by
  default (steps replayed as CUDA graphs, streams drawn in worker processes);
- the loop again with eager steps (no graphs), with batched GEMMs for the tiny products
  (``steps.TINY_ON_GPU`` = 0), and with free draws (every chunk replaced by the
  first one, drawn once): the rate the device and the Python that drives it reach alone;
- milliseconds per step to draw a chunk on 8 threads and on 8 and 14 processes;
- the step's parts as single kernels, timed with CUDA events (fig2-top's size): which of the
  batched-GEMM and element-wise forms is faster here;
- torch's profiler over a short run of at most 4096 replicas: the ops with the most self CPU time
  and with the most device time (into ``--tables``, default stdout).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import thermosgd
from thermosgd.presets import get, twolayer_config
from thermosgd.twolayer import engine
from thermosgd.twolayer import steps as steps_mod


def grid(name: str, replicas: int, steps: int, device: str):
    cfg = twolayer_config(get(name), seeds=2, steps=20000)
    seeds = -(-replicas // (len(cfg.train.lr) * len(cfg.train.batch_size)))
    return twolayer_config(get(name), seeds=seeds, steps=20000).replace(train={"steps": steps, "device": device})


def timed_train(cfg, device: str) -> tuple[float, float]:
    """(whole train() s, s inside _integrate) of one run."""
    inner = [0.0]
    real = engine._integrate

    def clocked(*a, **k):
        t0 = time.perf_counter()
        real(*a, **k)
        if device != "cpu":
            torch.cuda.synchronize()
        inner[0] += time.perf_counter() - t0

    engine._integrate = clocked
    try:
        t0 = time.perf_counter()
        thermosgd.train(cfg)
        return time.perf_counter() - t0, inner[0]
    finally:
        engine._integrate = real


def free_draws():
    """Patch _Data.chunk to hand out its first chunk again: the loop's rate without the CPU's draws."""
    real = engine._Data.chunk
    cache: dict = {}

    def chunk(self, n, batch, chunk, by_stream=False):
        key = (id(self), n, batch, chunk, by_stream)
        if key not in cache:
            cache[key] = real(self, n, batch, chunk, by_stream)
        return cache[key]

    engine._Data.chunk = chunk
    return lambda: setattr(engine._Data, "chunk", real)


def draw_scaling(cfg, seeds: int) -> str:
    """ms per step to draw one chunk of ``seeds`` streams on 8 threads and on 8 and 14 processes."""
    out = []
    for kind, k in (("threads", 8), ("processes", 8), ("processes", 14)):
        data = engine._Data(cfg, list(range(seeds)), None, torch.float32)
        data.draw_threads, data.draw_processes = (k, 1) if kind == "threads" else (1, k)
        data.start(1, engine._CHUNK)
        try:
            data.chunk(engine._CHUNK, 1, engine._CHUNK)  # the workers' first call pays their start
            t0 = time.perf_counter()
            data.chunk(engine._CHUNK, 1, engine._CHUNK)
            out.append(f"{k} {kind}: {(time.perf_counter() - t0) / engine._CHUNK * 1e3:.2f}")
        finally:
            data.close()
    return "draws, ms/step: " + ", ".join(out)


def step_parts(replicas: int, n: int, device: str) -> str:
    """ms per call of the step's parts for ``replicas`` nets of n × n, float32, |B| = 1."""
    from thermosgd.twolayer.steps import sgd_step

    g = torch.Generator(device=device).manual_seed(0)
    W = torch.randn(replicas, n, n, device=device, generator=g) / n**0.5
    b, V = torch.zeros(replicas, n, device=device), torch.randn(replicas, n, device=device, generator=g)
    x, y = torch.randn(replicas, 1, n, device=device, generator=g), torch.zeros(replicas, 1, device=device)
    wl, rn = torch.full((replicas, 1), 1e-9, device=device), W.pow(2).sum(-1)
    delta = torch.randn(replicas, 1, n, device=device, generator=g) * 1e-9
    parts = {
        "sgd_step (with ||W_i||^2 tracked)": lambda: sgd_step(W, b, V, x, y, wl, "bce", True, rn),
        "z = baddbmm(b, x, W^T)": lambda: torch.baddbmm(b.unsqueeze(1), x, W.mT),
        "z = bmm(W, x^T)": lambda: torch.bmm(W, x.mT),
        "z = sum(x * W^T) (element-wise)": lambda: (x.unsqueeze(-1) * W.mT.unsqueeze(1)).sum(-2),
        "W.addcmul_(delta, x) (rank 1)": lambda: W.addcmul_(delta.mT, x, value=-1.0),
        "W.baddbmm_(delta^T, x)": lambda: W.baddbmm_(delta.mT, x, alpha=-1.0),
        "W.pow(2).sum(-1) (one read of W)": lambda: W.pow(2).sum(-1),
    }
    out = []
    for name, fn in parts.items():
        fn()
        if device == "cpu":
            t0 = time.perf_counter()
            for _ in range(5):
                fn()
            ms = (time.perf_counter() - t0) / 5 * 1e3
        else:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(20):
                fn()
            end.record()
            torch.cuda.synchronize()
            ms = start.elapsed_time(end) / 20
        out.append(f"  {name}: {ms:.3f} ms")
    gb = W.numel() * W.element_size() / 1e9
    return f"step parts, {replicas} replicas of {n}x{n} float32 (W is {gb:.2f} GB):\n" + "\n".join(out)


def loop_rates(cfg, device: str, R: int, steps: int) -> str:
    """The training loop's rate by default, with eager steps, and with free draws."""
    whole, loop = timed_train(cfg, device)
    engine.TorchBackend.cuda_graphs = False
    try:
        _, eager = timed_train(cfg, device)
    finally:
        engine.TorchBackend.cuda_graphs = True
    tiny, steps_mod.TINY_ON_GPU = steps_mod.TINY_ON_GPU, 0
    try:
        _, gemm = timed_train(cfg, device)
    finally:
        steps_mod.TINY_ON_GPU = tiny
    undo = free_draws()
    try:
        _, loop_free = timed_train(cfg, device)
    finally:
        undo()
    return (
        f"train() {whole:.1f} s (set-up and assembly {whole - loop:.1f} s), loop {R * steps / loop:.3g} "
        f"replica-steps/s, eager steps {R * steps / eager:.3g}, batched GEMMs for tiny products "
        f"{R * steps / gemm:.3g}, free draws {R * steps / loop_free:.3g}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=65536)
    ap.add_argument("--cpu-dry-run", action="store_true")
    ap.add_argument("--tables", default="", help="write the profiler's tables to this file (default: stdout)")
    args = ap.parse_args()
    device = "cpu" if args.cpu_dry_run else "cuda"
    replicas = 64 if args.cpu_dry_run else args.replicas
    tables = []
    for name, steps in (("fig3", 2048), ("fig2-top", 512)):
        cfg = grid(name, replicas, steps, device)
        thermosgd.train(cfg.replace(train={"seeds": 2, "steps": 2 * cfg.train.record_every}))  # warm-up
        R = len(cfg.train.lr) * len(cfg.train.batch_size) * len(cfg.train.seeds)
        print(f"{name}: {R} replicas × {steps} steps: {loop_rates(cfg, device, R, steps)}", flush=True)
        print(draw_scaling(cfg, min(len(cfg.train.seeds), 16384)), flush=True)
        acts = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if device != "cpu" else []
        )
        with torch.profiler.profile(activities=acts) as prof:
            # A smaller grid: over 65 536 replicas the profiler's own bookkeeping outran a 2-minute limit.
            thermosgd.train(grid(name, min(replicas, 4096), 32, device))
        ka = prof.key_averages()
        tables.append(f"== {name}\n" + ka.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))
        if device != "cpu":
            tables.append(ka.table(sort_by="self_device_time_total", row_limit=15, max_name_column_width=40))
    for n in (10, 100) if device != "cpu" else (10,):
        print(step_parts(replicas, n, device), flush=True)
    if args.tables:
        Path(args.tables).write_text("\n".join(tables))
        print(f"profiler tables: {args.tables}")
    else:
        print("\n".join(tables))


if __name__ == "__main__":
    main()
