"""Write the bit-identity reference results (run once, before a refactor).

Usage: python tests/reference/make_reference.py   (writes tests/reference/*.nc, *.json)

The float32 files were produced by the code as it stood before the layered
layout (issue 9); ``tests/test_reference.py`` re-runs the same configurations
with today's code and compares to the tolerance stated in ``compare.py``
(exactly with ``THERMOSGD_REFERENCE_EXACT=1``, for files regenerated on the
same machine by the code before a refactor). ``--only fig3-float64`` writes
one file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from reference_runs import deep_fig2_middle, twolayer, walk_suite  # noqa: E402

WRITERS = {
    "fig3": lambda: twolayer("fig3").to_netcdf(HERE / "fig3.nc"),
    "fig7": lambda: twolayer("fig7").to_netcdf(HERE / "fig7.nc"),
    "fig3-float64": lambda: twolayer("fig3", "float64").to_netcdf(HERE / "fig3-float64.nc"),
    "fig2-middle": lambda: deep_fig2_middle(HERE / "_tmp_fig2m").to_netcdf(HERE / "fig2-middle.nc"),
    "walk": lambda: (HERE / "walk.json").write_text(json.dumps(walk_suite(), indent=1, sort_keys=True)),
}


def main() -> None:
    names = sys.argv[sys.argv.index("--only") + 1 :] if "--only" in sys.argv else list(WRITERS)
    for name in names:
        WRITERS[name]()


if __name__ == "__main__":
    main()
