"""The one seed derivation: its numbers, its named streams, and no global generator in the package's draws."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from thermosgd.errors import UsageError
from thermosgd.seeds import STREAMS, derive_seed, generator, stream

SRC = Path(__file__).resolve().parents[1] / "src" / "thermosgd"


def _two_layer_seed_before_issue_19(*coords):
    # twolayer/data.derive_seed as it was written before the seed module: the engine's
    # stored results depend on these numbers.
    state = np.random.SeedSequence([int(c) for c in coords]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


@pytest.mark.parametrize("coords", [(0,), (0, 0, 0), (3, 7, 1), (2**32 - 1, 5, 6, 2, 3), (12345, 0, 7, 0, 0)])
def test_derivation_keeps_the_two_layer_numbers(coords):
    assert derive_seed(*coords) == _two_layer_seed_before_issue_19(*coords)


def test_seeds_are_63_bit_and_depend_on_order():
    seeds = [derive_seed(s, i, j) for s in range(4) for i in range(4) for j in range(4)]
    assert all(0 <= s < 2**63 for s in seeds)
    assert len(set(seeds)) == len(seeds)
    assert derive_seed(1, 2) != derive_seed(2, 1)


def test_generator_is_seeded_by_the_derivation():
    a = torch.rand(5, generator=generator(3, 101))
    b = torch.rand(5, generator=torch.Generator().manual_seed(derive_seed(3, 101)))
    assert torch.equal(a, b)


def test_stream_ids_are_distinct_within_each_family():
    families: dict[str, list[int]] = {}
    for name, sid in STREAMS.items():
        families.setdefault(name.split(".")[0], []).append(sid)
    for family, ids in families.items():
        assert len(ids) == len(set(ids)), family


def test_two_layer_stream_constants_are_the_named_streams():
    from thermosgd.twolayer import data

    for name in ("init", "data", "probe", "teacher", "trainset", "test", "noise", "noise_init"):
        assert getattr(data, name.upper()) == STREAMS[f"twolayer.{name}"]
    assert data.derive_seed is derive_seed


def test_unknown_stream_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown random stream 'walk.nope'"):
        stream("walk.nope")


def test_no_module_seeds_a_global_generator():
    # The package draws from explicit generators only; the one global seeding is a
    # user's model factory inside torch.random.fork_rng (deep/models.py, studies/model.py), seeded from
    # this module's derivation.
    pattern = re.compile(r"torch\.manual_seed\(|np\.random\.seed\(|random\.seed\(|torch\.seed\(")
    found = {
        str(p.relative_to(SRC)): [ln for ln in p.read_text().splitlines() if pattern.search(ln)]
        for p in SRC.rglob("*.py")
    }
    found = {k: v for k, v in found.items() if v}
    assert sorted(found) == ["deep/models.py", "studies/model.py"]
    assert all(len(v) == 1 and "manual_seed(derive_seed(" in v[0] for v in found.values()), found


def test_walk_suite_leaves_the_global_generator_alone():
    from thermosgd.reproduce.walk_suite import thermophoretic_flux
    from thermosgd.walk.compare import CASES

    def run(global_seed):
        torch.manual_seed(global_seed)
        before = torch.random.get_rng_state()
        out = thermophoretic_flux(CASES[0], particles=2000, seed=5)
        assert torch.equal(torch.random.get_rng_state(), before)
        return out["main"]["measured"]

    assert run(1) == run(2)
