"""Study your own model: the η × |B| × seed experiment on any nn.Module (runs in seconds on a CPU).

The LayerNorm MLP of examples/mymodels.py learns random labels on fresh Gaussian
inputs with SGD at three learning rates; thermosgd.study records the probe loss,
the per-sample gradient variance, the ReLU activation rate and the weight norms on
log-spaced steps. The same study as a file: examples/study.toml, run with
``thermosgd study examples/study.toml --out DIR`` (resumable, workers, Dask).
"""

from pathlib import Path

import thermosgd
from thermosgd.analysis.collapse import fit_collapse

SPEC = {
    # factory(seed=s) from mymodels.py beside this script (a TOML's factory is found in the TOML's folder);
    # a callable works too: thermosgd.study(SPEC, model=my_factory)
    "model": {"factory": "mymodels:layernorm_mlp", "folder": str(Path(__file__).resolve().parent)},
    "data": {"source": "gaussian", "dim": 20, "online": True, "probe_size": 128},
    "train": {"loss": "bce", "lr": [0.025, 0.05, 0.1], "batch_size": [1], "seeds": 4, "steps": 300},
    "record": {"points": 8},
}

if __name__ == "__main__":
    ds = thermosgd.study(SPEC)
    final = ds.isel(step=-1, batch_size=0).mean("seed")
    print(f"after {int(ds.step[-1])} steps, mean over {ds.sizes['seed']} seeds:")
    for lr in ds.lr.values:
        row = final.sel(lr=lr)
        print(
            f"  lr = {lr:<6} activation_rate = {float(row.activation_rate):.3f}  "
            f"grad_var = {float(row.grad_var):.2e}  last_weight_norm = {float(row.last_weight_norm):.3f}"
        )
    fit = fit_collapse(ds, "grad_var", over="lr", n_boot=100)
    print(f"grad_var collapses over lr with alpha = {fit.exponent:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}]")
