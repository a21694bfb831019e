import os

import pytest
import torch

from occreid.engine.checkpoint import rng_state, set_rng_state
from occreid.errors import OccreidError
from occreid.modeling.checkpoint import FORMAT, load_checkpoint, save_checkpoint


def test_round_trip_and_weights_only(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "rng": rng_state()}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["format"] == FORMAT and loaded["epoch"] == 3
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_rng_state_restores_every_generator(tmp_path):
    import random

    import numpy as np

    save_checkpoint(tmp_path / "c.pt", {"model": {}, "rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and (expected[1] == again[1]).all() and expected[2] == again[2]


def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.ones(2)}})

    def boom(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.zeros(2)}})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_truncated_foreign_and_missing_checkpoints_are_clear_errors(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.randn(1000)}})
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(OccreidError, match=r"cut\.pt is truncated or not a torch checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(OccreidError, match="not an occreid checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(OccreidError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    os.remove(tmp_path / "c.pt")
