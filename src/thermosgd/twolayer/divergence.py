"""When a replica counts as diverged: non-finite, or its loss running away.

SGD with a step size beyond its stability limit need not overflow within a run:
on the 100×100 net with Gaussian inputs at η = 0.1 (η·E‖x‖² = 10) ‖V‖ grows
from 0.6 to ~1e9 in 20 000 steps and stays finite. Such a replica says nothing
about the slow thermophoretic drift the sweeps measure, so it is caught by a
runaway criterion with a factor k (``[train] runaway_factor``, default 100):

    diverged at the first recorded step t where ‖W‖, b or ‖V‖ is not finite,
    or (k > 0) the probe loss L_t is not finite or exceeds k·L_0,

L being the mean loss on the fixed probe set (checked at the probe steps) and
L_0 > 0 its value at step 0. Measured on fig2-top (8 seeds × 20 000 steps,
``benchmarks/runaway.py``): replicas at η ≤ 0.05 stay below 1.5·L_0 and those
at η = 0.075 below 3.9·L_0, while every η = 0.1 replica passes 100·L_0 between
steps 2 200 and 2 700 and ends near 1e18·L_0.

Why not also ‖θ‖ > k·‖θ_0‖: at stable step sizes b drifts steadily negative
(the very effect the sweeps measure): at η = 0.05 the mean of b reaches −1.3
by step 20 000, so ‖b‖ ≥ 13 against ‖θ_0‖ ≈ 5.8 at the start, and further
later; from a 10× smaller initialization the same drift is a 27× growth of
‖θ‖. A norm threshold would flag the effect under study, or depend on the
initialization scale.
"""

from __future__ import annotations

import numpy as np
import torch


def describe(factor: float) -> str:
    """The criterion in words, for ``ds.attrs["divergence_criterion"]`` and verdict lines."""
    if factor == 0:
        return "non-finite parameters"
    return f"non-finite parameters or probe loss above {factor:g}× its initial value"


class Watch:
    """Tracks which of R replicas have diverged and at which recorded step.

    Args:
        factor: k (0 = non-finite parameters only).
        replicas: R.
    """

    def __init__(self, factor: float, replicas: int):
        self.factor = factor
        self.step = np.full(replicas, -1, dtype=np.int64)
        self._loss0: torch.Tensor | None = None

    def update(self, step: int, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Check one recorded step's values (each (R,)); returns the (R,) mask of newly diverged replicas.

        The first values with a probe loss (step 0) fix L_0.
        """
        bad = ~(
            torch.isfinite(values["v_norm"]) & torch.isfinite(values["w_norm"]) & torch.isfinite(values["bias_mean"])
        )
        loss = values.get("loss")
        if self.factor > 0 and loss is not None:
            if self._loss0 is None:
                self._loss0 = loss.clone()
            # A replica starting at zero loss (a perfect fit) is held to finiteness only.
            bad |= ~torch.isfinite(loss) | ((self._loss0 > 0) & (loss > self.factor * self._loss0))
        new = bad & torch.from_numpy(self.step < 0)
        self.step[new.numpy()] = step
        return new
