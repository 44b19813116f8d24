"""Two-layer thermophoresis in a few seconds: train an η grid, fit the collapse exponent.

Run:  python examples/two_layer_quickstart.py
"""

import thermosgd
from thermosgd.analysis import fit_collapse

cfg = thermosgd.config_from_dict(
    {
        "model": {"inputs": 10, "hidden": 10, "bias": True},
        "data": {"inputs": "gaussian", "labels": "random"},
        "train": {
            "lr": [0.025, 0.05, 0.1],
            "batch_size": [1],
            "seeds": 8,
            "steps": 1500,
            "record_every": 5,
            "probe_every": 100,
        },
    }
)
ds = thermosgd.train(cfg)  # one vectorized run of 3 × 1 × 8 = 24 replicas

rate = ds.activation_rate.mean("seed").sel(batch_size=1)
for lr in ds.lr.values:
    r = rate.sel(lr=lr)
    print(f"η = {lr:<6g} activation rate {float(r.isel(step=0)):.3f} → {float(r.isel(step=-1)):.3f}")

fit = fit_collapse(ds, "activation_rate", "lr", n_boot=50)
print(f"fitted collapse exponent α = {fit.exponent:.2f}, 95% CI [{fit.ci_low:.2f}, {fit.ci_high:.2f}] (paper: 2)")
