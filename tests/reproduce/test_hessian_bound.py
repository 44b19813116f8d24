"""``reproduce hessian-bound`` at its quick size: raw studies on disk, the analysis read back from them,
its rows on the page; and the decomposition's judged rows."""

from __future__ import annotations

import json

import pytest

from thermosgd import presets
from thermosgd.analysis.hessian_bound import BOUND, STDERR, TRACE
from thermosgd.analysis.verdict import NOT_MEASURED, VERDICTS
from thermosgd.report import collect
from thermosgd.reproduce.hessian_bound import assess_folder, run_hessian_bound
from thermosgd.sweep.store import load


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("hessian-bound")
    run_hessian_bound(out, quick=True, progress=False)
    return out


def test_each_study_keeps_its_raw_results_with_the_hessian(folder):
    for name in presets.get("hessian-bound").params["settings"]:
        ds = load(folder / "runs" / name)
        assert {TRACE, STDERR, BOUND} <= set(ds.data_vars)
        assert ds[BOUND].notnull().all()  # both models are ReLU MLPs with the BCE loss: the bound applies


def test_the_summary_is_recomputed_from_disk(folder):
    stored = json.loads((folder / "hessian-bound.json").read_text())
    again = json.loads(json.dumps(assess_folder(folder, n_boot=presets.get("hessian-bound").quick["n_boot"])))
    assert again["claims"] == stored["claims"]
    assert (folder / "hessian_bound.png").exists() and (folder / "report.md").exists()


def test_the_page_shows_one_row_per_claim_part(folder):
    (section,) = collect(folder).sections
    labels = [c.label for c in section.claims]
    assert len(labels) == 10 and labels[0] == "two-layer: trace ≤ bound + 3 s.e. at every step"
    assert all(c.verdict in VERDICTS and c.verdict != NOT_MEASURED for c in section.claims)
    first = section.claims[0]
    assert first.paper == "no violation" and first.measured.startswith("0 of ")  # the text analysis wrote


def test_seeds_and_steps_set_both_studies(tmp_path):
    run_hessian_bound(tmp_path, quick=True, progress=False, seeds=3, steps=6)
    for name in ("two-layer", "mlp"):
        ds = load(tmp_path / "runs" / name)
        assert ds.sizes["seed"] == 3 and int(ds["step"].values[-1]) == 6


def test_decomposition_rows_stand_on_the_page(tmp_path):
    from thermosgd.reproduce.decomposition import reproduce_decomposition

    reproduce_decomposition(presets.get("decomposition"), tmp_path, quick=True, progress=False)
    (section,) = collect(tmp_path).sections
    assert [c.label.split(": ", 1)[1] for c in section.claims[:2]] == [
        "θ-dependence of the noise carries the fall",
        "state-independent noise does not",
    ]
    assert (
        section.claims[0].paper == "sgd − frozen: CI < 0" and section.claims[1].paper == "frozen − gd: |diff| ≤ margin"
    )
    assert all(c.verdict in VERDICTS for c in section.claims)


def test_decomposition_defaults_fit_the_default_set():
    p = presets.get("decomposition")
    assert p in presets.default_set() and p.size() == (16, 1500)


def test_one_seed_is_refused_in_library_terms(tmp_path):
    from thermosgd.errors import UsageError

    with pytest.raises(UsageError, match="seeds must be at least 2 for hessian-bound") as err:
        run_hessian_bound(tmp_path, quick=True, progress=False, seeds=1)
    assert err.value.param == "seeds" and not any(tmp_path.iterdir())
