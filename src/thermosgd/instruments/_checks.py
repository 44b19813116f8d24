"""Input checks shared by the instruments: each failure is one clear UsageError."""

from __future__ import annotations

import torch
from torch import nn

from thermosgd.errors import UsageError


def trainable_parameters(model: nn.Module, instrument: str) -> dict[str, torch.Tensor]:
    """The parameters with ``requires_grad=True``, by qualified name, in model order."""
    if not isinstance(model, nn.Module):
        raise UsageError(f"{instrument}: expected a torch.nn.Module, got {type(model).__name__}")
    params: dict[str, torch.Tensor] = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise UsageError(
            f"{instrument}: {type(model).__name__} has no parameters with requires_grad=True, "
            "so there is no gradient to measure"
        )
    return params


def batch_size(inputs: torch.Tensor, targets: torch.Tensor, instrument: str, *, at_least: int = 1) -> int:
    """Check that inputs and targets are batched alike and return the batch size."""
    for label, t in (("inputs", inputs), ("targets", targets)):
        if not isinstance(t, torch.Tensor) or t.ndim == 0:
            raise UsageError(f"{instrument}: {label} must be a tensor with a leading batch dimension")
        if t.is_meta:
            raise UsageError(f"{instrument}: {label} are on the 'meta' device (shapes only, no data); pass real values")
    if inputs.shape[0] != targets.shape[0]:
        raise UsageError(
            f"{instrument}: inputs and targets have different batch sizes "
            f"({inputs.shape[0]} vs {targets.shape[0]}; shapes {tuple(inputs.shape)} and {tuple(targets.shape)})"
        )
    n = int(inputs.shape[0])
    if n < at_least:
        raise UsageError(f"{instrument}: needs a batch of at least {at_least} samples, got {n}")
    return n


def per_sample_safe(model: nn.Module, instrument: str, consequence: str = "per-sample gradients are undefined") -> None:
    """Refuse layers whose training-mode forward couples samples or draws random numbers."""
    for name, module in model.named_modules():
        if not module.training:
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise UsageError(
                f"{instrument}: layer '{name}' ({type(module).__name__}) mixes the samples of a batch in "
                f"training mode, so {consequence}; call model.eval() first"
            )
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            raise UsageError(
                f"{instrument}: layer '{name}' ({type(module).__name__}) is random in training mode; "
                "call model.eval() first so that every sample sees the same network"
            )


def layer_of(param_name: str) -> str:
    """Module name owning a parameter: ``'net.0.weight' -> 'net.0'`` (top-level: the name itself)."""
    head, _, _ = param_name.rpartition(".")
    return head or param_name


def loss_callable(loss_fn, instrument: str) -> None:
    if not callable(loss_fn):
        raise UsageError(
            f"{instrument}: loss_fn must be callable as loss_fn(outputs, targets), got {type(loss_fn).__name__}"
        )


