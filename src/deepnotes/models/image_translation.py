"""Image-to-image translation networks for 28x28 images: a U-Net generator and a PatchGAN discriminator.

Sources: EE-559 (Fleuret) pix2pix slides; ML2021 "GAN (4)". Isola et al., CVPR 2017 (pix2pix), section 3.2 and
appendix 6.1: the generator is an encoder-decoder with skip connections between mirrored layers (a U-Net,
Ronneberger et al. 2015: "concatenate all channels at layer i with those at layer n - i"), convolutions 4x4 of
stride 2, LeakyReLU(0.2) in the encoder, ReLU in the decoder, tanh at the output, weights from N(0, 0.02); the
discriminator is a PatchGAN that "only penalizes structure at the scale of patches": a fully convolutional net
whose every output is the logit of one N x N patch of the (input, output) pair being real (70x70 on 256x256
images). Zhu et al., ICCV 2017 (CycleGAN), section 4: the same PatchGAN, unconditional, and instance
normalization (Ulyanov et al. 2016) instead of batch normalization.

Shapes (``w`` = ``width``, C_in / C_out the channels)::

    U-Net:  x (B, C_in, 28, 28) -> enc1 Conv3x3 -> (B, w, 28, 28) -> enc2 Conv4x4/2 -> (B, 2w, 14, 14)
            -> enc3 Conv4x4/2 -> (B, 4w, 7, 7) -> mid Conv3x3 -> (B, 4w, 7, 7)
            -> dec2 ConvT4x4/2 -> (B, 2w, 14, 14) ++ enc2 -> (B, 4w, 14, 14)            (++: channel concatenation)
            -> dec1 ConvT4x4/2 -> (B, w, 28, 28)  ++ enc1 -> (B, 2w, 28, 28) -> Conv3x3 -> tanh -> (B, C_out, 28, 28)
    PatchGAN: [condition (B, C_cond, 28, 28) ++] x (B, C_in, 28, 28) -> Conv4x4/2 -> (B, w, 14, 14) -> LReLU
            -> Conv4x4/2 -> (B, 2w, 7, 7) -> [norm] -> LReLU -> extra_layers x (Conv3x3/1 -> [norm] -> LReLU)
            -> Conv1x1 -> (B, 1, 7, 7) patch logits

The PatchGAN's receptive field (:attr:`PatchDiscriminator.receptive_field`): 10 x 10 pixels with no extra layer
(each logit sees rows ``4i - 3 .. 4i + 6`` and columns ``4j - 3 .. 4j + 6``, clipped to the image), 8 more per
extra 3x3 layer; the patches overlap with a stride of 4 pixels. 10/28 of the side is near the paper's 70/256.

Registered: ``unet-generator`` and ``patchgan-discriminator``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from deepnotes.models.gan import dcgan_init_
from deepnotes.models.registry import register_model

__all__ = ["PatchDiscriminator", "UNet28", "patchgan_discriminator", "unet_generator"]

Norm = Literal["instance", "batch", "none"]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'instance', 'batch' or 'none', got {kind!r}")


class UNet28(nn.Module):
    """A U-Net for 28x28 images (28 -> 14 -> 7 -> 14 -> 28) with skip concatenations, tanh output.

    Args:
        in_channels: C_in, the input image's channels (>= 1). out_channels: C_out (>= 1).
        width: w, the channels at 28x28 (2w at 14x14, 4w at 7x7), >= 1. Default 32.
        norm: after every convolution but the first and the last: ``instance`` (default; CycleGAN's, and pix2pix's
            batch norm at batch size 1), ``batch`` or ``none``.
        skips: True (default): the U-Net; False: the plain encoder-decoder of Isola et al.'s ablation (section
            4.3, Figure 5), every bit of information through the 7x7 bottleneck.

    Shapes:
        x: (B, C_in, 28, 28), any range (the lab feeds [-1, 1]) -> (B, C_out, 28, 28) in (-1, 1).

    Raises:
        ValueError: a size below 1, an unknown norm; (forward) an input that is not (B, C_in, 28, 28).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32, norm: Norm = "instance",
                 skips: bool = True):
        super().__init__()
        if min(in_channels, out_channels, width) < 1:
            raise ValueError(f"in_channels, out_channels and width must be >= 1, got {in_channels}, {out_channels}, "
                             f"{width}")
        self.in_channels, self.out_channels, self.skips = in_channels, out_channels, skips
        w, k = width, 2 if skips else 1  # k: a decoder layer's input is [up, skip] with skips
        lrelu = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.enc1 = nn.Sequential(nn.Conv2d(in_channels, w, 3, 1, 1), lrelu())  # no norm on the first layer
        self.enc2 = nn.Sequential(nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), _norm(norm, 2 * w), lrelu())
        self.enc3 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False), _norm(norm, 4 * w), lrelu())
        self.mid = nn.Sequential(nn.Conv2d(4 * w, 4 * w, 3, 1, 1, bias=False), _norm(norm, 4 * w), nn.ReLU())
        self.dec2 = nn.Sequential(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False), _norm(norm, 2 * w), nn.ReLU())
        self.dec1 = nn.Sequential(nn.ConvTranspose2d(k * 2 * w, w, 4, 2, 1, bias=False), _norm(norm, w), nn.ReLU())
        self.out = nn.Conv2d(k * w, out_channels, 3, 1, 1)
        dcgan_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, 28, 28):
            raise ValueError(f"UNet28 expects (B, {self.in_channels}, 28, 28), got {tuple(x.shape)}")
        e1 = self.enc1(x)  # (B, w, 28, 28)
        e2 = self.enc2(e1)  # (B, 2w, 14, 14)
        h = self.mid(self.enc3(e2))  # (B, 4w, 7, 7)
        h = self.dec2(h)  # (B, 2w, 14, 14)
        h = self.dec1(torch.cat([h, e2], 1) if self.skips else h)  # (B, w, 28, 28)
        return torch.tanh(self.out(torch.cat([h, e1], 1) if self.skips else h))  # (B, C_out, 28, 28)


