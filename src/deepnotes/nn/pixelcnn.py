r"""Autoregressive models of binary images: masked convolutions, PixelCNN, gated PixelCNN, FVSBN, NADE.

Source: EE-559 (Fleuret) "autoregression" lecture: write the density of an image as a product of conditionals in
raster order (row after row, left to right),

    p(x) = Π_{i=1}^{D} p(x_i | x_1, ..., x_{i-1}),        D = H·W pixels,

model every conditional with one network whose output at pixel i reads only the pixels before i, train by maximum
likelihood (the negative log-likelihood is a sum of D binary cross-entropies), and sample pixel by pixel.
For binary pixels each conditional is a Bernoulli with logit ``ℓ_i``: ``-log p(x) = Σ_i BCE(ℓ_i, x_i)`` nats; the
same number over ``D ln 2`` is bits per dimension.

Papers:

* A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu 2016, "Pixel Recurrent Neural Networks" (ICML), section 3.4
  and Figure 2: the **PixelCNN**, a stack of convolutions whose kernels are *masked* so that the output at a pixel
  sees only the pixels above it and to its left. Mask **A** (first layer) also hides the centre pixel, since the
  network must not read the pixel it predicts; mask **B** (every later layer) keeps the centre, because the
  features there already depend only on earlier pixels. With colour, the masks also order the R, G, B channels
  within a pixel; the images here have one channel, so no channel masking is needed and none is done.
  Binarized MNIST: PixelCNN 81.30 nats (their Table 4).
* A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu 2016, "Conditional Image
  Generation with PixelCNN Decoders" (NeurIPS), section 2: a stack of masked 3x3 convolutions has a **blind
  spot** (the pixels up and to the right that no path reaches); the **gated PixelCNN** removes it with two
  stacks, a *vertical* one that sees every row above (a (k//2+1) x k convolution) and a *horizontal* one that
  sees the pixels to the left in the current row (a 1 x (k//2+1) convolution), the vertical stack feeding the
  horizontal one through a 1x1 convolution after a one-row shift; activations are gated,
  ``y = tanh(W_f * x) ⊙ σ(W_g * x)``, and the horizontal stack has a residual connection (their Figure 2).
* B. J. Frey 1998, "Graphical Models for Machine Learning and Digital Communication" (the fully visible
  sigmoid belief net, **FVSBN**): ``p(x_i = 1 | x_<i) = σ(b_i + Σ_{j<i} W_ij x_j)``, a logistic regression per pixel
  on the pixels before it, i.e. a linear layer with a strictly lower-triangular weight matrix.
* H. Larochelle, I. Murray 2011, "The Neural Autoregressive Distribution Estimator" (AISTATS), eqs. 4-6:
  **NADE**, ``h_i = σ(c + W_{:,<i} x_<i)``, ``p(x_i = 1 | x_<i) = σ(b_i + V_i · h_i)``, the hidden
  pre-activations shared between conditionals (a running sum over pixels), O(DH) per image. Their Table 2
  (binarized MNIST): FVSBN 97.45 nats, NADE 88.86 nats.

Deliberate differences from the papers: the plain PixelCNN's residual block is ReLU -> masked 3x3 (mask B) added to
its input (the paper's block has 1x1 -> 3x3 -> 1x1 convolutions inside); the gated PixelCNN's first block uses mask
A in its horizontal stack (its input pixel is hidden by a one-pixel shift, its residual is dropped) and the network
ends, like the PixelCNN, with ReLU -> 1x1 -> ReLU -> 1x1 to one logit per pixel; no conditioning vector ``h``.

Every model here maps binary images ``x`` (B, 1, H, W) in {0, 1} to Bernoulli logits (B, 1, H, W), the logit at
pixel (r, c) a function of the pixels before it in raster order only (``tests/nn/test_pixelcnn.py`` checks it by
gradients), so :func:`deepnotes.nn.autoencoder.bernoulli_nll` and :func:`sample` serve all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FVSBN", "NADE", "GatedBlock", "GatedPixelCNN", "IndependentBernoulli", "MaskedConv2d", "PixelCNN",
           "bits_per_dim", "causal_mask", "sample"]


def _check_int(name: str, value, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_network_sizes(channels: int, num_layers: int, hidden_kernel_size: int, head_channels: int | None) -> int:
    """The checks both PixelCNNs make of their sizes; returns ``head_channels`` (default: ``channels``)."""
    _check_int("channels", channels)
    _check_int("num_layers", num_layers, 0)
    _check_odd("hidden_kernel_size", hidden_kernel_size)
    head_channels = channels if head_channels is None else head_channels
    _check_int("head_channels", head_channels)
    return head_channels


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` of the images as ints, each >= 1; a ValueError naming ``shape`` otherwise."""
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {tuple(shape)}")
    for name, side in zip(("H", "W"), shape):
        _check_int(f"shape's {name}", side)
    return int(shape[0]), int(shape[1])


