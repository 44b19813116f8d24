"""THE per-sample gradient moment algebra, with a replica dimension.

Every per-sample gradient variance in the instruments and the ensembles is built
here from the same pieces, as BackPACK builds its ``Variance`` from one
``_variance_from``: the layer inputs ``x`` and the gradients ``delta`` of each
sample's own loss with respect to the layer outputs (the "output errors").

Shapes (``E`` replicas, ``n`` samples, ``P`` optional positions: sequence
positions, or convolution patches already unfolded):

* ``x``: ``(E, n, in)`` or ``(E, n, P, in)``
* ``delta``: ``(E, n, out)`` or ``(E, n, P, out)``
* sample ``i``'s weight gradient ``g_i = sum_p delta_ip x_ip^T``: ``(out, in)``;
  its bias gradient ``sum_p delta_ip``: ``(out,)``.

What is returned first is the summed squared deviation ``M2 = sum_i (g_i - mean)^2``
("second moment minus squared mean", times ``n``), per entry ``(E, *shape)`` or summed
over entries ``(E,)``, in float64. :func:`normalize` turns ``M2`` into a variance
under a stated convention:

* ``"unbiased"``: ``M2 / (n - 1)``, the variance of one sample's gradient;
* ``"biased"``: ``M2 / n`` (the ÷|B| of a population variance);
* ``"backpack"``: BackPACK's ``Variance``: individual gradients of the *mean* loss,
  ``g_i / n``, with ``1/n``: ``M2 / n**3``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Convention = Literal["unbiased", "biased", "backpack"]
CONVENTIONS: tuple[str, ...] = ("unbiased", "biased", "backpack")


def deviations(g: torch.Tensor, *, per_entry: bool = False) -> torch.Tensor:
    """``M2`` of per-sample values by two passes (mean, then squared deviations).

    Args:
        g: ``(E, n, *shape)`` per-sample values (gradients) of ``E`` replicas.
        per_entry: keep the entries (``(E, *shape)``) instead of summing them (``(E,)``).

    Returns:
        float64 ``(E,)`` or ``(E, *shape)``.
    """
    dev = torch.sub(g, g.mean(dim=1, keepdim=True)).square_().sum(1)  # faster than torch.var on CPU
    dev = dev.to(torch.float64)
    return dev if per_entry else dev.reshape(g.shape[0], -1).sum(1)


def linear_weight_deviations(x: torch.Tensor, delta: torch.Tensor, *, per_entry: bool = False) -> torch.Tensor:
    """``M2`` of the per-sample weight gradients ``g_i = sum_p delta_ip x_ip^T`` of a linear map.

    Without positions, in closed form (per-sample gradients never formed, float64):
    ``sum_i g_i^2 = (delta^2)^T (x^2)`` per entry and ``sum_i ||delta_i||^2 ||x_i||^2`` in
    total, minus ``n ||mean||^2``. With positions, the gradients are formed by one bmm.

    Args:
        x: ``(E, n, in)`` or ``(E, n, P, in)`` layer inputs.
        delta: ``(E, n, out)`` or ``(E, n, P, out)`` output errors.
        per_entry: ``(E, out, in)`` instead of ``(E,)``.

    Returns:
        float64 ``(E,)`` or ``(E, out, in)``.
    """
    if x.dim() == 4:
        E, n, P, _ = x.shape
        g = torch.bmm(delta.reshape(E * n, P, -1).mT, x.reshape(E * n, P, -1))
        return deviations(g.reshape(E, n, *g.shape[1:]), per_entry=per_entry)
    n = x.shape[1]
    x64, d64 = x.to(torch.float64), delta.to(torch.float64)
    mean = d64.mT @ x64 / n  # (E, out, in)
    if per_entry:
        second = (d64 * d64).mT @ (x64 * x64)
        return (second - n * mean * mean).clamp_min(0.0)
    second = ((d64 * d64).sum(-1) * (x64 * x64).sum(-1)).sum(1)
    return (second - n * (mean * mean).sum((1, 2))).clamp_min(0.0)


def bias_deviations(delta: torch.Tensor, *, per_entry: bool = False) -> torch.Tensor:
    """``M2`` of the per-sample bias gradients ``sum_p delta_ip`` (``delta``: ``(E, n, [P,] out)``)."""
    return deviations(delta.sum(2) if delta.dim() == 4 else delta, per_entry=per_entry)


def conv2d_patches(x: torch.Tensor, kernel_size, stride, padding, dilation) -> torch.Tensor:
    """Conv2d inputs as positions: ``(N, C, H, W) -> (N, L, C*kh*kw)`` (im2col), so that a
    convolution's per-sample weight gradient is the linear map's with ``P = L`` positions."""
    return F.unfold(x, kernel_size, dilation=dilation, padding=padding, stride=stride).mT


#: Samples whose patches :func:`conv2d_weight_grads` unfolds at once: a chunk's im2col copy stays in
#: the cache (32 samples of 10 channels, 5x5 kernels, 8x8 outputs: 2 MiB in float32).
_PATCH_CHUNK = 32


def conv2d_weight_grads(x: torch.Tensor, delta: torch.Tensor, kernel_size, stride, padding, dilation) -> torch.Tensor:
    """Per-sample Conv2d weight gradients ``(N, C_out, C_in, kh, kw)`` (groups 1, zero padding).

    ``G_n = delta_n (C_out, L) @ patches_n^T (L, C_in·kh·kw)``, one bmm per chunk of
    :data:`_PATCH_CHUNK` samples on their unfolded patches (:func:`conv2d_patches`). On the CPU
    1.4x faster than one bmm per kernel offset, which was itself several times faster than
    im2col of all samples at once and than vmap's grouped convolutions (measured on the
    fig2-bottom CNN's probe set, 3072 samples). Equal to ``linear_weight_deviations``'
    gradients on :func:`conv2d_patches` (tested).

    Args:
        x: ``(N, C_in, H, W)`` layer inputs (fold any replica dim into ``N``).
        delta: ``(N, C_out, H_out, W_out)`` output errors.
    """
    n, c_out, h_out, w_out = delta.shape
    kh, kw = kernel_size
    d = delta.reshape(n, c_out, h_out * w_out)
    out = delta.new_empty(n, c_out, x.shape[1] * kh * kw)
    for s in range(0, n, _PATCH_CHUNK):
        patches = F.unfold(x[s : s + _PATCH_CHUNK], kernel_size, dilation=dilation, padding=padding, stride=stride)
        torch.bmm(d[s : s + _PATCH_CHUNK], patches.mT, out=out[s : s + _PATCH_CHUNK])
    return out.reshape(n, c_out, x.shape[1], kh, kw)


def merge(
    a: tuple[torch.Tensor, torch.Tensor, int], b: tuple[torch.Tensor, torch.Tensor, int]
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Chan et al.'s pairwise update: ``(mean, M2 per entry, count)`` of two chunks of samples
    combined into those of their union (exact), so chunks need not be in memory together."""
    mean_a, m2_a, na = a
    mean_b, m2_b, nb = b
    total = na + nb
    delta = (mean_b - mean_a).to(torch.float64)
    return mean_a + (mean_b - mean_a) * (nb / total), m2_a + m2_b + delta * delta * (na * nb / total), total


