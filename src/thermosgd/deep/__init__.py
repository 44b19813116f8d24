"""Deep networks of the paper (Sec. 6, A.6) and ensembles of any ``nn.Module``.

The deep presets (Fig. 2 middle/bottom, Figs. 11-14) are studies: their models
are built here, and :func:`thermosgd.study` trains them (``thermosgd reproduce``
writes their results and figures). The former second training path
(``train_deep``, ``train_sweep``, ``train_run``, ``DeepSpec``, ``Run``,
``TrainSet``) is gone; its names raise an error that points to the study API.
"""

import warnings

from thermosgd.deep.models import cnn, mlp, two_layer

__all__ = ["cnn", "mlp", "two_layer"]

_REMOVED = ("DeepSpec", "Run", "TrainSet", "train_deep", "train_run", "train_sweep")


def __getattr__(name: str):
    if name in _REMOVED:
        message = (
            f"thermosgd.deep.{name} was removed: the deep presets are studies now. Train any nn.Module with "
            "thermosgd.study(spec, out, model=factory, data=(x, y)) (docs/study.md), "
            "or a preset with thermosgd.reproduce(['fig2-middle'])"
        )
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        raise AttributeError(message)
    raise AttributeError(f"module 'thermosgd.deep' has no attribute {name!r}")