def _check_odd(name: str, value) -> None:
    _check_int(name, value)
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd (the kernel is centred on the pixel), got {value}")


def _check_mask_type(mask_type) -> None:
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' (hides the centre pixel) or 'B' (keeps it), got {mask_type!r}")


def _check_images(name: str, x: Tensor, shape: tuple[int, int] | None = None) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 1:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} expects images x of shape (B, 1, H, W), got {got}")
    if shape is not None and tuple(x.shape[-2:]) != tuple(shape):
        raise ValueError(f"{name} was built for {shape[0]}x{shape[1]} images, got x of shape {tuple(x.shape)}")


# ----------------------------------------------------------------------------------------------- masked convolution
def causal_mask(kernel_size: int, mask_type: str) -> Tensor:
    """The (k, k) 0/1 mask of a masked convolution: 1 on the rows above the centre, on the centre row left of the
    centre, and (mask ``"B"`` only) on the centre itself.

    Example: ``causal_mask(3, "A")`` is ``[[1, 1, 1], [1, 0, 0], [0, 0, 0]]``; ``"B"`` adds the centre.

    Raises:
        ValueError: ``kernel_size`` not a positive odd integer, or ``mask_type`` not "A" / "B".
    """
    _check_odd("kernel_size", kernel_size)
    _check_mask_type(mask_type)
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    mask[:c] = 1  # every row above the centre
    mask[c, : c + (mask_type == "B")] = 1  # the centre row, left of the centre (and the centre for B)
    return mask


