"""pix2pix and CycleGAN steps (which networks each moves, what they report), the unpaired batch source, and a
CycleGAN run stopped after an epoch and resumed ending bit-equal to an uninterrupted one."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from deepnotes.models.registry import create_model
from deepnotes.train import Trainer
from deepnotes.train.config import TrainConfig
from deepnotes.train.image_translation import CycleGANTask, Pix2PixTask, UnpairedBatches, match_channels, to_signed
from deepnotes.train.task import Step


def _u8(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _moved(before: dict[str, torch.Tensor], model: nn.Module, prefix: str) -> bool:
    return any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith(prefix))


def _pix2pix(adversarial: bool) -> nn.ModuleDict:
    torch.manual_seed(0)
    nets = {"generator": create_model("unet-generator", width=4)}
    if adversarial:
        nets["discriminator"] = create_model("patchgan-discriminator", cond_channels=1, width=4)
    return nn.ModuleDict(nets)


def _cyclegan() -> nn.ModuleDict:
    torch.manual_seed(0)
    return nn.ModuleDict({"g_ab": create_model("unet-generator", in_channels=1, out_channels=3, width=4),
                          "g_ba": create_model("unet-generator", in_channels=3, out_channels=1, width=4),
                          "d_a": create_model("patchgan-discriminator", in_channels=1, width=4),
                          "d_b": create_model("patchgan-discriminator", in_channels=3, width=4)})


def _step(task) -> Step:
    return Step(0, 0, 1, optimizers=task.configure_optimizers(None))


def test_helpers():
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert to_signed(x).tolist() == [-1.0, 1.0]
    grey, rgb = torch.rand(2, 1, 3, 3), torch.rand(2, 3, 3, 3)
    assert torch.equal(match_channels(grey, 3), grey.expand(-1, 3, -1, -1))
    assert torch.allclose(match_channels(rgb, 1), rgb.mean(1, keepdim=True)) and match_channels(rgb, 3) is rgb
    with pytest.raises(ValueError, match="cannot map"):
        match_channels(torch.rand(1, 2, 3, 3), 3)


def test_pix2pix_step_moves_d_then_g_and_l1_only_has_no_d():
    model = _pix2pix(True)
    task = Pix2PixTask(model, l1_weight=100.0)
    before = _snapshot(model)
    out = task.training_step(model, (_u8(4, 1, 28, 28), _u8(4, 1, 28, 28, seed=1)), _step(task))
    assert _moved(before, model, "generator.") and _moved(before, model, "discriminator.")
    assert set(out.sums) == {"d_loss", "g_adv", "l1"} and out.sums["d_loss"] > 0 and out.count == 4  # sums over 4
    assert torch.allclose(out.loss, torch.tensor(out.sums["g_adv"] + 100 * out.sums["l1"]) / 4, rtol=1e-5)
    only = _pix2pix(False)
    t1 = Pix2PixTask(only, lr=2e-3)
    assert list(t1.configure_optimizers(None)) == ["generator"]
    x = _u8(4, 1, 28, 28)
    step = _step(t1)
    losses = [t1.training_step(only, (x, x), step).sums["l1"] / 4 for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0]  # it learns the identity on one batch: the L1 step descends
    with pytest.raises(ValueError, match="loss in"):
        Pix2PixTask(only, loss="wgan")


def test_cyclegan_step_moves_all_four_networks():
    model = _cyclegan()
    task = CycleGANTask(model)
    before = _snapshot(model)
    out = task.training_step(model, (_u8(4, 1, 28, 28), _u8(4, 3, 28, 28, seed=1)), _step(task))
    assert all(_moved(before, model, f"{n}.") for n in ("g_ab", "g_ba", "d_a", "d_b"))
    assert set(out.sums) == {"d_loss", "g_adv", "cycle", "identity"} and out.sums["identity"] > 0
    no_id = CycleGANTask(_cyclegan(), identity_weight=0)
    assert no_id.training_step(no_id.model, (_u8(4, 1, 28, 28), _u8(4, 3, 28, 28)),
                               _step(no_id)).sums["identity"] == 0
    with pytest.raises(ValueError, match="networks"):
        CycleGANTask(nn.ModuleDict({"g_ab": nn.Identity()}))


def test_unpaired_batches_shuffle_each_domain_on_its_own():
    a, b = torch.arange(12), torch.arange(100, 120)
    src = UnpairedBatches(a, b, 4, seed=5)
    assert len(src) == 3  # min(12, 20) // 4
    e0, e0_again, e1 = list(src.epoch(0)), list(UnpairedBatches(a, b, 4, seed=5).epoch(0)), list(src.epoch(1))
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(e0, e0_again))
    assert sorted(torch.cat([x for x, _ in e0]).tolist()) == list(range(12))  # each a once per epoch
    assert len(set(torch.cat([y for _, y in e0]).tolist())) == 12  # 12 distinct b's
    partner = lambda ep: {int(x): int(y) for xa, yb in ep for x, y in zip(xa, yb)}  # noqa: E731
    assert partner(e0) != partner(e1)  # no a is tied to a b
    longer = UnpairedBatches(a, b, 4, 0, steps_per_epoch=7)  # more rows than one permutation: chained
    assert len(longer) == 7 and len(list(longer.epoch(0))) == 7
    with pytest.raises(ValueError, match="non-empty"):
        UnpairedBatches(a[:0], b, 4, 0)


def test_cyclegan_resumed_after_an_epoch_ends_bit_equal(tmp_path):
    a, b = _u8(24, 1, 28, 28), _u8(24, 3, 28, 28, seed=1)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=2e-4, momentum=0.5, schedule="constant", warmup=0.0, progress=False)

    def trainer(folder, epochs):
        model = _cyclegan()
        return Trainer(replace(cfg, epochs=epochs), CycleGANTask(model), folder, UnpairedBatches(a, b, 4, 3, 2), {},
                       torch.device("cpu"), log=lambda m: None)

    full = trainer(tmp_path / "full", 2)
    full.fit()
    first = trainer(tmp_path / "stopped", 1)
    first.fit()
    torch.manual_seed(999)  # the resumed process starts with another global RNG state
    resumed = trainer(tmp_path / "stopped", 2)
    resumed.resume()
    resumed.fit()
    assert resumed.step == full.step == 4
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
