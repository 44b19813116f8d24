"""A PyTorch Lightning ``Callback`` that records the instruments on a schedule (optional extra).

``pip install "thermosgd[lightning]"``. The callback measures the module being
trained on a fixed probe batch at the steps its schedule selects (step = optimizer
steps taken, ``trainer.global_step``; step 0 before the first) and gives one run in
the project's format (:meth:`Recorder.to_dataset`: dims ``lr, batch_size, seed,
step``), so that :func:`combine_runs` merges runs into a sweep that ``collapse`` reads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import xarray as xr
from torch import nn

from thermosgd.errors import UsageError
from thermosgd.instruments.activations import activation_rates
from thermosgd.instruments.gradient_variance import gradient_variance
from thermosgd.instruments.norms import weight_norms
from thermosgd.instruments.recorder import Recorder, Schedule

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - the optional extra is absent
    raise ImportError(
        "thermosgd.instruments.lightning needs PyTorch Lightning: pip install 'thermosgd[lightning]'"
    ) from None


class InstrumentCallback(Callback):
    """Record ``loss``, ``grad_var``, ``activation_rate`` and ``weight_norm`` of the trained module.

    Args:
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, the per-sample loss of ``grad_var``.
        probe_x: ``(n, *input_shape)`` fixed probe inputs (moved to the module's device).
        probe_y: ``(n, *target_shape)``.
        schedule: ``step -> bool`` (e.g. :func:`thermosgd.instruments.log_spaced`).
        lr, batch_size, seed: this run's coordinates in the dataset.

    ``activation_rate`` is recorded when the module has ``nn.ReLU`` submodules.
    """

    def __init__(
        self,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        probe_x: torch.Tensor,
        probe_y: torch.Tensor,
        schedule: Schedule,
        *,
        lr: float,
        batch_size: int,
        seed: int = 0,
    ):
        if not callable(loss_fn):
            raise UsageError("InstrumentCallback: loss_fn must be callable")
        self.loss_fn, self.probe_x, self.probe_y = loss_fn, probe_x, probe_y
        self.lr, self.batch_size, self.seed = lr, batch_size, seed
        self.recorder: Recorder | None = None
        self.schedule = schedule

    def _instruments(self, module: nn.Module) -> dict:
        def on_device(t: torch.Tensor) -> torch.Tensor:
            return t.to(next(module.parameters()).device)

        def loss(m: nn.Module) -> float:
            with torch.no_grad():
                return float(self.loss_fn(m(on_device(self.probe_x)), on_device(self.probe_y)))

        out: dict = {
            "loss": loss,
            "grad_var": lambda m: gradient_variance(m, self.loss_fn, on_device(self.probe_x), on_device(self.probe_y)),
            "weight_norm": weight_norms,
        }
        if any(isinstance(m, nn.ReLU) for m in module.modules()):
            out["activation_rate"] = lambda m: activation_rates(m, on_device(self.probe_x))
        return out

    def _record(self, trainer, module: nn.Module) -> None:
        if self.recorder is None:
            self.recorder = Recorder(self._instruments(module), self.schedule)
        if trainer.global_step not in self.recorder.records:
            self.recorder(trainer.global_step, module)

    def on_train_start(self, trainer, pl_module) -> None:
        self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._record(trainer, pl_module)

    def to_dataset(self) -> xr.Dataset:
        """The recorded run, dims ``(lr, batch_size, seed, step[, layer_*])``."""
        if self.recorder is None or not self.recorder.records:
            raise UsageError("InstrumentCallback: nothing recorded yet (train first)")
        return self.recorder.to_dataset(lr=self.lr, batch_size=self.batch_size, seed=self.seed)
