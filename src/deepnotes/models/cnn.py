"""Image classifiers: a LeNet-5-style CNN, a small bottleneck ResNet, airbench94's net, and an MLP baseline.

Each is registered by name for :func:`deepnotes.models.create_model` (``"lenet5"``, ``"resnet"``, ``"airbench"``,
``"image-mlp"``), built with the project's convention ``in_channels``, ``num_classes`` plus its own arguments.

Sources:
- Lecture 3 of ML2021/2022 (Hung-yi Lee), "Convolutional Neural Networks": receptive fields,
  parameter sharing, pooling, "the whole CNN" = (conv -> pool)* -> flatten -> fully connected.
- EE-559 (F. Fleuret) 8-2 "image classification": LeNet-5, 1x1 convolutions that reduce the number
  of channels before the expensive 3x3 convolution, pass-through (residual) connections.
- LeCun et al. 1998 (LeNet-5); He et al. 2016, "Deep Residual Learning for Image Recognition"
  (bottleneck block: 1x1 reduce -> 3x3 -> 1x1 expand, added to an identity or 1x1 projection).

Deliberate differences from the papers: LeNet-5 uses ReLU and max pooling (the modern reading in
the notes: "everybody loves ReLU") instead of tanh and subsampling, and pads its first convolution
so that 28x28 inputs play the role of the paper's 32x32. The ResNet is sized for 28x28 grayscale
images (a 3x3 stem, three stages at 28, 14 and 7 pixels) rather than ImageNet's 7x7 stem; batch
normalization follows every convolution as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from deepnotes.models.registry import register_model


class LeNet5(nn.Module):
    """LeNet-5-style CNN: conv5x5(6) -> pool -> conv5x5(16) -> pool -> fc120 -> fc84 -> fc(classes).

    Args:
        in_channels: input channels C (1 for grayscale). Default 1.
        num_classes: number of classes K. Default 10.
        width: multiplier on the channel and unit counts (1 = the paper's 6/16/120/84). Default 1.
        dropout: dropout probability before the last two fully connected layers. Default 0.

    Shapes:
        x: (B, C, 28, 28) float, normalized pixels -> logits (B, K).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 1, dropout: float = 0.0):
        super().__init__()
        c1, c2, f1, f2 = 6 * width, 16 * width, 120 * width, 84 * width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=5, padding=2),  # (B, c1, 28, 28)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, kernel_size=5),  # (B, c2, 10, 10)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, c2, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, c2 * 25)
            nn.Linear(c2 * 25, f1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(f1, f2),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(f2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (28, 28):
            raise ValueError(f"LeNet5 expects 28x28 images, got x of shape {tuple(x.shape)}")
        return self.classifier(self.features(x))


class Bottleneck(nn.Module):
    """Residual bottleneck block: y = relu(F(x) + shortcut(x)).

    F = conv1x1(C_in -> M) -> BN -> ReLU -> conv3x3(M -> M, stride) -> BN -> ReLU -> conv1x1(M -> C_out) -> BN,
    with M = C_out // expansion. The shortcut is the identity when shapes match, else a strided 1x1
    convolution + BN (the paper's "projection shortcut", option B).

    Args:
        in_channels: C_in. out_channels: C_out. stride: 1 or 2 (2 halves H and W).
        expansion: C_out / M, the bottleneck ratio. Default 4 (as in ResNet-50).

    Shapes:
        x: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 4):
        super().__init__()
        mid = max(1, out_channels // expansion)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, M, H, W)
        out = F.relu(self.bn2(self.conv2(out)))  # (B, M, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, C_out, H/s, W/s)
        return F.relu(out + self.shortcut(x))


@dataclass(frozen=True)
class ResNetConfig:
    """Shape of :class:`ResNet`.

    Attributes:
        widths: output channels of each stage; stage i > 0 starts with a stride-2 block. Default (64, 128, 256).
        blocks: number of bottleneck blocks per stage. Default (1, 2, 2).
        stem_channels: channels of the 3x3 stem convolution. Default 32.
        stem_pool: follow the stem with 2x2 max pooling, so the stages run at half the resolution
            (the role of ImageNet ResNet's stride-2 stem and pooling; about 4x cheaper). Default False.
        expansion: bottleneck ratio C_out / M. Default 4.
        dropout: dropout before the final linear layer. Default 0.
    """

    widths: tuple[int, ...] = (64, 128, 256)
    blocks: tuple[int, ...] = (1, 2, 2)
    stem_channels: int = 32
    stem_pool: bool = False
    expansion: int = 4
    dropout: float = 0.0


class ResNet(nn.Module):
    """Small bottleneck ResNet for 28x28 images: stem -> stages of bottleneck blocks -> global average pool -> linear.

    Args:
        in_channels: C. Default 1. num_classes: K. Default 10. config: a :class:`ResNetConfig`.

    Shapes:
        x: (B, C, H, W) float -> logits (B, K). Any H, W >= 4 works (global pooling at the end).

    Raises:
        ValueError: if ``config.widths`` and ``config.blocks`` differ in length.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, config: ResNetConfig = ResNetConfig()):
        super().__init__()
        if len(config.widths) != len(config.blocks):
            raise ValueError(
                f"ResNetConfig.widths {config.widths} and blocks {config.blocks} must have the same length"
            )
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, config.stem_channels, 3, padding=1, bias=False),  # (B, stem, H, W)
            nn.BatchNorm2d(config.stem_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2) if config.stem_pool else nn.Identity(),  # (B, stem, H/2, W/2) when pooling
        )
        layers: list[nn.Module] = []
        c_in = config.stem_channels
        for i, (width, n_blocks) in enumerate(zip(config.widths, config.blocks)):
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(Bottleneck(c_in, width, stride=stride, expansion=config.expansion))
                c_in = width
        self.stages = nn.Sequential(*layers)  # (B, widths[-1], H / 2^(S-1), W / 2^(S-1))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # (B, C_last, 1, 1)
            nn.Flatten(),  # (B, C_last)
            nn.Dropout(config.dropout),
            nn.Linear(c_in, num_classes),  # (B, K)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# ----------------------------------------------------------------------------------- airbench