def normalize(m2: torch.Tensor, n: int, convention: Convention = "unbiased") -> torch.Tensor:
    """Variance from ``M2`` over ``n`` samples under ``convention`` (module docstring)."""
    if convention == "unbiased":
        return m2 / (n - 1)
    if convention == "biased":
        return m2 / n
    if convention == "backpack":
        return m2 / n**3
    raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")


def layer_means(
    m2: dict[str, torch.Tensor], sizes: dict[str, int], n: int, convention: Convention = "unbiased"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Entry-averaged variances, in total and per layer, from per-parameter ``M2``.

    Args:
        m2: parameter name (``"net.0.weight"``) -> ``(E,)`` summed ``M2``, in model order.
        sizes: parameter name -> number of entries.
        n: samples the moments were taken over.

    Returns:
        ``(E,)`` mean over all entries, and layer name (``"net.0"``) -> ``(E,)`` mean over
        that layer's entries (every entry weighs the same).
    """
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for pname, value in m2.items():
        head, _, _ = pname.rpartition(".")
        layer = head or pname
        var = normalize(value, n, convention)
        sums[layer] = sums[layer] + var if layer in sums else var
        counts[layer] = counts.get(layer, 0) + sizes[pname]
    total = torch.stack(list(sums.values())).sum(0) / sum(counts.values())
    return total, {k: sums[k] / counts[k] for k in sums}
