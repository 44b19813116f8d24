"""Where a two-layer GPU run's time goes: set-up, the loop, the CPU's draws, the step's kernels.

Run by hand on a CUDA machine (``gpu_check.sh`` runs it after the benchmarks)::

    python benchmarks/gpu_profile.py [--replicas 65536] [--cpu-dry-run]

For fig3 and fig2-top on the benchmark's grid it prints, from one process:

- the whole ``train()``, and the part inside the training loop (``engine._integrate``);
- the loop again with free draws (every chunk replaced by the first one, drawn once):
  the rate the device and the Python that drives it reach alone;
- torch's profiler over a short run: the ten ops with the most self CPU time and the ten
  with the most device time.
"""

from __future__ import annotations

import argparse
import time

import torch

import thermosgd
from thermosgd.presets import get, twolayer_config
from thermosgd.twolayer import engine


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
    """ms per step to draw one chunk of ``seeds`` streams on 1, 4 and 8 threads, with torch's
    intra-op threads as they are and with one."""
    out, before = [], torch.get_num_threads()
    for intra in (before, 1):
        torch.set_num_threads(intra)
        data = engine._Data(cfg, list(range(seeds)), None, torch.float32)
        for k in (1, 4, 8):
            data.draw_threads = k
            t0 = time.perf_counter()
            data.chunk(engine._CHUNK, 1, engine._CHUNK)
            out.append(f"{k} threads/{intra} intra-op: {(time.perf_counter() - t0) / engine._CHUNK * 1e3:.2f}")
    torch.set_num_threads(before)
    return "draws, ms/step: " + ", ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=65536)
    ap.add_argument("--cpu-dry-run", action="store_true")
    args = ap.parse_args()
    device = "cpu" if args.cpu_dry_run else "cuda"
    replicas = 64 if args.cpu_dry_run else args.replicas
    for name, steps in (("fig3", 2048), ("fig2-top", 512)):
        cfg = grid(name, replicas, steps, device)
        thermosgd.train(cfg.replace(train={"seeds": 2, "steps": 2 * cfg.train.record_every}))  # warm-up
        R = len(cfg.train.lr) * len(cfg.train.batch_size) * len(cfg.train.seeds)
        whole, loop = timed_train(cfg, device)
        undo = free_draws()
        try:
            _, loop_free = timed_train(cfg, device)
        finally:
            undo()
        print(
            f"{name}: {R} replicas × {steps} steps: train() {whole:.1f} s (set-up and assembly {whole - loop:.1f} s), "
            f"loop {R * steps / loop:.3g} replica-steps/s, loop with free draws {R * steps / loop_free:.3g}"
        )
        print(draw_scaling(cfg, min(len(cfg.train.seeds), 16384)))
        acts = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if device != "cpu" else []
        )
        with torch.profiler.profile(activities=acts) as prof:
            thermosgd.train(cfg.replace(train={"steps": 256}))
        ka = prof.key_averages()
        print(ka.table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40))
        if device != "cpu":
            print(ka.table(sort_by="self_device_time_total", row_limit=10, max_name_column_width=40))


if __name__ == "__main__":
    main()
