"""The U-Net generator and the PatchGAN discriminator: shapes, what the skips carry (by gradient), the receptive
field of every patch logit (by gradient), the registry, errors."""

from __future__ import annotations

import pytest
import torch

from deepnotes.models.image_translation import PatchDiscriminator, UNet28
from deepnotes.models.registry import create_model, list_models


def test_unet_shapes_and_range():
    G = create_model("unet-generator", in_channels=1, out_channels=3, width=4)
    y = G(torch.randn(2, 1, 28, 28))
    assert y.shape == (2, 3, 28, 28) and float(y.detach().abs().max()) < 1
    assert "unet-generator" in list_models() and "patchgan-discriminator" in list_models()
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        G(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="norm"):
        UNet28(norm="layer")


@pytest.mark.parametrize("skips", [True, False])
def test_with_the_bottleneck_cut_only_the_skips_carry_the_input(skips):
    torch.manual_seed(0)
    G = UNet28(1, 1, width=4, skips=skips)
    G.mid.register_forward_hook(lambda m, i, out: torch.zeros_like(out))  # nothing passes the 7x7 bottleneck
    x = torch.randn(2, 1, 28, 28, requires_grad=True)
    G(x).sum().backward()
    carried = 0.0 if x.grad is None else float(x.grad.abs().sum())  # None: no path from x at all
    assert (carried > 0) if skips else (carried == 0)  # an encoder-decoder without skips loses everything


def test_the_skips_gradient_reaches_the_first_layer():
    torch.manual_seed(0)
    G = UNet28(1, 1, width=4)
    feats = {}
    G.enc1.register_forward_hook(lambda m, i, out: feats.setdefault("e1", out.retain_grad() or out))
    G(torch.randn(2, 1, 28, 28)).sum().backward()
    full = feats["e1"].grad.clone()
    G.dec1.register_forward_hook(lambda m, i, out: out.detach())  # the decoder path is cut; the skip is left
    feats.clear()
    G(torch.randn(2, 1, 28, 28)).sum().backward()
    assert float(full.abs().sum()) > 0 and float(feats["e1"].grad.abs().sum()) > 0  # the 28x28 skip alone


@pytest.mark.parametrize("extra, field", [(0, (10, 4, -3)), (1, (18, 4, -7))])
def test_patchgan_receptive_field_by_gradient(extra, field):
    torch.manual_seed(0)
    D = PatchDiscriminator(in_channels=3, cond_channels=1, width=4, extra_layers=extra)
    assert D.receptive_field == field
    x, c = torch.randn(1, 3, 28, 28, requires_grad=True), torch.randn(1, 1, 28, 28, requires_grad=True)
    logits = D(x, c)
    assert logits.shape == (1, 1, 7, 7)
    for i in range(7):
        for j in range(7):
            gx, gc = torch.autograd.grad(logits[0, 0, i, j], (x, c), retain_graph=True)
            seen = (gx.abs().sum((0, 1)) + gc.abs().sum((0, 1))) > 0  # (28, 28): pixels this logit depends on
            rows, cols = D.patch_field(i, j)
            inside = torch.zeros(28, 28, dtype=torch.bool)
            inside[rows, cols] = True
            assert not seen[~inside].any(), (i, j)  # zero gradient from every pixel outside the field
            r, k = seen.nonzero().T  # ... and the field is no larger than needed: its border pixels count
            assert (int(r.min()), int(r.max()) + 1, int(k.min()), int(k.max()) + 1) == \
                (rows.start, rows.stop, cols.start, cols.stop), (i, j)


def test_patchgan_batch_norm_in_eval_keeps_the_field_and_conditioning_errors():
    D = create_model("patchgan-discriminator", in_channels=1, width=4, norm="batch").eval()
    x = torch.randn(2, 1, 28, 28, requires_grad=True)
    (g,) = torch.autograd.grad(D(x)[0, 0, 0, 0], x)
    assert g[:, :, 7:, :].abs().sum() == 0 and g[:, :, :, 7:].abs().sum() == 0  # logit (0, 0): rows/cols 0..6
    with pytest.raises(ValueError, match="condition"):
        D(x, torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError, match="condition"):
        PatchDiscriminator(1, cond_channels=1)(x)
    with pytest.raises(ValueError, match=">= 0"):
        PatchDiscriminator(1, extra_layers=-1)
