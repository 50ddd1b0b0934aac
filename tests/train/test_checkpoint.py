"""Checkpoints: safetensors + JSON round trip, atomic folders, RNG restore, kept count."""

import random

import numpy as np
import pytest
import torch

from deepnotes.errors import UserError
from deepnotes.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint


def _model_and_adam():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(3):
        m(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    return m, opt


def test_round_trip_restores_weights_optimizer_and_rngs(tmp_path):
    m, opt = _model_and_adam()
    save_checkpoint(tmp_path, m, opt, {"epoch": 1, "step": 3, "history": []})
    expected = (torch.rand(3), np.random.rand(2), random.random())

    m2 = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-2)
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    state = load_checkpoint(list_checkpoints(tmp_path)[-1], m2, opt2, torch.device("cpu"))
    assert state["epoch"] == 1 and state["step"] == 3
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for pid in s1["state"]:
        for key, v in s1["state"][pid].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(s2["state"][pid][key])), key
    assert (torch.rand(3), np.random.rand(2), random.random())[0].tolist() == expected[0].tolist()


def test_keeps_newest_and_leaves_no_temporary_folder(tmp_path):
    m, opt = _model_and_adam()
    for epoch in range(1, 5):
        save_checkpoint(tmp_path, m, opt, {"epoch": epoch, "step": epoch})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch-0003", "epoch-0004"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0003", "epoch-0004"]


def test_failed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    m, opt = _model_and_adam()
    save_checkpoint(tmp_path, m, opt, {"epoch": 1, "step": 1})
    import deepnotes.train.checkpoint as ck

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "rng_state", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, m, opt, {"epoch": 2, "step": 2})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["epoch-0001"]


def test_unreadable_checkpoint_is_a_user_error(tmp_path):
    m, opt = _model_and_adam()
    folder = save_checkpoint(tmp_path, m, opt, {"epoch": 1, "step": 1})
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"cannot read checkpoint .*epoch-0001"):
        load_checkpoint(folder, m, opt, torch.device("cpu"))
