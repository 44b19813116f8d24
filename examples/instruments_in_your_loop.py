"""Measure thermophoresis in your own training loop (runs in seconds on a CPU).

A small ReLU MLP learns random binary labels on Gaussian inputs with plain SGD. A
Recorder runs the instruments on log-spaced steps; the results land in the project's
xarray format (dims lr, batch_size, seed, step), ready for thermosgd.sweep.store.
"""

import torch
from torch import nn

from thermosgd.instruments import (
    Recorder,
    activation_rates,
    combine_runs,
    gradient_variance,
    hessian_trace,
    hessian_trace_bound,
    log_spaced,
    weight_norms,
)

STEPS, LR, BATCH, SEED = 200, 0.1, 4, 0

gen = torch.Generator().manual_seed(SEED)
x = torch.randn(256, 20, generator=gen)
y = torch.randint(0, 2, (256, 1), generator=gen).float()
probe_x, probe_y = x[:64], y[:64]
loss_fn = nn.BCEWithLogitsLoss()

torch.manual_seed(SEED)
model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=LR)

recorder = Recorder(
    {
        "grad_var": lambda m: gradient_variance(m, loss_fn, probe_x, probe_y),
        "activation_rate": lambda m: activation_rates(m, probe_x),
        "weight_norm": weight_norms,
        "trace_bound": lambda m: hessian_trace_bound(m, loss_fn, probe_x),
    },
    log_spaced(STEPS, points=8),
)

for step in range(STEPS + 1):
    recorder(step, model)  # the schedule decides whether the instruments run
    if step == STEPS:
        break
    idx = torch.randint(len(x), (BATCH,), generator=gen)
    opt.zero_grad()
    loss_fn(model(x[idx]), y[idx]).backward()
    opt.step()

ds = combine_runs([recorder.to_dataset(lr=LR, batch_size=BATCH, seed=SEED)], config={"example": True})
trace = hessian_trace(model, loss_fn, probe_x, probe_y, samples=32, generator=torch.Generator().manual_seed(1))
print(ds[["grad_var", "activation_rate", "weight_norm", "trace_bound"]].squeeze(drop=True).to_dataframe())
print(
    f"final Hessian trace {trace.value:.3f} +- {trace.stderr:.3f} (Hutchinson), "
    f"A.5 bound {hessian_trace_bound(model, loss_fn, probe_x).value:.3f}"
)