class MaskedConv2d(nn.Conv2d):
    r"""A k x k convolution (stride 1, "same" zero padding) whose kernel is multiplied by :func:`causal_mask`, so
    that output pixel (r, c) reads input pixels (r', c') only for r' < r, or r' = r and c' < c (mask "A"), c' <= c
    (mask "B"). van den Oord et al. 2016, section 3.4. One grey channel: no masking across colour channels.

    Args:
        in_channels, out_channels: channels in and out.
        kernel_size: odd k (default 3).
        mask_type: ``"A"`` (first layer: hides the centre pixel) or ``"B"`` (later layers: keeps it).
        bias: add a bias (default True).

    Shapes:
        x (B, C_in, H, W) -> (B, C_out, H, W).

    Raises:
        ValueError: even or non-positive ``kernel_size``, ``mask_type`` not "A" / "B".

    Example::

        conv = MaskedConv2d(1, 16, 7, "A")
        y = conv(torch.zeros(4, 1, 28, 28))   # (4, 16, 28, 28)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, mask_type: str = "B",
                 bias: bool = True):
        mask = causal_mask(kernel_size, mask_type)  # validates first
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.mask_type = mask_type
        self.register_buffer("mask", mask[None, None], persistent=False)  # (1, 1, k, k), broadcast over channels

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_type={self.mask_type!r}"


class PixelCNN(nn.Module):
    r"""The PixelCNN of van den Oord et al. 2016 (Pixel RNN paper, section 3.4) for binary images: a masked
    k x k convolution of type A, ``num_layers`` residual blocks ``x + MaskedConv_B(ReLU(x))`` (3x3), then
    ReLU -> 1x1 -> ReLU -> 1x1 to one Bernoulli logit per pixel. Has the blind spot (see :class:`GatedPixelCNN`).

    Args:
        channels: feature channels (default 64).
        num_layers: residual masked-convolution blocks after the first layer (default 6).
        kernel_size: odd size of the first (mask A) kernel (default 7).
        hidden_kernel_size: odd size of the blocks' (mask B) kernels (default 3).
        head_channels: channels of the 1x1 output layers (default ``channels``).

    Shapes:
        x (B, 1, H, W) in {0, 1} -> logits (B, 1, H, W); logit (r, c) depends on x before (r, c) in raster order.

    Raises:
        ValueError: a size below 1, an even kernel size, input not (B, 1, H, W).
    """

    def __init__(self, channels: int = 64, num_layers: int = 6, kernel_size: int = 7, hidden_kernel_size: int = 3,
                 head_channels: int | None = None):
        super().__init__()
        head_channels = _check_network_sizes(channels, num_layers, hidden_kernel_size, head_channels)
        self.input_conv = MaskedConv2d(1, channels, kernel_size, "A")
        self.blocks = nn.ModuleList(MaskedConv2d(channels, channels, hidden_kernel_size, "B")
                                    for _ in range(num_layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, head_channels, 1), nn.ReLU(),
                                  nn.Conv2d(head_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        _check_images("PixelCNN", x)
        h = self.input_conv(x.to(self.input_conv.weight.dtype))  # (B, C, H, W)
        for conv in self.blocks:
            h = h + conv(F.relu(h))  # residual, mask B
        return self.head(h)  # (B, 1, H, W)


# ----------------------------------------------------------------------------------------------- gated PixelCNN
def _gate(h: Tensor) -> Tensor:
    """``tanh(a) ⊙ σ(b)`` for (a, b) the two halves of ``h``'s channels: (B, 2C, H, W) -> (B, C, H, W)."""
    a, b = h.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedBlock(nn.Module):
    r"""One layer of the gated PixelCNN (van den Oord et al. 2016b, Figure 2), without conditioning.

    With p = k // 2, on the vertical input ``v`` and the horizontal input ``h``::

        f_v = Conv_{(p+1) x k}(v)                 # output row r reads rows r-p .. r, columns c-p .. c+p
        v'  = tanh(f_v,1) ⊙ σ(f_v,2)
        f_h = Conv_{1 x (p+1)}(h) + Conv_1x1(shift_down(f_v))   # row r reads the vertical stack's rows < r
        h'  = h + Conv_1x1(tanh(f_h,1) ⊙ σ(f_h,2))               # no residual in the first (mask A) block

    The horizontal convolution reads columns c-p .. c (mask "B") or c-p-1 .. c-1 (mask "A": the first block,
    whose input is the image itself). The vertical stack at row r depends on image rows <= r (including row r,
    which is why it reaches the horizontal stack only shifted down by one row); the horizontal stack at
    (r, c) depends on pixels before (r, c) only. Convolutions are cropped rather than masked: no multiplications by 0.

    Args:
        in_channels: channels of ``v`` and ``h`` (1 for the first block, on the image).
        channels: channels out (C).
        kernel_size: odd k (default 3).
        mask_type: ``"A"`` (first block) or ``"B"``.

    Shapes:
        v, h (B, C_in, H, W) -> v', h' (B, C, H, W).

    Raises:
        ValueError: even kernel size, a size below 1, ``mask_type`` not "A" / "B", or mask "B" with
            ``in_channels != channels`` (the residual needs equal widths).
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 3, mask_type: str = "B"):
        super().__init__()
        _check_int("in_channels", in_channels)
        _check_int("channels", channels)
        _check_odd("kernel_size", kernel_size)
        _check_mask_type(mask_type)
        if mask_type == "B" and in_channels != channels:
            raise ValueError(f"a mask 'B' block adds its input (residual): in_channels ({in_channels}) must equal "
                             f"channels ({channels})")
        p = kernel_size // 2
        self.p, self.mask_type = p, mask_type
        self.v_conv = nn.Conv2d(in_channels, 2 * channels, (p + 1, kernel_size))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_conv = nn.Conv2d(in_channels, 2 * channels, (1, p + 1))
        self.h_out = nn.Conv2d(channels, channels, 1)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        p, W = self.p, v.shape[-1]
        f_v = self.v_conv(F.pad(v, (p, p, p, 0)))  # pad (left, right, top, bottom): row r reads rows r-p .. r
        shifted = F.pad(f_v, (0, 0, 1, 0))[..., :-1, :]  # (B, 2C, H, W): row r holds f_v of row r-1 (row 0: zeros)
        if self.mask_type == "A":  # columns c-p-1 .. c-1: pad p+1 on the left, drop the last output column
            f_h = self.h_conv(F.pad(h, (p + 1, 0, 0, 0)))[..., :W]
        else:  # columns c-p .. c
            f_h = self.h_conv(F.pad(h, (p, 0, 0, 0)))
        out = self.h_out(_gate(f_h + self.v_to_h(shifted)))
        return _gate(f_v), (out if self.mask_type == "A" else h + out)


class GatedPixelCNN(nn.Module):
    r"""The gated PixelCNN (van den Oord et al. 2016b) for binary images: a :class:`GatedBlock` of mask A and
    kernel ``kernel_size`` on the image, ``num_layers`` gated blocks of mask B and kernel ``hidden_kernel_size``,
    then ReLU -> 1x1 -> ReLU -> 1x1 on the horizontal stack to one Bernoulli logit per pixel. No blind spot: with
    enough layers the logit at (r, c) reads every pixel above it within the vertical stack's reach
    (``p_1 + L p + 1`` rows up, ``p_1 + L p`` columns either side; p = kernel // 2, L = ``num_layers``) and the
    ``p_1 + L p + 1`` pixels to its left: with the defaults, 10 rows up, 9 columns either side, 10 pixels left.

    Args:
        channels: channels of both stacks (default 64).
        num_layers: mask-B gated blocks after the first one (default 6).
        kernel_size: odd size of the first block's kernels (default 7).
        hidden_kernel_size: odd size of the other blocks' kernels (default 3).
        head_channels: channels of the 1x1 output layers (default ``channels``).

    Shapes:
        x (B, 1, H, W) in {0, 1} -> logits (B, 1, H, W); logit (r, c) depends on x before (r, c) in raster order.

    Raises:
        ValueError: a size below 1, an even kernel size, input not (B, 1, H, W).

    Example::

        model = GatedPixelCNN(channels=32, num_layers=4)
        logits = model(torch.zeros(8, 1, 28, 28))   # (8, 1, 28, 28)
    """

    def __init__(self, channels: int = 64, num_layers: int = 6, kernel_size: int = 7, hidden_kernel_size: int = 3,
                 head_channels: int | None = None):
        super().__init__()
        head_channels = _check_network_sizes(channels, num_layers, hidden_kernel_size, head_channels)
        self.blocks = nn.ModuleList([GatedBlock(1, channels, kernel_size, "A")] +
                                    [GatedBlock(channels, channels, hidden_kernel_size, "B")
                                     for _ in range(num_layers)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, head_channels, 1), nn.ReLU(),
                                  nn.Conv2d(head_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        _check_images("GatedPixelCNN", x)
        v = h = x.to(self.head[-1].weight.dtype)
        for block in self.blocks:
            v, h = block(v, h)
        return self.head(h)  # (B, 1, H, W)


# ----------------------------------------------------------------------------------------------- baselines
class IndependentBernoulli(nn.Module):
    r"""Every pixel an independent Bernoulli: ``p(x) = Π_i σ(ℓ_i)^{x_i} (1 - σ(ℓ_i))^{1 - x_i}``; the logits read no
    pixel at all. Its maximum-likelihood fit has a closed form (:meth:`fit`): ``ℓ_i`` = the log-odds of pixel i's
    mean over the training images, smoothed by ``alpha`` pseudo-counts of each value (so that a pixel never seen on
    gets a finite logit).

    Args:
        shape: (H, W) of the images (default (28, 28)).

    Shapes:
        x (B, 1, H, W) -> logits (B, 1, H, W) (the same for every image).

    Raises:
        ValueError: a side below 1; input of another shape.
    """

    def __init__(self, shape: Sequence[int] = (28, 28)):
        super().__init__()
        self.shape = _check_shape(shape)
        self.logits = nn.Parameter(torch.zeros(1, 1, *self.shape))

    @torch.no_grad()
    def fit(self, x: Tensor, alpha: float = 1.0) -> "IndependentBernoulli":
        """Set ``ℓ_i = log((n_i + alpha) / (N - n_i + alpha))``, n_i = how many of the N images have pixel i on.

        Args:
            x: (N, 1, H, W) binary training images.
            alpha: pseudo-count added to each outcome, >= 0 (default 1: Laplace's rule).

        Returns:
            self.

        Raises:
            ValueError: ``x`` of the wrong shape or empty, ``alpha`` negative.
        """
        _check_images("IndependentBernoulli.fit", x, self.shape)
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        n, ones = x.shape[0], x.double().sum(0, keepdim=True)  # (1, 1, H, W)
        if n == 0:
            raise ValueError("IndependentBernoulli.fit needs at least one image")
        self.logits.copy_((torch.log(ones + alpha) - torch.log(n - ones + alpha)).to(self.logits.dtype))
        return self

    def forward(self, x: Tensor) -> Tensor:
        _check_images("IndependentBernoulli", x, self.shape)
        return self.logits.expand(x.shape[0], -1, -1, -1)


class FVSBN(nn.Module):
    r"""The fully visible sigmoid belief net (Frey 1998): ``ℓ_i = b_i + Σ_{j<i} W_ij x_j`` over the D = H·W pixels in
    raster order, a linear layer whose weight matrix is masked to its strictly lower triangle (a logistic
    regression per pixel on the pixels before it).

    Args:
        shape: (H, W) of the images (default (28, 28)).

    Shapes:
        x (B, 1, H, W) -> logits (B, 1, H, W).

    Raises:
        ValueError: a side below 1; input of another shape.
    """

    def __init__(self, shape: Sequence[int] = (28, 28)):
        super().__init__()
        self.shape = _check_shape(shape)
        D = self.shape[0] * self.shape[1]
        self.weight = nn.Parameter(torch.zeros(D, D))  # W_ij, only j < i used; zero init: the first step is the mean
        self.bias = nn.Parameter(torch.zeros(D))
        self.register_buffer("mask", torch.ones(D, D).tril(-1), persistent=False)  # strictly lower triangle

    def forward(self, x: Tensor) -> Tensor:
        _check_images("FVSBN", x, self.shape)
        flat = x.flatten(1).to(self.weight.dtype)  # (B, D), raster order
        return F.linear(flat, self.weight * self.mask, self.bias).view_as(x)


class NADE(nn.Module):
    r"""NADE (Larochelle & Murray 2011): ``a_i = c + Σ_{j<i} W_{:,j} x_j`` (a running sum, eq. 6),
    ``h_i = σ(a_i)``, ``ℓ_i = b_i + V_i · h_i``, over the D pixels in raster order.

    Args:
        shape: (H, W) of the images (default (28, 28)).
        hidden: H_h, the hidden units (default 500, as in the paper).

    Shapes:
        x (B, 1, H, W) -> logits (B, 1, H, W). Memory: a (B, D, hidden) activation.

    Raises:
        ValueError: a size below 1; input of another shape.
    """

    def __init__(self, shape: Sequence[int] = (28, 28), hidden: int = 500):
        super().__init__()
        _check_int("hidden", hidden)
        self.shape = _check_shape(shape)
        D = self.shape[0] * self.shape[1]
        self.W = nn.Parameter(torch.randn(hidden, D) / math.sqrt(D))
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.randn(D, hidden) / math.sqrt(hidden))
        self.b = nn.Parameter(torch.zeros(D))

    def forward(self, x: Tensor) -> Tensor:
        _check_images("NADE", x, self.shape)
        flat = x.flatten(1).to(self.W.dtype)  # (B, D)
        contrib = flat[:, :, None] * self.W.t()[None]  # (B, D, hidden): x_j W_{:,j}
        a = self.c + contrib.cumsum(1) - contrib  # (B, D, hidden): exclusive running sum, pixels j < i only
        logits = self.b + (torch.sigmoid(a) * self.V).sum(-1)  # (B, D)
        return logits.view_as(x)


# ----------------------------------------------------------------------------------------------- likelihood, samples
def bits_per_dim(nats_per_image: float, dims: int) -> float:
    """``nats / (dims · ln 2)``: the negative log-likelihood in bits per pixel. Raises ValueError: ``dims`` < 1."""
    _check_int("dims", dims)
    return nats_per_image / (dims * math.log(2))


@torch.no_grad()
def sample(model: nn.Module, n: int, shape: Sequence[int] = (1, 28, 28), generator: torch.Generator | None = None,
           device: torch.device | str | None = None) -> Tensor:
    r"""Draw ``n`` images from an autoregressive model, pixel by pixel in raster order: for every (r, c), run the
    model on the image so far and draw ``x_{r,c} ~ Bernoulli(σ(ℓ_{r,c}))`` (H·W forward passes).

    Args:
        model: maps (n, 1, H, W) binary images to logits of the same shape, the logit at a pixel reading only the
            pixels before it (every model of this module).
        n: images to draw, >= 1.
        shape: (1, H, W) (default (1, 28, 28)).
        generator: a CPU generator for the draws (default None: torch's global one); the same seed, the same images.
        device: where the model runs (default: where its first parameter is, else CPU).

    Returns:
        (n, 1, H, W) float32 images in {0, 1}, on the CPU.

    Raises:
        ValueError: ``n`` < 1 or ``shape`` not (1, H, W).
    """
    _check_int("n", n)
    if len(shape) != 3 or shape[0] != 1 or min(shape) < 1:
        raise ValueError(f"shape must be (1, H, W) (one channel), got {tuple(shape)}")
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    x = torch.zeros(n, *shape)
    H, W = shape[1], shape[2]
    for r in range(H):
        for c in range(W):
            logits = model(x.to(device))[:, 0, r, c].float().cpu()  # (n,)
            x[:, 0, r, c] = torch.bernoulli(torch.sigmoid(logits), generator=generator)
    model.train(was_training)
    return x
