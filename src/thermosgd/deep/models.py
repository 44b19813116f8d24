"""The deep networks of Sec. 6 and A.6, built from an explicit seed.

All are ``nn.Sequential`` of standard layers, so every instrument applies, and the
fully connected ones are ReLU MLPs for :func:`thermosgd.instruments.hessian_trace_bound`.
Weights use PyTorch's default initialization, drawn from ``seed`` without touching
the global random state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from thermosgd.seeds import derive_seed, stream

M = TypeVar("M", bound=nn.Module)


def seeded(build: Callable[[], M], seed: int) -> M:
    """Call ``build()`` with the random state seeded by ``seed``, restoring the global state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, stream("deep.init")))
        return build()


def mlp(input_dim: int, width: int, depth: int, out_dim: int, *, seed: int) -> nn.Sequential:
    """Fully connected ReLU net with ``depth`` Linear layers (Fig. 2 middle: depth 6, width 100).

    Input ``(N, *shape)`` with ``prod(shape) == input_dim`` (flattened first); output ``(N, out_dim)``.
    """

    def build() -> nn.Sequential:
        layers: list[nn.Module] = [nn.Flatten()]
        dims = [input_dim] + [width] * (depth - 1)
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], out_dim))
        return nn.Sequential(*layers)

    return seeded(build, seed)


def cnn(
    in_channels: int,
    image_size: int,
    out_dim: int,
    *,
    seed: int,
    channels: int = 10,
    kernel_size: int = 5,
    conv_layers: int = 5,
    padding: int = 0,
) -> nn.Sequential:
    """Convolutional ReLU net: ``conv_layers`` convolutions (stride 1), then one Linear layer.

    Fig. 2 bottom: 6 layers = 5 convolutions with 10 channels and 5x5 kernels + a fully
    connected output layer. The paper gives no padding; ``padding=0`` fits 28x28
    Fashion-MNIST (28 -> 24 -> ... -> 8), and ``padding=kernel_size // 2`` keeps small
    images (8x8 digits) at their size.

    Input ``(N, in_channels, image_size, image_size)``; output ``(N, out_dim)``.
    """
    size = image_size
    for _ in range(conv_layers):
        size = size + 2 * padding - kernel_size + 1
    if size < 1:
        raise ValueError(
            f"cnn: {conv_layers} {kernel_size}x{kernel_size} convolutions with padding "
            f"{padding} do not fit a {image_size}x{image_size} image"
        )

    def build() -> nn.Sequential:
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(conv_layers):
            layers += [nn.Conv2d(c, channels, kernel_size, stride=1, padding=padding), nn.ReLU()]
            c = channels
        layers += [nn.Flatten(), nn.Linear(channels * size * size, out_dim)]
        return nn.Sequential(*layers)

    return seeded(build, seed)


def two_layer(input_dim: int, hidden: int, out_dim: int, *, seed: int) -> nn.Sequential:
    """``f(x) = V relu(W x + b)`` (Eq. 63; no output bias): A.6's CIFAR-10 model with 300 hidden units.

    Input ``(N, *shape)`` flattened to ``input_dim``; output ``(N, out_dim)``. ``V`` is
    the last layer's weight, ``(out_dim, hidden)``.
    """

    def build() -> nn.Sequential:
        return nn.Sequential(
            nn.Flatten(), nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim, bias=False)
        )

    return seeded(build, seed)
