"""Instruments for any ``torch.nn.Module``, usable inside your own training loop.

Each quantity is one function returning a small result object; a schedule decides
when a :class:`Recorder` runs them; results go into the project's xarray format.
"""

from thermosgd.instruments.activations import ActivationRates, activation_rates
from thermosgd.instruments.gradient_variance import GradientVariance, gradient_variance, per_sample_gradients
from thermosgd.instruments.hessian import TraceBound, TraceEstimate, hessian_trace, hessian_trace_bound
from thermosgd.instruments.norms import WeightNorms, weight_norms
from thermosgd.instruments.recorder import Recorder, combine_runs
from thermosgd.instruments.schedule import Every, LogSpaced, every, log_spaced

__all__ = [
    "ActivationRates",
    "Every",
    "GradientVariance",
    "LogSpaced",
    "Recorder",
    "TraceBound",
    "TraceEstimate",
    "WeightNorms",
    "activation_rates",
    "combine_runs",
    "every",
    "gradient_variance",
    "hessian_trace",
    "hessian_trace_bound",
    "log_spaced",
    "per_sample_gradients",
    "weight_norms",
]
