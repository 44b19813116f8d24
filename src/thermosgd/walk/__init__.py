"""The random walk of Sec. 3 (Eq. 4, 8) and its theory (Eq. 9-12, 34-36).

- :func:`simulate` runs many particles at once in a :class:`Free`, :class:`Periodic`
  or :class:`Reflect` domain and counts crossings of :class:`Planes`.
- :mod:`~thermosgd.walk.theory` evaluates Eq. 9, 10, 11, 34 for any g by autograd,
  plus the Fokker-Planck limit of the same walk (labelled as such).
- :func:`parse_g` compiles a safe formula in ``q`` to a torch function.
- :mod:`~thermosgd.walk.compare` counts plane fluxes and evaluates Eq. 10 at the same
  planes for the preset's :data:`CASES`. The fits are in :mod:`thermosgd.analysis.walk_fits`;
  the suite and the one-walk lab that put measurement next to prediction are
  :func:`thermosgd.reproduce.walk_suite.run_suite` and :func:`thermosgd.reproduce.walk_lab.run_walk`.
"""

from thermosgd.walk import theory
from thermosgd.walk.compare import CASES, Case
from thermosgd.walk.expr import parse_g
from thermosgd.walk.simulate import Free, Periodic, Planes, Reflect, WalkResult, simulate

__all__ = [
    "CASES",
    "Case",
    "Free",
    "Periodic",
    "Planes",
    "Reflect",
    "WalkResult",
    "parse_g",
    "simulate",
    "theory",
]
