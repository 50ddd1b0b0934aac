"""A plain CNN and the same CNN behind a spatial transformer (ST-CNN), with the same parameter budget.

Source: Jaderberg et al. 2015, "Spatial Transformer Networks", section 4.1: on distorted MNIST the CNN "include[s]
two max-pooling layers", every model has "three weight layers in the classification network" and all "have
approximately the same number of parameters"; the ST-CNN puts a spatial transformer on the input of the CNN.
Lecture: ML2021 Spring (Hung-yi Lee), "Spatial Transformer Layer" (seed 000 of the notes).

The budget: :class:`STCNN` = localization network + regression layer + :class:`DigitCNN`; its plain counterpart
is a :class:`DigitCNN` with other widths, found by :func:`matched_cnn` (its parameter count within a few per cent of the
ST-CNN's). Parameter counts with the defaults (in_channels 1, 10 classes, channels (16, 32), affine; the
transformer's localization network and regression layer are 5,328 of the ST-CNN's parameters):

============  =========  ======  ==============  ============
image size    ST output  ST-CNN  matched CNN     its (c1, c2)
============  =========  ======  ==============  ============
28 (R, P, E)  28         34,266  34,354 (+0.3%)  (18, 36)
42 (RTS)      42         50,586  50,362 (-0.4%)  (17, 35)
60 (TC)       60         90,586  91,436 (+0.9%)  (17, 34)
60 (TC)       30         34,266  34,156 (-0.3%)  (7, 14)
============  =========  ======  ==============  ============

Counts are recomputed in the tests (``tests/models/test_stn.py``), which also check they stay within 10%.
"""

from __future__ import annotations

from torch import Tensor, nn

from deepnotes.models.registry import register_model
from deepnotes.nn.spatial import SpatialTransformer


def _conv_out(size: int) -> int:
    """Side after the two (5x5 'same' conv -> 2x2 max pool) stages."""
    return size // 2 // 2


def digit_cnn_num_params(image_size: int, channels: tuple[int, int], in_channels: int = 1,
                         num_classes: int = 10) -> int:
    """Parameter count of ``DigitCNN(in_channels, num_classes, image_size, channels)``, in closed form."""
    c1, c2 = channels
    side = _conv_out(image_size)
    return c1 * (25 * in_channels + 1) + c2 * (25 * c1 + 1) + num_classes * (c2 * side * side + 1)


class DigitCNN(nn.Module):
    """Classification CNN with three weight layers and two max-pooling layers (section 4.1).

    conv5x5(c1, same) -> ReLU -> maxpool2 -> conv5x5(c2, same) -> ReLU -> maxpool2 -> flatten -> linear(K).

    Args:
        in_channels: C. Default 1.
        num_classes: K. Default 10.
        image_size: side S of the square inputs (28, 42 or 60 for the distorted digits; >= 4). Default 28.
        channels: (c1, c2), the two convolutions' widths. Default (16, 32).

    Shapes:
        x: (B, C, S, S) float pixels -> logits (B, K).

    Raises:
        ValueError: ``image_size < 4`` or a width < 1; in forward, an input of another size.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 channels: tuple[int, int] = (16, 32)):
        super().__init__()
        if image_size < 4:
            raise ValueError(f"image_size must be >= 4, got {image_size}")
        if len(channels) != 2 or min(channels) < 1:
            raise ValueError(f"channels must be two widths >= 1, got {channels}")
        c1, c2 = channels
        self.image_size, self.channels = image_size, (c1, c2)
        side = _conv_out(image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=5, padding=2),  # (B, c1, S, S)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, c1, S/2, S/2)
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, c2, S/4, S/4)
            nn.Flatten(),  # (B, c2 * (S/4)^2)
        )
        self.classifier = nn.Linear(c2 * side * side, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"DigitCNN expects {self.image_size}x{self.image_size} images, "
                             f"got x of shape {tuple(x.shape)}")
        return self.classifier(self.features(x))


class STCNN(nn.Module):
    """ST-CNN: a :class:`~deepnotes.nn.spatial.SpatialTransformer` on the input, then a :class:`DigitCNN`.

    Args:
        in_channels: C. Default 1.
        num_classes: K. Default 10.
        image_size: side S of the square inputs. Default 28.
        output_size: side of the transformer's output (the CNN's input); None (the default) keeps S. A smaller one
            (60 -> 30) makes the transformer zoom in on the digit of a large canvas.
        transform: ``"affine"`` or ``"projective"``. Default "affine".
        channels: the CNN's (c1, c2). Default (16, 32).
        fast: sample with torch's ``affine_grid`` / ``grid_sample`` (True) or the readable ones (False).

    Attributes:
        transformer: the spatial transformer (``transformer.last_theta`` holds the latest θ, for plots).
        cnn: the classification network.

    Shapes:
        x: (B, C, S, S) float pixels -> logits (B, K); :meth:`transformed` gives the transformer's output
        (B, C, S_out, S_out).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 output_size: int | None = None, transform: str = "affine", channels: tuple[int, int] = (16, 32),
                 fast: bool = True):
        super().__init__()
        out = image_size if output_size is None else output_size
        self.image_size = image_size
        self.transformer = SpatialTransformer(in_channels, transform=transform, output_size=out, fast=fast)
        self.cnn = DigitCNN(in_channels, num_classes, out, channels)

    def transformed(self, x: Tensor) -> Tensor:
        """The transformer's output for ``x``: (B, C, S_out, S_out)."""
        return self.transformer(x)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"STCNN expects {self.image_size}x{self.image_size} images, got x of shape "
                             f"{tuple(x.shape)}")
        return self.cnn(self.transformer(x))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matched_cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, output_size: int | None = None,
                transform: str = "affine", channels: tuple[int, int] = (16, 32)) -> DigitCNN:
    """The plain :class:`DigitCNN` with the budget of ``STCNN(**same arguments)``: "the same number of parameters".

    Widths keep the ratio c1 : c2 = 1 : 2 of the default (c1 = c2 // 2); c2 is the width whose parameter count is
    nearest the ST-CNN's. With a transformer that zooms (``output_size`` < ``image_size``) the ST-CNN's classifier
    is smaller than a plain CNN on the full image, so the matched plain CNN can come out narrower than the ST-CNN's.
    Takes :class:`STCNN`'s arguments (but ``fast``, which changes no parameter), so one set of keyword arguments
    builds either model.

    Returns:
        a freshly initialized DigitCNN for (B, in_channels, image_size, image_size) inputs.
    """
    target = count_parameters(STCNN(in_channels, num_classes, image_size, output_size, transform, channels))
    best = min(range(2, 1025), key=lambda c2: abs(
        digit_cnn_num_params(image_size, (c2 // 2, c2), in_channels, num_classes) - target))
    return DigitCNN(in_channels, num_classes, image_size, (best // 2, best))


# ----------------------------------------------------------------------------------- registry
@register_model("st-cnn")
def st_cnn(in_channels: int = 1, num_classes: int = 10, **kwargs) -> STCNN:
    """:class:`STCNN`; keyword arguments are its own (``image_size``, ``output_size``, ``transform``, ...)."""
    return STCNN(in_channels, num_classes, **kwargs)


@register_model("st-cnn-plain")
def st_cnn_plain(in_channels: int = 1, num_classes: int = 10, **kwargs) -> DigitCNN:
    """:func:`matched_cnn`: the plain CNN with the budget of ``st-cnn`` built with the same arguments."""
    return matched_cnn(in_channels, num_classes, **kwargs)
