r"""Keyword-spotting models: the exercise's spectrogram CNN, the M5 raw-waveform CNN, and BC-ResNet.

Sources:

* seed 000, "Audio Classification with Spectrogram" (Speech Commands): the spectrogram of a 1 s clip,
  resized to (201, 81), into "CNN and Linear Classifier"; train 91 % / validation 90 %. The network is
  the one of Microsoft Learn's "Introduction to audio classification with PyTorch" that the exercise
  follows: conv5x5(32) -> pool -> conv5x5(64) -> dropout2d -> pool -> fc(50) -> dropout -> fc(classes),
  whose 64 x 47 x 17 = 51,136 flattened features fix the (201, 81) input (:class:`SpectrogramCNN`).
* Dai, Dai, Qu, Li & Das, "Very Deep Convolutional Neural Networks for Raw Waveforms", ICASSP 2017: M5,
  the raw-waveform baseline of PyTorch's "Speech Command Classification with torchaudio" tutorial
  (:class:`M5`; 26,915 parameters for 35 classes, as the tutorial prints).
* Kim, Chang, Lee & Sung, "Broadcasted Residual Learning for Efficient Keyword Spotting", Interspeech
  2021 (arXiv:2106.04140): BC-ResNet (:class:`BCResNet`, :class:`BCResBlock`), with Chang et al.,
  "Subspectral Normalization for Neural Audio Data Processing", ICASSP 2021 (:class:`SubSpectralNorm`).
  Layer sizes follow the authors' released code (Qualcomm-AI-research/bcresnet); BC-ResNet-1 has
  9.2 k parameters for 12 classes and BC-ResNet-8 321 k, as in the paper's Table 1 (tested).

The broadcasted residual block, for a feature map x of shape (C, F, T) (frequency F, time T)::

    f2(x)  = SSN(DWConv_{3x1}(x))                    2-D: a frequency-wise depthwise conv, per sub-band norm
    y      = x + f2(x) + BC(f1(avgpool_F(f2(x))))    avgpool_F: (C, F, T) -> (C, 1, T)
    f1     = Dropout2d(Conv_{1x1}(SiLU(BN(DWConv_{1x3, dilated}(.)))))   1-D: temporal, on one row
    BC     = broadcast of (C, 1, T) to (C, F, T)
    out    = ReLU(y)

so most of the computation is 1-D (over time) while the frequency structure is kept by the 2-D path. A
*transition* block (channel count changes, or the frequency stride is 2) first maps the channels with a
1x1 conv + BN + ReLU and drops the identity term x.

Deliberate differences from the sources (each documented in its class): :class:`SpectrogramCNN` takes
the one-channel dB spectrogram instead of an RGB image of it, and does not put a ReLU on its logits
(the exercise's code does, which clips every negative logit to 0); :class:`M5` returns logits (the
tutorial returns log-softmax) and takes 16 kHz input without resampling to 8 kHz first.

By name (:func:`deepnotes.models.create_model`): ``"spectrogram-cnn"``, ``"m5"``, ``"bcresnet"``; the keyword-spotting
lab's ``--model`` choices with :func:`keyword_spotter`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.models.registry import create_model, register_model

# ----------------------------------------------------------------------------------------------
# The exercise's CNN
# ----------------------------------------------------------------------------------------------


@register_model("spectrogram-cnn")
class SpectrogramCNN(nn.Module):
    r"""The exercise's CNN on a (201, 81) spectrogram: two 5x5 conv/pool layers and a two-layer classifier.

    ::

        x  <- resize(x, (201, 81))                       (bilinear; a no-op for a 400/200 STFT of 1 s at 16 kHz)
        h1 = ReLU(maxpool_2(Conv_5x5(C -> 32)(x)))        (B, 32, 98, 38)
        h2 = ReLU(maxpool_2(Dropout2d(Conv_5x5(32 -> 64)(h1))))    (B, 64, 47, 17)
        logits = Linear(50 -> K)(Dropout(ReLU(Linear(51136 -> 50)(flatten(h2)))))

    Args:
        num_classes: K. Default 35 (the Speech Commands v2 words).
        in_channels: C. Default 1 (the exercise used the 3 channels of an RGB image of the spectrogram).
        input_size: (frequency bins, frames) every input is resized to. Default (201, 81).
        dropout: probability of both dropouts (``Dropout2d`` after conv2, ``Dropout`` after fc1). Default 0.5.

    Shapes:
        x: (B, C, H, W), any H, W (resized) -> logits (B, K).

    Raises:
        ValueError: ``input_size`` too small for two conv5x5 + pool2 layers (needs >= 16 in each
        dimension); ``dropout`` outside [0, 1); an input that is not 4-D with C channels.

    Example::

        logits = SpectrogramCNN(35)(torch.randn(8, 1, 201, 81))   # (8, 35)
    """

    def __init__(self, num_classes: int = 35, in_channels: int = 1, input_size: tuple[int, int] = (201, 81),
                 dropout: float = 0.5):
        super().__init__()
        if len(input_size) != 2 or min(input_size) < 16:
            raise ValueError(f"input_size must be (H, W) with H, W >= 16, got {tuple(input_size)}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.input_size = in_channels, (int(input_size[0]), int(input_size[1]))
        h, w = ((self.input_size[0] - 4) // 2 - 4) // 2, ((self.input_size[1] - 4) // 2 - 4) // 2  # 47, 17
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(dropout)
        self.fc1 = nn.Linear(64 * h * w, 50)  # 51,136 inputs for (201, 81)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SpectrogramCNN expects (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)  # the exercise's resize
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (B, 32, 98, 38)
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))  # (B, 64, 47, 17)
        x = self.drop(F.relu(self.fc1(x.flatten(1))))  # (B, 50)
        return self.fc2(x)  # (B, K)


# ----------------------------------------------------------------------------------------------
# M5: a CNN on the raw waveform
# ----------------------------------------------------------------------------------------------


@register_model("m5")
class M5(nn.Module):
    r"""M5 (Dai et al. 2017), the raw-waveform CNN of PyTorch's Speech Commands tutorial.

    ::

        Conv1d(1 -> n, kernel 80, stride 16) -> BN -> ReLU -> maxpool_4
        [Conv1d(kernel 3) -> BN -> ReLU -> maxpool_4] x 3          channels n, 2n, 2n
        global average pool over time -> Linear(2n -> K)

    The first layer's long, strided kernel plays the role of a learned filterbank (80 samples: 5 ms at
    16 kHz; the tutorial resamples to 8 kHz first, where it spans 10 ms).

    Args:
        num_classes: K. Default 35.
        in_channels: waveform channels. Default 1.
        n_channel: n. Default 32 (the tutorial's).
        stride: stride of the first convolution. Default 16.

    Shapes:
        x: (B, T) or (B, in_channels, T) -> logits (B, K). T >= 80 + 255 * stride (about 0.26 s at 16 kHz
        with the defaults) so that every pooling sees at least one value.

    Raises:
        ValueError: an input of the wrong rank or channel count, or too short.

    Example::

        logits = M5(35)(torch.randn(8, 16000))   # (8, 35); 26,915 parameters
    """

    def __init__(self, num_classes: int = 35, in_channels: int = 1, n_channel: int = 32, stride: int = 16):
        super().__init__()
        if n_channel < 1 or stride < 1:
            raise ValueError(f"n_channel and stride must be >= 1, got {n_channel} and {stride}")
        self.in_channels, self.stride = in_channels, stride
        self.conv1 = nn.Conv1d(in_channels, n_channel, kernel_size=80, stride=stride)
        self.bn1 = nn.BatchNorm1d(n_channel)
        self.conv2 = nn.Conv1d(n_channel, n_channel, kernel_size=3)
        self.bn2 = nn.BatchNorm1d(n_channel)
        self.conv3 = nn.Conv1d(n_channel, 2 * n_channel, kernel_size=3)
        self.bn3 = nn.BatchNorm1d(2 * n_channel)
        self.conv4 = nn.Conv1d(2 * n_channel, 2 * n_channel, kernel_size=3)
        self.bn4 = nn.BatchNorm1d(2 * n_channel)
        self.fc1 = nn.Linear(2 * n_channel, num_classes)

    def min_length(self) -> int:
        """The shortest input (samples) for which every layer has at least one output."""
        n = 1
        for _ in range(3):  # undo pool 4 and conv 3, from the last layer back
            n = 4 * n + 2
        return 80 + (4 * n - 1) * self.stride

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2 and self.in_channels == 1:
            x = x.unsqueeze(1)  # (B, 1, T)
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"M5 expects (B, T) or (B, {self.in_channels}, T), got shape {tuple(x.shape)}")
        if x.shape[-1] < self.min_length():
            raise ValueError(f"M5 needs at least {self.min_length()} samples, got {x.shape[-1]}")
        x = F.max_pool1d(F.relu(self.bn1(self.conv1(x))), 4)  # (B, n, (T - 80) / 16 / 4)
        x = F.max_pool1d(F.relu(self.bn2(self.conv2(x))), 4)
        x = F.max_pool1d(F.relu(self.bn3(self.conv3(x))), 4)
        x = F.max_pool1d(F.relu(self.bn4(self.conv4(x))), 4)  # (B, 2n, T'')
        return self.fc1(x.mean(dim=-1))  # global average pool -> (B, K)


# ----------------------------------------------------------------------------------------------
# BC-ResNet
# ----------------------------------------------------------------------------------------------


class SubSpectralNorm(nn.Module):
    r"""Sub-spectral normalization (Chang et al. 2021): batch norm with separate statistics per frequency band.

    The F frequency rows are cut into S equal sub-bands; each (channel c, sub-band s) pair is normalized
    with its own batch statistics and affine parameters::

        x_{c,s} = x[:, c, s F/S : (s+1) F/S, :]
        y_{c,s} = γ_{c,s} (x_{c,s} - μ_{c,s}) / sqrt(σ²_{c,s} + ε) + β_{c,s}

    (μ, σ² over the batch, the band's rows and time; running averages at evaluation, as batch norm).
    Computed as one ``BatchNorm2d(C S)`` on the view (B, C S, F/S, T), whose channel ``c S + s`` is
    sub-band s of channel c. Low and high frequencies have very different statistics, which one BN per
    channel would mix.

    Args:
        num_features: C.
        sub_bands: S, must divide F. Default 5 (the paper's choice for BC-ResNet).
        eps, momentum: as :class:`torch.nn.BatchNorm2d` (defaults 1e-5, 0.1).

    Shapes:
        x: (B, C, F, T) -> (B, C, F, T).

    Raises:
        ValueError: ``sub_bands < 1``; an input that is not (B, C, F, T) with F divisible by S.
    """

    def __init__(self, num_features: int, sub_bands: int = 5, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if sub_bands < 1:
            raise ValueError(f"sub_bands must be >= 1, got {sub_bands}")
        self.num_features, self.sub_bands = num_features, sub_bands
        self.bn = nn.BatchNorm2d(num_features * sub_bands, eps=eps, momentum=momentum)

    def extra_repr(self) -> str:
        return f"{self.num_features}, sub_bands={self.sub_bands}"

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features or x.shape[2] % self.sub_bands:
            raise ValueError(f"SubSpectralNorm({self.num_features}, sub_bands={self.sub_bands}) expects (B, "
                             f"{self.num_features}, F, T) with F divisible by {self.sub_bands}, got {tuple(x.shape)}")
        B, C, Fq, T = x.shape
        y = self.bn(x.reshape(B, C * self.sub_bands, Fq // self.sub_bands, T))  # channel c*S + s = band s of c
        return y.reshape(B, C, Fq, T)


class BCResBlock(nn.Module):
    r"""Broadcasted residual block (BC-ResBlock, Kim et al. 2021, Fig. 2): see the module docstring.

    Args:
        in_channels, out_channels: C_in, C_out. A block with C_in != C_out or ``stride`` 2 is a
            transition block (1x1 conv + BN + ReLU first, no identity shortcut).
        stride: frequency stride of the 3x1 depthwise conv, 1 or 2. Default 1.
        dilation: time dilation of the 1x3 depthwise conv. Default 1.
        sub_bands: of the :class:`SubSpectralNorm`. Default 5.
        dropout: ``Dropout2d`` probability at the end of the temporal path. Default 0.1.

    Shapes:
        x: (B, C_in, F, T) -> (B, C_out, ceil(F / stride), T).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1, sub_bands: int = 5,
                 dropout: float = 0.1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.transition = in_channels != out_channels or stride != 1
        self.project = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        ) if in_channels != out_channels else nn.Identity()
        # f2: frequency-wise depthwise conv + sub-spectral norm
        self.freq_conv = nn.Conv2d(out_channels, out_channels, (3, 1), stride=(stride, 1), padding=(1, 0),
                                   groups=out_channels, bias=False)
        self.ssn = SubSpectralNorm(out_channels, sub_bands)
        # f1: temporal depthwise conv (dilated) + BN + SiLU, pointwise conv, channel dropout
        self.time_conv = nn.Conv2d(out_channels, out_channels, (1, 3), padding=(0, dilation), dilation=(1, dilation),
                                   groups=out_channels, bias=False)
        self.time_bn = nn.BatchNorm2d(out_channels)
        self.pointwise = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        aux = self.ssn(self.freq_conv(self.project(x)))  # f2(x): (B, C, F', T)
        h = aux.mean(dim=2, keepdim=True)  # average over frequency: (B, C, 1, T)
        h = self.dropout(self.pointwise(F.silu(self.time_bn(self.time_conv(h)))))  # f1: (B, C, 1, T)
        out = aux + h  # broadcast over frequency: (B, C, F', T)
        if not self.transition:
            out = out + shortcut
        return F.relu(out)


@dataclass(frozen=True)
class BCResNetConfig:
    """Shape of :class:`BCResNet`.

    Attributes:
        width: the paper's τ: base channel count c = 8 τ (BC-ResNet-τ). Default 1.0.
        n_mels: frequency rows of the input log-mel spectrogram. Default 40 (the paper's).
        blocks: BC-ResBlocks per stage. Default (2, 2, 4, 4).
        strided_stages: stages whose first block halves the frequency. Default (1, 2).
        sub_bands: sub-bands of every :class:`SubSpectralNorm`. Default 5.
        dropout: ``Dropout2d`` probability inside each block. Default 0.1.
    """

    width: float = 1.0
    n_mels: int = 40
    blocks: tuple[int, ...] = (2, 2, 4, 4)
    strided_stages: tuple[int, ...] = (1, 2)
    sub_bands: int = 5
    dropout: float = 0.1


class BCResNet(nn.Module):
    r"""BC-ResNet-τ (Kim et al. 2021) on a log-mel spectrogram.

    With c = 8 τ and channels (2c | c, 1.5c, 2c, 2.5c | 4c)::

        head: Conv_5x5(1 -> 2c, stride (2, 1)) -> BN -> ReLU                  F -> F/2
        stage i (i = 0..3): blocks[i] BC-ResBlocks to channels c_i, dilation 2^i in time,
                            the first with frequency stride 2 in the strided stages   F/2 -> F/8
        classifier: DWConv_5x5 (no frequency padding: F/8 = 5 rows -> 1) -> Conv_1x1(4c) -> BN -> ReLU
                    -> global average pool -> Conv_1x1(K)

    Args:
        num_classes: K. Default 35.
        config: a :class:`BCResNetConfig`.

    Shapes:
        x: (B, 1, n_mels, T) or (B, n_mels, T) log-mel -> logits (B, K). T >= 1 (time is padded throughout).

    Raises:
        ValueError: ``n_mels`` whose frequency size at some stage is not divisible by ``sub_bands``, or
            smaller than the classifier's 5 rows (40 and 80 work with the defaults); widths below 1 channel;
            ``blocks`` of the wrong length; an input with the wrong frequency size.

    Example::

        logits = BCResNet(12)(torch.randn(8, 1, 40, 101))   # BC-ResNet-1: 9.2 k parameters
    """

    def __init__(self, num_classes: int = 35, config: BCResNetConfig = BCResNetConfig()):
        super().__init__()
        c = 8 * config.width
        chans = [int(2 * c), int(c), int(1.5 * c), int(2 * c), int(2.5 * c), int(4 * c)]
        if min(chans) < 1:
            raise ValueError(f"width {config.width} gives a stage of {min(chans)} channels; use width >= 0.125")
        if len(config.blocks) != 4 or min(config.blocks) < 1:
            raise ValueError(f"blocks must be 4 positive counts (one per stage), got {config.blocks}")
        freq = (config.n_mels + 1) // 2  # after the head's stride 2
        sizes = []
        for i in range(4):
            if i in config.strided_stages:
                freq = (freq + 1) // 2
            sizes.append(freq)
        if any(f % config.sub_bands for f in sizes) or sizes[-1] < 5:
            raise ValueError(f"n_mels={config.n_mels} gives frequency sizes {sizes} in the stages; each must be "
                             f"divisible by sub_bands={config.sub_bands} and the last >= 5 (n_mels=40 or 80 work)")
        self.config, self.num_classes, self.channels = config, num_classes, chans
        self.head = nn.Sequential(
            nn.Conv2d(1, chans[0], 5, stride=(2, 1), padding=2, bias=False),  # (B, 2c, F/2, T)
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        for i, n in enumerate(config.blocks):
            for j in range(n):
                c_in = chans[i] if j == 0 else chans[i + 1]
                stride = 2 if (j == 0 and i in config.strided_stages) else 1
                blocks.append(BCResBlock(c_in, chans[i + 1], stride, 2 ** i, config.sub_bands, config.dropout))
        self.blocks = nn.Sequential(*blocks)  # (B, 2.5c, F/8, T)
        self.classifier = nn.Sequential(
            nn.Conv2d(chans[4], chans[4], 5, padding=(0, 2), groups=chans[4], bias=False),  # (B, 2.5c, F/8 - 4, T)
            nn.Conv2d(chans[4], chans[5], 1, bias=False),
            nn.BatchNorm2d(chans[5]),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),  # (B, 4c, 1, 1)
            nn.Conv2d(chans[5], num_classes, 1),  # (B, K, 1, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)  # (B, 1, n_mels, T)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.config.n_mels:
            raise ValueError(f"BCResNet expects (B, 1, {self.config.n_mels}, T) log-mels, got shape {tuple(x.shape)}")
        return self.classifier(self.blocks(self.head(x))).flatten(1)  # (B, K)


@register_model("bcresnet")
def bcresnet(in_channels: int = 1, num_classes: int = 35, width: float = 1.0, n_mels: int = 40,
             dropout: float = 0.1) -> BCResNet:
    """BC-ResNet-``width`` (:class:`BCResNet`) on (B, 1, n_mels, T) log-mels.

    Raises:
        ValueError: ``in_channels`` other than 1, or as :class:`BCResNet`.
    """
    if in_channels != 1:
        raise ValueError(f"BC-ResNet takes one log-mel channel, got in_channels={in_channels}")
    return BCResNet(num_classes, BCResNetConfig(width=width, n_mels=n_mels, dropout=dropout))


#: The keyword-spotting lab's ``--model`` choices: the registered model and the features it reads
#: (a :class:`deepnotes.audio.frontend.FeatureExtractor` kind).
SPOTTERS: dict[str, tuple[str, str]] = {"bcresnet": ("bcresnet", "logmel"), "cnn": ("spectrogram-cnn", "spectrogram"),
                                        "m5": ("m5", "waveform")}


def keyword_spotter(model: str, num_classes: int, width: float = 2.0, n_mels: int = 40, dropout: float = 0.1,
                    channels_last: bool = True) -> nn.Module:
    """The network ``model`` of :data:`SPOTTERS` (``width`` and ``n_mels``: BC-ResNet's; ``dropout``: BC-ResNet's
    and the CNN's), in NHWC memory layout for the 2-D models with ``channels_last``.

    Raises:
        UserError: an option the model rejects (from :func:`~deepnotes.models.create_model`).
    """
    options = {"bcresnet": {"width": width, "n_mels": n_mels, "dropout": dropout}, "cnn": {"dropout": dropout}}
    net = create_model(SPOTTERS[model][0], num_classes=num_classes, **options.get(model, {}))
    return net.to(memory_format=torch.channels_last) if channels_last and model != "m5" else net