class PatchDiscriminator(nn.Module):
    """A PatchGAN: one logit per overlapping image patch; conditional when ``cond_channels > 0`` (pix2pix's D reads
    the input and the output concatenated), unconditional otherwise (CycleGAN's).

    Args:
        in_channels: channels of the image judged (>= 1). cond_channels: channels of the condition (0: none).
        width: w, the first layer's channels (2w after), >= 1. Default 32.
        norm: after every convolution but the first and the last: ``none`` (default: each logit then depends on
            its patch only, exactly), ``batch`` or ``instance`` (both mix statistics over the whole image in
            training, so the field is then nominal).
        extra_layers: 3x3 stride-1 convolutions (2w channels) before the 1x1 head, each widening the field by 8
            pixels (default 0: 10x10 patches).

    Shapes:
        x: (B, in_channels, 28, 28); condition: (B, cond_channels, 28, 28) or None -> logits (B, 1, 7, 7).

    Raises:
        ValueError: a size below 1, ``cond_channels`` or ``extra_layers`` below 0, an unknown norm; (forward) a
            condition given to an unconditional D or missing for a conditional one, wrong input shapes.
    """

    def __init__(self, in_channels: int = 1, cond_channels: int = 0, width: int = 32, norm: Norm = "none",
                 extra_layers: int = 0):
        super().__init__()
        if min(in_channels, width) < 1 or cond_channels < 0 or extra_layers < 0:
            raise ValueError(f"in_channels and width must be >= 1, cond_channels and extra_layers >= 0, got "
                             f"{in_channels}, {width}, {cond_channels}, {extra_layers}")
        self.in_channels, self.cond_channels = in_channels, cond_channels
        w = width
        layers: list[nn.Module] = [nn.Conv2d(in_channels + cond_channels, w, 4, 2, 1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(w, 2 * w, 4, 2, 1, bias=norm == "none"), _norm(norm, 2 * w),
                                   nn.LeakyReLU(0.2)]
        for _ in range(extra_layers):
            layers += [nn.Conv2d(2 * w, 2 * w, 3, 1, 1, bias=norm == "none"), _norm(norm, 2 * w), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Conv2d(2 * w, 1, 1))
        self.geometry = [(m.kernel_size[0], m.stride[0], m.padding[0]) for m in self.net if isinstance(m, nn.Conv2d)]
        dcgan_init_(self)

    @property
    def receptive_field(self) -> tuple[int, int, int]:
        """``(size, stride, start)``: logit (i, j) sees input rows ``start + stride * i`` to ``start + stride * i +
        size - 1`` (and the same for columns), before clipping to the image: (10, 4, -3) with no extra layer."""
        size, jump, start = 1, 1, 0
        for kernel, stride, padding in self.geometry:
            size += (kernel - 1) * jump
            start -= padding * jump
            jump *= stride
        return size, jump, start

    def patch_field(self, i: int, j: int, side: int = 28) -> tuple[slice, slice]:
        """The rows and columns of a ``side`` x ``side`` input that logit (i, j) depends on."""
        size, stride, start = self.receptive_field
        rows = slice(max(0, start + stride * i), min(side, start + stride * i + size))
        cols = slice(max(0, start + stride * j), min(side, start + stride * j + size))
        return rows, cols

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        if (condition is None) != (self.cond_channels == 0):
            raise ValueError(f"this discriminator has cond_channels = {self.cond_channels}: give a condition "
                             "exactly when it is conditional")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"PatchDiscriminator expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return self.net(x if condition is None else torch.cat([condition, x], 1))  # (B, 1, P, P)


@register_model("unet-generator")
def unet_generator(in_channels: int = 1, out_channels: int = 1, width: int = 32, norm: Norm = "instance",
                   skips: bool = True) -> UNet28:
    """:class:`UNet28`: (B, in_channels, 28, 28) -> (B, out_channels, 28, 28) in (-1, 1)."""
    return UNet28(in_channels, out_channels, width, norm, skips)


@register_model("patchgan-discriminator")
def patchgan_discriminator(in_channels: int = 1, cond_channels: int = 0, width: int = 32, norm: Norm = "none",
                           extra_layers: int = 0) -> PatchDiscriminator:
    """:class:`PatchDiscriminator`: (B, in_channels, 28, 28) [+ condition] -> (B, 1, 7, 7) patch logits."""
    return PatchDiscriminator(in_channels, cond_channels, width, norm, extra_layers)