def patch_whitening_filters(images: torch.Tensor, kernel_size: int = 2, eps: float = 5e-4) -> torch.Tensor:
    """Convolution filters that whiten the ``kernel_size`` x ``kernel_size`` patches of ``images``.

    PCA whitening (ML2021 "unsupervised learning: dimension reduction" for PCA; Jordan 2024, "94% on CIFAR-10 in
    3.29 seconds on a single GPU", for its use as a frozen first layer): with Sigma = E[p p^T] the second-moment
    matrix of the flattened patches p (D = C k^2 values) and Sigma = sum_i lambda_i u_i u_i^T, filter i is
    u_i / sqrt(lambda_i + eps), so the D outputs at each position are uncorrelated with unit variance. The filters
    are returned twice, as +u_i and -u_i, so that a ReLU/GELU after them keeps both signs (2 D filters).

    Args:
        images: (N, C, H, W) float, already normalized (e.g. a few thousand training images).
        kernel_size: k, the patch side. Default 2.
        eps: added to every eigenvalue; bounds the gain of near-constant directions. Default 5e-4.

    Returns:
        (2 D, C, k, k) weights, largest-variance direction first.

    Raises:
        ValueError: ``images`` is not 4-D or smaller than the patch.
    """
    if images.ndim != 4 or min(images.shape[-2:]) < kernel_size:
        raise ValueError(f"images must be (N, C, H, W) with H, W >= {kernel_size}, got shape {tuple(images.shape)}")
    c, k = images.shape[1], kernel_size
    patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H-k+1, W-k+1, k, k)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)  # (P, D), each row one (C, k, k) patch
    sigma = patches.T @ patches / len(patches)  # (D, D) second moment
    eigenvalues, eigenvectors = torch.linalg.eigh(sigma)  # ascending; columns are the u_i
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = (eigenvectors / torch.sqrt(eigenvalues + eps)).T.reshape(-1, c, k, k)  # (D, C, k, k)
    return torch.cat([filters, -filters])


