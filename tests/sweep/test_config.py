import pytest

from thermosgd.config import from_dict, load_toml
from thermosgd.errors import UsageError


def test_defaults_and_seed_count():
    cfg = from_dict({"train": {"seeds": 3, "lr": 0.1}})
    assert cfg.train.seeds == (0, 1, 2)
    assert cfg.train.lr == (0.1,)
    assert cfg.model.hidden == 10


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"train": {"lr": [0.1, -0.2]}}, "[train] lr"),
        ({"train": {"lr": [0.0]}}, "[train] lr"),
        ({"train": {"batch_size": [0]}}, "[train] batch_size"),
        ({"train": {"steps": 0}}, "[train] steps"),
        ({"train": {"steps": 1.5}}, "[train] steps"),
        ({"train": {"loss": "hinge"}}, "bce, mse"),
        ({"data": {"inputs": "cauchy"}}, "gaussian, uniform"),
        ({"model": {"widht": 3}}, "[model] widht"),
        ({"optimizer": {}}, "[optimizer]"),
        ({"train": {"seeds": 0}}, "[train] seeds"),
        ({"train": {"record_every": 3, "probe_every": 4}}, "multiple"),
        ({"model": {"bias": "yes"}}, "[model] bias"),
        ({"train": {"seed": -1}}, "[train] seed"),
        ({"data": {"probe_size": 1}}, "[data] probe_size"),
        ({"train": {"seeds": [2**64]}}, "[0, 2^31)"),
        ({"train": {"seeds": [2**31]}}, "[0, 2^31)"),  # stored as int32: would fail inside a unit
        ({"train": {"seed": 2**63}}, "below 2^63"),
        ({"train": {"seeds": 10**8}}, "seeds = 100000000 is beyond the supported maximum 1000000"),
        ({"train": {"seeds": list(range(1_000_001))}}, "beyond the supported maximum 1000000"),
        ({"train": {"steps": 10**20}}, "[train] steps = 100000000000000000000 is beyond the supported maximum"),
        ({"sweep": {"seeds_per_unit": 0}}, '[sweep] seeds_per_unit must be "auto" or a positive integer'),
        ({"sweep": {"seeds_per_unit": "many"}}, "[sweep] seeds_per_unit must be"),
        ({"train": {"lr": [1e308]}}, "[train] lr"),
        ({"train": {"lr": [float("nan")]}}, "[train] lr"),
        ({"model": {"init_scale": float("nan")}}, "[model] init_scale"),
    ],
)
def test_bad_values_name_the_key(raw, words):
    with pytest.raises(UsageError, match=r".*") as info:
        from_dict(raw)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nlr = [0.05, 0.1]\nseeds = 2\n[model]\ninputs = 3\n")
    cfg = load_toml(p)
    assert cfg.train.lr == (0.05, 0.1) and cfg.model.inputs == 3
    p.write_text("[train\nlr = ")
    with pytest.raises(UsageError, match="malformed TOML"):
        load_toml(p)
    with pytest.raises(UsageError, match="cannot read"):
        load_toml(tmp_path / "missing.toml")
