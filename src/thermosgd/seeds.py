"""One seed derivation and the named random streams of every draw the package makes.

A random draw is identified by integer coordinates: the user's seed(s), the
stream it belongs to (a name below, looked up with :func:`stream`) and, where
one stream is drawn several times, an index (a chunk, a step size, a replica).
:func:`derive_seed` turns the coordinates into a 63-bit seed with NumPy's
``SeedSequence``, so a draw depends on its coordinates only: never on which
other draws ran before it, in which order, or in which process. Nothing in the
package draws from a global generator.

The two-layer stream ids are those the engine has always used (its results do
not depend on this module's existence); the walk's replaced hand-picked offsets
(``seed * 1_000_003 + c``, ``+500_000``, ``+17 * i``, ``+1001``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from thermosgd.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["STREAMS", "derive_seed", "generator", "stream"]

# Stream name -> id. Ids are coordinates, so they only need to differ within one
# family (the families use different coordinate layouts); an id must never be
# reused for another purpose, or stored results change.
STREAMS: dict[str, int] = {
    # Two-layer model, coordinates (master seed, replica seed, stream[, lr index, batch-size index]).
    "twolayer.init": 0,
    "twolayer.data": 1,
    "twolayer.probe": 2,
    "twolayer.teacher": 3,
    "twolayer.trainset": 4,
    "twolayer.test": 5,
    "twolayer.noise": 6,
    "twolayer.noise_init": 7,
    # Deep networks, coordinates (run seed, stream).
    "deep.init": 0,  # the model factory's weights (seeded inside torch.random.fork_rng)
    "deep.minibatches": 1,  # which samples each step's minibatch holds
    "deep.trainset": 2,  # a finite Gaussian training set
    "deep.online": 3,  # online Gaussian samples: sample i has the stream id 3 + i (above every other deep id)
    # Random walk, coordinates (seed, stream[, index...]).
    "walk.start": 100,  # initial positions of a walk
    "walk.steps": 101,  # the walk's zeta (or kick) draws
    "walk.flux_positions": 102,  # i.i.d. positions of a one-step flux count, per chunk
    "walk.flux_steps": 103,  # that count's step, per chunk
    "walk.thermophoretic": 104,  # (a), (d): one per step size
    "walk.diffusive_uniform": 105,  # (b): the uniform-density count
    "walk.diffusive_gradient": 106,  # (b): the count under a density gradient
    "walk.stationary": 107,  # (c)
    "walk.local_flux": 108,  # the flux at one point that `thermosgd walk` reports
    "walk.probe_points": 109,  # points where max |g| is estimated (no user seed: a fixed stream)
}


def stream(name: str) -> int:
    """The id of the stream ``name`` (a key of :data:`STREAMS`).

    Raises:
        UsageError: ``name`` is not a stream.
    """
    try:
        return STREAMS[name]
    except KeyError:
        raise UsageError(f"unknown random stream {name!r}; known: {', '.join(sorted(STREAMS))}") from None


def derive_seed(*coords: int) -> int:
    """A 63-bit seed from nonnegative integer coordinates (order matters).

    Args:
        coords: e.g. ``(seed, stream("walk.steps"), chunk)``.

    Returns:
        An integer in ``[0, 2^63)``, a valid ``torch.Generator`` seed.
    """
    state = np.random.SeedSequence([int(c) for c in coords]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def generator(*coords: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``coords``."""
    import torch  # here: the base layer stays importable without loading torch

    return torch.Generator().manual_seed(derive_seed(*coords))