class ScaleFreeBatchNorm2d(nn.BatchNorm2d):
    """Batch normalization with the scale gamma frozen at 1 and only the shift beta learned.

    The convolution before it is scale-invariant under batch normalization, so gamma adds nothing but one more
    learning rate to tune (Jordan 2024, after hlb-CIFAR10). eps 1e-12 and momentum 0.4 (torch's convention: running
    <- 0.6 running + 0.4 batch; fast statistics suit a few hundred updates).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, num_features: int, eps: float = 1e-12, momentum: float = 0.4):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


def batch_norm_shifts(model: nn.Module) -> list[nn.Parameter]:
    """The shifts (beta) of every batch normalization of ``model``: the group airbench94 trains at 64x the learning
    rate with 1/64 of the weight decay (Jordan 2024's "bias scaler"; see
    :func:`deepnotes.train.engine.make_optimizer`'s ``scaled``)."""
    return [m.bias for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None]


def dirac_conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 'same' convolution without bias, its first ``min(C_in, C_out)`` filters set to the identity (dirac)
    kernel and the rest left at torch's default initialization: at step 0 the block passes its input through,
    like a residual connection that costs nothing (Jordan 2024; Zagoruyko & Komodakis 2017, "DiracNets")."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_channels, out_channels)])
    return conv


class ConvGroup(nn.Module):
    """conv3x3 -> max pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU.

    Args:
        in_channels: C_in. out_channels: C_out.
        norm_eps: epsilon of both :class:`ScaleFreeBatchNorm2d`. Default 1e-12 (airbench94).

    Shapes: (B, C_in, H, W) -> (B, C_out, H // 2, W // 2).
    """

    def __init__(self, in_channels: int, out_channels: int, norm_eps: float = 1e-12):
        super().__init__()
        self.conv1 = dirac_conv3x3(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = ScaleFreeBatchNorm2d(out_channels, eps=norm_eps)
        self.conv2 = dirac_conv3x3(out_channels, out_channels)
        self.norm2 = ScaleFreeBatchNorm2d(out_channels, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(self.pool(self.conv1(x))))  # (B, C_out, H/2, W/2)
        return F.gelu(self.norm2(self.conv2(x)))


@dataclass(frozen=True)
class AirbenchConfig:
    """Shape of :class:`AirbenchNet`.

    Attributes:
        widths: output channels of the three conv groups. Default (32, 128, 128) (airbench94 on CIFAR-10:
            (64, 256, 256); about 3x cheaper, measured to reach 94% on Fashion-MNIST on 2 CPU cores).
        whiten_kernel: side k of the frozen whitening convolution's patches. Default 2.
        logit_scale: the logits are multiplied by this. Default 1/9.
        norm_eps: epsilon of every batch norm. Default 1e-12 (airbench94). Digits want torch's 1e-5: on a constant
            background, a channel whose max pooling picks background pixels in every window of every image is
            constant, its batch variance is 0, and 1 / sqrt(1e-12) = 1e6 amplifies the rounding noise of x - mean
            (erratic evaluation; NaN losses under bfloat16).
    """

    widths: tuple[int, int, int] = (32, 128, 128)
    whiten_kernel: int = 2
    logit_scale: float = 1 / 9
    norm_eps: float = 1e-12


class AirbenchNet(nn.Module):
    """Jordan's airbench94 network (2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU") for small images.

    whiten (frozen k x k conv, 2 C k^2 filters, learned bias, no padding) -> GELU -> 3 x :class:`ConvGroup`
    (each halves H and W) -> global max pool -> linear (no bias) -> x logit_scale.
    Call :meth:`init_whitening` with training images before training; until then the first layer is random.

    Args:
        in_channels: C. Default 1. num_classes: K. Default 10. config: an :class:`AirbenchConfig`.

    Shapes:
        x: (B, C, H, W) float, H and W >= 8 + k - 1 -> logits (B, K). 28x28: 27 -> 13 -> 6 -> 3 pixels.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, config: AirbenchConfig = AirbenchConfig()):
        super().__init__()
        k = config.whiten_kernel
        w1, w2, w3 = config.widths
        self.whiten = nn.Conv2d(in_channels, 2 * in_channels * k * k, k, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        eps = config.norm_eps
        self.groups = nn.Sequential(ConvGroup(self.whiten.out_channels, w1, eps), ConvGroup(w1, w2, eps),
                                    ConvGroup(w2, w3, eps))
        self.head = nn.Linear(w3, num_classes, bias=False)
        self.logit_scale = config.logit_scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the first layer to :func:`patch_whitening_filters` of ``images`` (N, C, H, W), normalized floats."""
        filters = patch_whitening_filters(images, self.whiten.kernel_size[0], eps)
        self.whiten.weight.copy_(filters.to(self.whiten.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(x)))  # (B, w3, H', W')
        return self.head(x.amax(dim=(2, 3))) * self.logit_scale  # (B, K)


class ImageMLP(nn.Sequential):
    """Fully connected baseline: flatten -> (linear -> ReLU) per hidden layer -> linear (Keskar et al. 2017's MNIST
    network is an MLP). Its layers are indexed 0, 1, ... as in ``nn.Sequential`` (0 is the flatten).

    Args:
        in_features: C * H * W (784 for 28x28 grey images). Default 784.
        num_classes: K. Default 10.
        hidden: units of each hidden layer. Default (256, 256).

    Shapes:
        x: (B, C, H, W) with C * H * W = in_features -> logits (B, K).
    """

    def __init__(self, in_features: int = 784, num_classes: int = 10, hidden: tuple[int, ...] = (256, 256)):
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        super().__init__(*layers, nn.Linear(in_features, num_classes))


# ----------------------------------------------------------------------------------- registry
@register_model("lenet5")
def lenet5(in_channels: int = 1, num_classes: int = 10, width: int = 1, dropout: float = 0.0) -> LeNet5:
    """:class:`LeNet5` (28x28 inputs)."""
    return LeNet5(in_channels, num_classes, width=width, dropout=dropout)


@register_model("resnet")
def resnet(in_channels: int = 1, num_classes: int = 10, **config) -> ResNet:
    """:class:`ResNet`; keyword arguments are the fields of :class:`ResNetConfig`.

    Raises:
        ValueError: ``widths`` and ``blocks`` differ in length.
    """
    return ResNet(in_channels, num_classes, ResNetConfig(**config))


@register_model("airbench")
def airbench(in_channels: int = 1, num_classes: int = 10, **config) -> AirbenchNet:
    """:class:`AirbenchNet`; keyword arguments are the fields of :class:`AirbenchConfig` (``widths``: 3 values).

    Raises:
        ValueError: ``widths`` does not have 3 values.
    """
    if "widths" in config and len(config["widths"]) != 3:
        raise ValueError(f"airbench has 3 conv groups, so 3 widths (e.g. 32,128,128), got {tuple(config['widths'])}")
    return AirbenchNet(in_channels, num_classes, AirbenchConfig(**config))


@register_model("image-mlp")
def image_mlp(in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
              hidden: tuple[int, ...] = (256, 256)) -> ImageMLP:
    """:class:`ImageMLP` over ``in_channels x image_size x image_size`` images."""
    return ImageMLP(in_channels * image_size * image_size, num_classes, tuple(hidden))
