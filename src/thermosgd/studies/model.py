"""A study's model: its factory, the seeded build, the layers it may hold, and its losses.

Per-sample gradients, the noise models and the instruments all presume a forward
pass that treats the samples of a batch independently. The layers below do;
BatchNorm in training mode does not, and is refused, as is any other module of
``torch.nn`` not listed (one line naming it). A module class of the user's own is
accepted: its forward is checked once on real samples (:func:`check_independent`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from thermosgd.errors import UsageError
from thermosgd.studies.data import INIT
from thermosgd.twolayer.data import derive_seed

SUPPORTED = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.Embedding,
    nn.MultiheadAttention,
    nn.ReLU,
    nn.GELU,
    nn.Tanh,
)
# Parameter-free and sample by sample: no need to list them as "layers".
HARMLESS = (
    nn.Sequential,
    nn.ModuleList,
    nn.ModuleDict,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Sigmoid,
    nn.Softplus,
    nn.SiLU,
    nn.LeakyReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)


def factory_file(spec: str, folder: str) -> Path:
    """The file that defines ``module`` of ``"module:function"`` (``module.py`` or ``module/__init__.py``)."""
    module = spec.split(":")[0]
    base = Path(folder) / Path(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    raise UsageError(f"[model] factory {spec!r}: no {base.name}.py in {Path(folder)} (the study file's folder)")


def fingerprint(path: Path) -> str:
    """SHA-256 of a file's bytes (a local copy until the sweep store's file fingerprint is shared)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_factory(spec: str, folder: str) -> Callable[..., nn.Module]:
    """``function`` of ``"module:function"``, the module imported from ``folder`` by its file path.

    Imported under a name of its own path, so two studies with a ``mymodels.py``
    each never share a module.
    """
    path = factory_file(spec, folder)
    name = "thermosgd_study_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    module = sys.modules.get(name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise UsageError(f"[model] factory {spec!r}: cannot import {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise UsageError(f"[model] factory {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    function = getattr(module, spec.split(":")[1], None)
    if not callable(function):
        raise UsageError(f"[model] factory {spec!r}: {path} defines no function {spec.split(':')[1]!r}")
    return function


def build(factory: Callable[..., nn.Module], master: int, seed: int, dtype: torch.dtype) -> nn.Module:
    """``factory(seed=seed)``, with torch's global generator seeded from (master, seed) inside ``fork_rng``.

    A factory that draws from the global generator without seeding it is thereby
    reproducible; one that seeds itself gets exactly ``factory(seed=seed)``. The
    caller's own generator state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(master, seed, INIT))
        try:
            model = factory(seed=seed)
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"the model factory failed for seed {seed}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UsageError(f"the model factory must return a torch.nn.Module, got {type(model).__name__}")
    return model.to(dtype)


def check_layers(model: nn.Module) -> None:
    """Refuse, in one line, a module whose forward mixes samples or that the study does not support."""
    for name, module in model.named_modules():
        where = f"layer '{name}' ({type(module).__name__})" if name else f"the model ({type(module).__name__})"
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if module.training:
                raise UsageError(
                    f"{where} mixes the samples of a batch in training mode, so per-sample gradients and the "
                    "noise models are undefined; use GroupNorm or LayerNorm, or BatchNorm in eval mode (.eval())"
                )
            continue
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0 and module.training:
            raise UsageError(f"{where} is random in training mode; use p = 0 or call .eval() on it in the factory")
        if isinstance(module, SUPPORTED + HARMLESS) or not type(module).__module__.startswith("torch."):
            continue
        if any(
            isinstance(parent, SUPPORTED) for pname, parent in model.named_modules() if name.startswith(pname + ".")
        ):
            continue  # a part of a supported layer (MultiheadAttention's out_proj)
        raise UsageError(
            f"{where} is not supported by thermosgd study (supported: "
            f"{', '.join(t.__name__ for t in SUPPORTED + HARMLESS)}, and modules of your own)"
        )


def sample_losses(loss: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(outputs (E, n, ...), targets (E, n, ...)) -> (E, n)`` per-sample losses of ``[train] loss``."""

    def each(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        E, n = y.shape[:2]
        if loss == "cross_entropy":
            return F.cross_entropy(out.reshape(E * n, -1), y.reshape(E * n), reduction="none").reshape(E, n)
        z = out.reshape(y.shape)
        if loss == "bce":
            return F.binary_cross_entropy_with_logits(z, y, reduction="none")
        return 0.5 * (z - y).square().reshape(E, n, -1).sum(-1)  # "mse": ½‖f − y‖², as the two-layer loss

    return each


def correct(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """``(E, n)`` 1.0 where the prediction is right (bce: logit sign; cross-entropy: argmax), None for mse."""
    if loss == "bce":
        return ((out.reshape(y.shape) > 0) == (y > 0.5)).to(torch.float64)
    if loss == "cross_entropy":
        return (out.argmax(-1).reshape(y.shape) == y).to(torch.float64)
    return None


def check_independent(model: nn.Module, loss: str, x: torch.Tensor, y: torch.Tensor) -> None:
    """Refuse a forward that fails on these samples, or that mixes the samples of a batch.

    Sample 0's output in a batch of up to 4 must equal its output alone (to 1e-4
    relative in float32, 1e-9 in float64); ``x - x.mean(0)`` and the like fail this.
    """
    k = min(4, x.shape[0])
    try:
        with torch.no_grad():
            batch, alone = model(x[:k]), model(x[:1])
            sample_losses(loss)(batch.unsqueeze(0), y[:k].unsqueeze(0))
    except UsageError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UsageError(
            f"the model's forward or the {loss} loss fails on the data (inputs {tuple(x.shape[1:])}): "
            f"{type(exc).__name__}: {first}"
        ) from None
    if not isinstance(batch, torch.Tensor) or batch.shape[:1] != (k,):
        raise UsageError(f"the model must return one output tensor per sample, got {type(batch).__name__}")
    gap = float((batch[:1] - alone).abs().max())
    scale = float(alone.abs().max()) + 1e-30
    tol = 1e-9 if batch.dtype == torch.float64 else 1e-4
    if not gap <= tol * max(scale, 1.0):
        raise UsageError(
            f"the model's forward mixes the samples of a batch (sample 0's output in a batch of {k} differs from "
            f"its output alone by {gap:.3g}); per-sample gradients need a forward that treats samples independently"
        )
