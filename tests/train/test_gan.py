"""The shared GAN training step and its batch source: shapes, which networks each update moves, the conditional
path's labels, clipping, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.train import TensorBatches
from deepnotes.train.gan import CriticBatches, GANTask, GANVariant
from deepnotes.train.task import Step


def test_critic_batches_reshape_the_inner_batches_in_order():
    x, y = torch.arange(40.0).view(20, 2), torch.arange(20)
    inner = TensorBatches((x, y), 6, seed=3, steps_per_epoch=4)
    outer = CriticBatches(inner, 3)
    assert len(outer) == 4
    for (bx, by), (ix, iy) in zip(outer.epoch(1), inner.epoch(1)):
        assert bx.shape == (3, 2, 2) and by.shape == (3, 2)
        assert torch.equal(bx.reshape(6, 2), ix) and torch.equal(by.reshape(6), iy)
    with pytest.raises(ValueError, match="n_critic"):
        CriticBatches(inner, 0)
    with pytest.raises(ValueError, match="does not split"):
        next(CriticBatches(inner, 4).epoch(0))


class RecordingG(nn.Module):
    """z (B, 2) [+ y] -> (B, 3); records the labels it was given."""

    def __init__(self, conditional: bool):
        super().__init__()
        self.lin, self.emb = nn.Linear(2, 3), nn.Embedding(4, 3) if conditional else None
        self.seen: list[torch.Tensor] = []

    def forward(self, z, y=None):
        if y is not None:
            self.seen.append(y)
            return self.lin(z) + self.emb(y)
        return self.lin(z)


class SmallD(nn.Module):
    def __init__(self, conditional: bool):
        super().__init__()
        self.lin, self.emb = nn.Linear(3, 1), nn.Embedding(4, 3) if conditional else None

    def forward(self, x, y=None):
        out = self.lin(x).squeeze(1)
        return out if y is None else out + (self.emb(y) * x).sum(1)


def one_step(variant: GANVariant, batch, num_classes: int = 0):
    torch.manual_seed(0)
    model = nn.ModuleDict({"generator": RecordingG(variant.conditional), "discriminator": SmallD(variant.conditional)})
    task = GANTask(model, variant, 2, lr=0.05, beta1=0.5, clip_value=0.01, num_classes=num_classes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opts = task.configure_optimizers(None)
    out = task.training_step(model, batch, Step(0, 0, 1, generator=torch.Generator().manual_seed(1), optimizers=opts))
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    return model, out, moved


def test_an_update_moves_both_networks_and_reports_both_losses():
    model, out, moved = one_step(GANVariant("ns", "nonsaturating"), torch.randn(1, 5, 3))
    assert {"generator.lin.weight", "discriminator.lin.weight"} <= moved
    assert set(out.sums) == {"d_loss", "g_loss"} and out.count == 1 and torch.isfinite(out.loss)


def test_clipping_after_every_critic_update():
    model, out, _ = one_step(GANVariant("clip", "wasserstein", repeat_critic=True, clip=True, optimizer="rmsprop"),
                             (torch.randn(3, 5, 3),))  # a tuple whose first item is the batch
    assert all(float(p.detach().abs().max()) <= 0.01 + 1e-7 for p in model["discriminator"].parameters())


def test_conditional_step_draws_labels_in_range_and_trains_the_embeddings():
    variant = GANVariant("c", "hinge", repeat_critic=True, gp=True, conditional=True)
    x, y = torch.randn(2, 6, 3), torch.randint(4, (2, 6))
    model, _, moved = one_step(variant, (x, y), num_classes=4)
    seen = torch.cat(model["generator"].seen)
    assert len(model["generator"].seen) == 3 and seen.min() >= 0 and seen.max() < 4  # 2 critic updates + G's
    assert {"discriminator.emb.weight", "generator.emb.weight"} <= moved
    with pytest.raises(ValueError, match="num_classes"):
        GANTask(model, variant, 2, 0.1, 0.5)


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_d_lr_scale_sets_the_discriminator_step_and_survives_the_schedule(scale):
    """Adam's first step moves every weight by about its learning rate: lr for G, lr * d_lr_scale for D; the
    Trainer's schedule multiplies a group's ``lr_scale``, so the ratio stays."""
    model, _, _ = one_step(GANVariant("ttur", "hinge", betas=(0.0, 0.9), d_lr_scale=scale), torch.randn(1, 5, 3))
    torch.manual_seed(0)
    fresh = nn.ModuleDict({"generator": RecordingG(False), "discriminator": SmallD(False)})
    for name, lr in (("generator", 0.05), ("discriminator", 0.05 * scale)):
        step = (model[name].lin.weight - fresh[name].lin.weight).abs()
        assert torch.allclose(step, torch.full_like(step, lr), rtol=1e-3)
    task = GANTask(fresh, GANVariant("ttur", "hinge", d_lr_scale=scale), 2, lr=0.05, beta1=0.5)
    opts = task.configure_optimizers(None)
    assert [g["lr_scale"] for g in opts["discriminator"].param_groups] == [scale]
    assert opts["discriminator"].param_groups[0]["lr"] == pytest.approx(0.05 * scale)
    assert opts["generator"].param_groups[0]["lr"] == pytest.approx(0.05)


class AuxD(SmallD):
    """SmallD with AC-GAN's class head: ``forward_aux`` -> (logits (B,), class logits (B, 4))."""

    def __init__(self):
        super().__init__(conditional=True)
        self.cls = nn.Linear(3, 4)

    def forward_aux(self, x, y):
        return self.forward(x, y), self.cls(x)


