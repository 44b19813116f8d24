"""Write the bit-identity reference results (run once, before a refactor).

Usage: python tests/reference/make_reference.py   (writes tests/reference/*.nc, *.json)

The files were produced by the code as it stood before the layered layout
(issue 9); ``tests/test_reference.py`` re-runs the same configurations with
today's code and demands bit-identical numbers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from reference_runs import deep_fig2_middle, twolayer, walk_suite  # noqa: E402


def main() -> None:
    for name in ("fig3", "fig7"):
        ds = twolayer(name)
        ds.to_netcdf(HERE / f"{name}.nc")
    deep_fig2_middle(HERE / "_tmp_fig2m").to_netcdf(HERE / "fig2-middle.nc")
    (HERE / "walk.json").write_text(json.dumps(walk_suite(), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
