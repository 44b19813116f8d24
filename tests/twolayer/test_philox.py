"""The Philox normals (thermosgd.twolayer.philox): the published known answers, a Python-integer twin,
the compiled loop against NumPy bit for bit, the polynomials against libm, and the draws' statistics.

Statistical checks run on fixed seeds (deterministic, so never flaky); each states its tolerance.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from thermosgd.config import from_dict
from thermosgd.seeds import derive_seed
from thermosgd.twolayer import compiled, philox
from thermosgd.twolayer.data import DATA, SampleStream

# Random123's kat_vectors, the three "philox4x32 10" lines: counter, key, output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _load(name):
    """A helper module beside this file (tests are not a package under --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("ctr, key, want", KAT)
def test_the_python_twin_gives_random123s_known_answers(ctr, key, want):
    assert philox.block(ctr, key) == want


def test_the_vectorized_words_equal_the_python_twin():
    rng = np.random.default_rng(1)
    blocks = np.concatenate([[0, 1, 2**32 - 1, 2**32, 2**63 + 5], rng.integers(0, 2**62, 40)]).astype(np.uint64)
    key, purpose = (0xA4093822, 0x299F31D0), 0x13198A2E
    words = philox._words_numpy(blocks, *key, purpose)
    for i, b in enumerate(blocks.tolist()):
        want = philox.block((b & 0xFFFFFFFF, b >> 32, purpose, 0), key)
        assert tuple(int(w[i]) for w in words) == want


def _compiled(n, seed, purpose, start, dtype=np.float64, labels=False):
    out = np.full(n, np.nan, dtype)
    (philox.labels_into if labels else philox.normals_into)(out, seed, purpose, start)
    return out


@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "start, n",
    [
        (0, 0),
        (0, 1),
        (1, 2),
        (3, 1),
        (2, 7),
        (4, 8),
        (5, 3),
        (6, 2),
        (0, 4096),
        (3, 10001),
        (2**33 + 1, 9),
        (2**36 + 3, 9),
    ],
)
def test_the_compiled_loop_equals_numpy_bit_for_bit(start, n, dtype, labels):
    seed = derive_seed(7, 1, 2)
    want = philox._draws_numpy(n, *philox.key_of(seed), 5, start, labels).astype(dtype)
    np.testing.assert_array_equal(_compiled(n, seed, 5, start, dtype, labels), want)


def test_labels_are_the_lowest_bits_of_the_words_in_lane_order():
    seed = derive_seed(8)
    key = philox.key_of(seed)
    want = [w & 1 for b in range(3) for w in philox.block((b, 0, 1, 0), key)]
    np.testing.assert_array_equal(_compiled(12, seed, 1, 0, labels=True), want)


def test_labels_are_fair_and_uncorrelated():
    """10⁶ labels of seed 0: the share of ones within 5 standard errors of 1/2, lag correlations within 5/√n."""
    n = 10**6
    y = _compiled(n, derive_seed(0), 1, 0, labels=True)
    assert set(np.unique(y)) == {0.0, 1.0}
    assert abs(y.mean() - 0.5) < 5 * 0.5 / math.sqrt(n)
    for lag in (1, 2, 3, 4):
        assert abs(np.corrcoef(y[:-lag], y[lag:])[0, 1]) < 5 / math.sqrt(n)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 200), st.integers(0, 200), st.integers(0, 2**40))
def test_a_stretch_drawn_in_two_parts_is_the_stretch_drawn_at_once(split, rest, start):
    seed = derive_seed(3, 4)
    whole = _compiled(split + rest, seed, 0, start)
    parts = np.concatenate([_compiled(split, seed, 0, start), _compiled(rest, seed, 0, start + split)])
    np.testing.assert_array_equal(parts, whole)


def test_without_numba_the_numpy_loop_gives_the_same_numbers(monkeypatch):
    seed = derive_seed(11)
    fast = _compiled(1003, seed, 2, 17, np.float32)
    monkeypatch.setattr(compiled, "available", lambda: False)
    np.testing.assert_array_equal(_compiled(1003, seed, 2, 17, np.float32), fast)


def test_the_log_polynomial_is_within_4e16_of_libm():
    """ln u on the radius grid's extremes and 10⁵ random points: error ≤ 4·10⁻¹⁶·max(1, |ln u|) at each point."""
    k = np.concatenate([[0, 1, 2, 2**31, 2**32 - 2, 2**32 - 1], np.random.default_rng(2).integers(0, 2**32, 10**5)])
    u = (k.astype(np.float64) + 1.0) * philox.TWO_M32
    err = np.abs(philox._log_numpy(u) - np.log(u))
    assert (err <= 4e-16 * np.maximum(1.0, np.abs(np.log(u)))).all()


