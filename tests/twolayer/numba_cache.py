"""A test helper: a script's numbers from a process that compiles numba's kernels and from one that
loads them from numba's cache."""

import numpy as np


def compiled_then_cached(tmp_path, script: str) -> None:
    """Run ``script`` (it saves its numbers to argv[1]) in two processes sharing an empty numba cache
    directory: the first compiles, the second loads from the cache; their numbers must be equal."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join(sys.path)}
    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}.npy"
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env, timeout=300)
        outs.append(np.load(out))
    assert any((tmp_path / "cache").rglob("*.nbi")), "numba cached nothing: the test compared two fresh compiles"
    np.testing.assert_array_equal(outs[0], outs[1])
