"""Training runs in full float32 (no TF32) and gives the caller's flags back (thermosgd/precision.py)."""

from __future__ import annotations

import pytest
import torch

from thermosgd.precision import full_float32


@pytest.mark.parametrize("start", [True, False])
def test_tf32_is_off_inside_and_restored_after(start):
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.allow_tf32, matmul.allow_tf32
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = start
        with full_float32():
            assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (start, start)
        with pytest.raises(KeyError), full_float32():
            raise KeyError("a failed run")
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (start, start)
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def _tf32_seen_by(monkeypatch, owner, name: str) -> list[bool]:
    """Turn TF32 on for cuDNN, and record whether it is on whenever ``owner.name`` is called."""
    seen: list[bool] = []
    real = getattr(owner, name)

    def spy(*a, **k):
        seen.append(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
        return real(*a, **k)

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    monkeypatch.setattr(owner, name, spy)
    return seen


def test_training_turns_tf32_off(monkeypatch):
    """Seen from inside a step of the two-layer engine."""
    import thermosgd
    from thermosgd.config import from_dict
    from thermosgd.twolayer import engine

    seen = _tf32_seen_by(monkeypatch, engine, "sgd_step")
    thermosgd.train(from_dict({"model": {"inputs": 3, "hidden": 4}, "train": {"steps": 3, "fused": False}}))
    assert seen and not any(seen) and torch.backends.cudnn.allow_tf32


def test_a_study_trains_without_tf32(monkeypatch):
    import thermosgd
    from thermosgd.deep.models import mlp
    from thermosgd.studies import engine

    seen = _tf32_seen_by(monkeypatch, engine, "_build")
    spec = {
        "data": {"dim": 5, "probe_size": 8},
        "train": {"loss": "bce", "lr": [0.05], "batch_size": [2], "seeds": 1, "steps": 2},
        "record": {"steps": [0, 2]},
    }
    thermosgd.study(spec, model=lambda seed: mlp(5, 4, 1, 1, seed=seed))
    assert seen and not any(seen) and torch.backends.cudnn.allow_tf32