def test_sin_and_cos_polynomials_are_within_1e15_of_libm():
    x = np.concatenate([np.arange(2**12) / 2**10, np.random.default_rng(3).random(10**5) * 4])  # x = 4u' ∈ [0, 4)
    cos, sin = philox._sincos_numpy(x)
    assert np.abs(cos - np.cos(np.pi / 2 * x)).max() <= 1e-15
    assert np.abs(sin - np.sin(np.pi / 2 * x)).max() <= 1e-15


def test_the_normals_have_the_moments_and_law_of_n01():
    """10⁶ draws of seed 0: mean and variance within 5 standard errors, Kolmogorov-Smirnov p > 10⁻³,
    |z| ≤ √(2·32 ln 2) = 6.66 (the radius grid's bound), lag-1 correlation within 5/√n."""
    n = 10**6
    z = _compiled(n, derive_seed(0), 0, 0)
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs((z**4).mean() - 3) < 5 * math.sqrt(96 / n)  # Var z⁴ = 105 − 9
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert np.abs(z).max() <= math.sqrt(64 * math.log(2))
    for lag in (1, 2, 3, 4):  # within a block, across blocks
        assert abs(np.corrcoef(z[:-lag], z[lag:])[0, 1]) < 5 / math.sqrt(n)


def test_streams_of_other_seeds_and_purposes_are_uncorrelated():
    n = 2 * 10**5
    a = _compiled(n, derive_seed(0), 0, 0)
    for b in (
        _compiled(n, derive_seed(1), 0, 0),
        _compiled(n, derive_seed(0), 1, 0),
        _compiled(n, derive_seed(0), 0, n),
    ):
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(n)


def test_the_g_sample_stream_draws_its_gaussian_inputs_and_labels_from_philox():
    """counter_inputs: x and y are the Philox streams (purposes 0 and 1) of the data stream's seed,
    read on across calls, into buffers as into new tensors; without it (or with a finite training
    set) the torch sampler as before."""
    cfg = from_dict({"model": {"inputs": 4, "hidden": 5}})
    s = SampleStream(cfg, 3, 1, dtype=torch.float32, counter_inputs=True)
    x1, y1 = s.batches(5, 3)
    x2, y2 = torch.empty(2 * 3, 4), torch.empty(2 * 3)
    s.batches_into(x2, y2)
    key = derive_seed(3, 1, DATA)
    got = torch.cat([x1.reshape(-1), x2.reshape(-1)]).numpy()
    np.testing.assert_array_equal(got, _compiled(7 * 3 * 4, key, 0, 0, np.float32))
    got = torch.cat([y1.reshape(-1), y2]).numpy()
    np.testing.assert_array_equal(got, _compiled(7 * 3, key, 1, 0, np.float32, labels=True))
    plain = SampleStream(cfg, 3, 1, dtype=torch.float32)
    assert not torch.equal(plain.batches(5, 3)[0], x1)
    finite = cfg.replace(data={"train_size": 30})
    a, b = SampleStream(finite, 3, 1, counter_inputs=True), SampleStream(finite, 3, 1)
    assert torch.equal(a.batches(5, 3)[0], b.batches(5, 3)[0])


def test_non_contiguous_buffers_get_the_numbers_of_new_tensors():
    cfg = from_dict({"model": {"inputs": 4, "hidden": 5}})
    a, b = (SampleStream(cfg, 3, 1, dtype=torch.float32, counter_inputs=True) for _ in range(2))
    x, y = a.batches(6, 2)
    bx, by = torch.full((4, 12), float("nan")).T, torch.full((12, 2), float("nan"))[:, 0]  # strided views
    b.batches_into(bx, by)
    assert torch.equal(bx, x.reshape(12, 4)) and torch.equal(by, y.reshape(-1))


_FRESH_OR_CACHED = r"""
import sys
import numpy as np
from thermosgd.twolayer import philox
out = []
for dtype in (np.float64, np.float32):
    z = np.empty(4099, dtype)
    philox.normals_into(z, 123456789, 3, 5)
    out.append(z.astype(np.float64))
np.save(sys.argv[1], np.concatenate(out))
"""


def test_the_normals_compiled_here_equal_the_ones_loaded_from_numbas_cache(tmp_path):
    _load("numba_cache").compiled_then_cached(tmp_path, _FRESH_OR_CACHED)