def test_ac_gan_adds_both_class_losses_to_d_and_the_fake_one_to_g():
    """One discriminator update: its reported loss is the hinge loss plus w (CE on real + CE on generated), with
    the noise and labels the step draws; the class head moves; G's loss carries w CE too."""
    w, K = 2.0, 4
    variant = GANVariant("ac", "hinge", conditional=True, aux_weight=w)
    x, y = torch.randn(1, 6, 3), torch.randint(K, (1, 6), generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    model = nn.ModuleDict({"generator": RecordingG(True), "discriminator": AuxD()})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = GANTask(model, variant, 2, lr=0.05, beta1=0.5, num_classes=K)
    g = torch.Generator().manual_seed(1)
    z, y_fake = torch.randn(6, 2, generator=g), torch.randint(K, (6,), generator=g)  # the step's first draws
    G, D = model["generator"], model["discriminator"]
    with torch.no_grad():
        fake = G(z, y_fake)
        (d_real, c_real), (d_fake, c_fake) = D.forward_aux(x[0], y[0]), D.forward_aux(fake, y_fake)
        want = (torch.relu(1 - d_real).mean() + torch.relu(1 + d_fake).mean()
                + w * (F.cross_entropy(c_real, y[0]) + F.cross_entropy(c_fake, y_fake)))
    opts = task.configure_optimizers(None)
    out = task.training_step(model, (x, y), Step(0, 0, 1, generator=torch.Generator().manual_seed(1),
                                                  optimizers=opts))
    assert out.sums["d_loss"] == pytest.approx(float(want), rel=1e-6)
    assert not torch.equal(model.state_dict()["discriminator.cls.weight"], before["discriminator.cls.weight"])
    z2, y2 = torch.randn(6, 2, generator=g), torch.randint(K, (6,), generator=g)  # the generator update's draws
    G0 = RecordingG(True)
    G0.load_state_dict({k.removeprefix("generator."): v for k, v in before.items() if k.startswith("generator.")})
    with torch.no_grad():  # G's loss is taken with D after its update and G before its own
        d_gen, c_gen = D.forward_aux(G0(z2, y2), y2)
        want_g = -d_gen.mean() + w * F.cross_entropy(c_gen, y2)
    assert out.sums["g_loss"] == pytest.approx(float(want_g), rel=1e-6)
    with pytest.raises(ValueError, match="conditional"):
        GANTask(model, GANVariant("ac", "hinge", aux_weight=1.0), 2, 0.1, 0.5)