def _param_dtype(model: nn.Module) -> torch.dtype | None:
    """The one floating dtype of the model's parameters, or None if mixed or absent."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def model_dtype(model: nn.Module, tensor: torch.Tensor, label: str, instrument: str) -> torch.Tensor:
    """``tensor`` cast to the model's floating dtype when it is floating point of another dtype.

    Float64 inputs on a float32 model (or the reverse) are what a user means to
    measure, so they are cast. Integer inputs are left alone: they may be indices
    (an embedding); a model that cannot take them fails in :func:`forward`, clearly.
    """
    if not isinstance(tensor, torch.Tensor):
        raise UsageError(f"{instrument}: {label} must be a torch.Tensor, got {type(tensor).__name__}")
    dtype = _param_dtype(model)
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        return tensor.to(dtype)
    return tensor


def forward(model: nn.Module, inputs: torch.Tensor, instrument: str) -> torch.Tensor:
    """``model(inputs)``, which must be one tensor; a failure of the forward is one UsageError line."""
    return output_tensor(call_model(model, inputs, instrument), instrument)


def call_model(model: nn.Module, inputs: torch.Tensor, instrument: str):
    """``model(inputs)``, whatever it returns; a failure of the forward is one UsageError line."""
    try:
        out = model(inputs)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, UsageError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        dtype = _param_dtype(model)
        hint = (
            f"; the inputs are {inputs.dtype}, the model's parameters {dtype}"
            if dtype is not None and inputs.dtype != dtype
            else ""
        )
        raise UsageError(
            f"{instrument}: the model's forward failed on inputs of shape {tuple(inputs.shape)}: {first}{hint}"
        ) from exc
    return out


def output_tensor(out, instrument: str) -> torch.Tensor:
    """Refuse a model output the instruments cannot differentiate (a tuple, a dict, ...)."""
    if not isinstance(out, torch.Tensor):
        raise UsageError(
            f"{instrument}: the model must return one tensor of outputs, got {type(out).__name__} "
            "(wrap it so that forward returns the tensor the loss takes)"
        )
    return out


def call_loss(loss_fn, outputs: torch.Tensor, targets: torch.Tensor, instrument: str) -> torch.Tensor:
    """``loss_fn(outputs, targets)`` as a scalar; a shape mismatch becomes one UsageError line."""
    try:
        loss = loss_fn(outputs, targets)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, UsageError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"{instrument}: loss_fn failed on outputs of shape {tuple(outputs.shape)} and targets "
            f"of shape {tuple(targets.shape)}: {first}"
        ) from exc
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise UsageError(f"{instrument}: loss_fn must return a scalar tensor, got {shape}")
    return loss.sum()


def available_memory() -> int | None:
    """Bytes of memory the OS can give now (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def fits_in_memory(nbytes: int, what: str, instrument: str) -> None:
    """Refuse an allocation of ``nbytes`` larger than half the memory available now (before making it)."""
    avail = available_memory()
    if avail is not None and nbytes > avail // 2:
        raise UsageError(
            f"{instrument}: {what} would need {nbytes / 2**30:.3g} GiB, more than half of the "
            f"{avail / 2**30:.3g} GiB available; use fewer samples"
        )


def probes_fit(
    samples: int, chunk: int | None, params: dict[str, torch.Tensor], instrument: str, work: int = 0
) -> None:
    """The ``samples × P`` probe matrix of a trace estimator and the work of ``chunk`` probes at once
    (``work`` elements per probe, e.g. the forward's activations) fit in memory."""
    first = next(iter(params.values()))
    n = sum(p.numel() for p in params.values())
    at_once = samples if chunk is None else min(samples, chunk)
    # A Hessian-vector product holds a few copies of the parameters and the activations per probe.
    need = (samples * n + at_once * 4 * (n + work)) * first.element_size()
    fits_in_memory(need, f"{samples} probes of {n} parameters", instrument)


def mlp_inputs(inputs, first: nn.Linear, layers: list[nn.Linear], instrument: str) -> None:
    """Inputs ``(N, *shape)`` that flatten to the first layer's ``in_features``, N >= 1, real and on a device
    with data (not ``meta``); the layers' weights must hold data too."""
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2 or inputs.shape[0] == 0:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise UsageError(f"{instrument}: inputs must be a tensor (N, *input_shape) with N >= 1 samples, got {shape}")
    if inputs.is_meta or any(layer.weight.is_meta for layer in layers):
        raise UsageError(f"{instrument}: the inputs or the model are on the 'meta' device (no data); load real values")
    if inputs.is_complex() or inputs.dtype == torch.bool:
        raise UsageError(f"{instrument}: inputs must be real numbers, got {inputs.dtype}")
    features = inputs[0].numel()
    if features != first.in_features:
        raise UsageError(
            f"{instrument}: each sample has {features} values {tuple(inputs.shape[1:])} but the first layer "
            f"takes {first.in_features}"
        )


def check_chunk_size(value, instrument: str) -> None:
    """``chunk_size`` is None (all at once) or an integer >= 1 (a string such as "8" is refused, not parsed)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"{instrument}: chunk_size must be None or an integer >= 1, got {value!r}")
