"""Model factories for examples/study.toml: ``factory(seed=s)`` returns a fresh nn.Module."""

import torch
from torch import nn


def layernorm_mlp(seed: int) -> nn.Module:
    """20 → 64 → LayerNorm → ReLU → 64 → ReLU → 1 (a scalar logit for BCE)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


if __name__ == "__main__":  # the tests run every example
    print(layernorm_mlp(seed=0))
