"""The two-layer model of Sec. 4–5: vectorized ensemble SGD, its noise models and its theory.

Public: :func:`train` (a whole η × |B| × seeds grid in memory), the modules
:mod:`~thermosgd.twolayer.theory` (h, φ1, φ2, ψ, J_t) and :mod:`~thermosgd.twolayer.drift`
(drift runs beside mean-gradient references). The engine's parts (params, steps,
noise, measure, results, budget, divergence, fused) are internal.
"""

from thermosgd.twolayer import drift, theory
from thermosgd.twolayer.engine import train

__all__ = ["drift", "theory", "train"]
