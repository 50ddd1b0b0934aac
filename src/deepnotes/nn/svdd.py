r"""Deep SVDD: one-class classification by mapping normal data into a small hypersphere.

Source: ML2021/2022 HW8 (anomaly detection: train on normal data only, score how far a test image is from
"normal"); Ruff et al. 2018, "Deep One-Class Classification" (ICML), sections 3.1-3.3. A network φ(·; W) maps
every training image (all normal) close to a fixed centre c; the anomaly score of x is its squared distance::

    one-class:      min_W  1/n Σ_i ||φ(x_i; W) - c||²  (+ weight decay)         s(x) = ||φ(x; W) - c||²
    soft-boundary:  min_{R,W}  R² + 1/(ν n) Σ_i max(0, ||φ(x_i; W) - c||² - R²)   s(x) = ||φ(x; W) - c||² - R²

Three rules keep the trivial solution φ ≡ c out of reach (Ruff et al., section 3.3, propositions 2-4):

* c is fixed, never learned: the mean of φ over the training data after an initial forward pass, and an entry
  too close to 0 (|c_k| < eps) is pushed to ±eps (a zero entry lets weights set to 0 reach it);
* no bias terms in φ (a bias alone could output c whatever the input);
* no bounded activations (a saturating unit could output a constant).

In the soft-boundary objective R is not learned by gradient descent: every few epochs it is set to the
(1 - ν)-quantile of the training distances (the line search of section 3.1), so a share ν of the training data
lies outside the sphere.

The network φ is :class:`BiasFreeLeNet` (Ruff et al.'s MNIST / Fashion-MNIST LeNet: two 5x5 convolutions with
batch norm without affine parameters, leaky ReLU and max pooling, a linear map to ``rep_dim``, no bias anywhere),
pre-trained as the encoder of :class:`BiasFreeLeNetAutoencoder` as in the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.train.task import PrepareBatch, Step, StepOutput, Task


def _check_features(name: str, features: Tensor) -> None:
    if not isinstance(features, Tensor) or features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) tensor of representations, got "
                         f"{tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__}")


def _check_nu(nu) -> float:
    if isinstance(nu, bool) or not isinstance(nu, (int, float)) or not 0 < nu <= 1:
        raise ValueError(f"nu must be in (0, 1] (the share of training data allowed outside the sphere), got {nu!r}")
    return float(nu)


def svdd_center(features: Tensor, eps: float = 0.1) -> Tensor:
    """The fixed centre c: the mean representation, each entry at least ``eps`` away from 0.

    Args:
        features: φ(x) of the training data after an initial forward pass.
        eps: entries with ``|c_k| < eps`` become ``+eps`` (if ``c_k >= 0``) or ``-eps``; default 0.1 (Ruff et al.'s
            code). 0 keeps the mean.

    Returns:
        c, detached.

    Shapes:
        features (N, D) -> (D,).

    Raises:
        ValueError: ``features`` is not a non-empty 2-D tensor, or ``eps < 0``.

    Example::

        >>> svdd_center(torch.tensor([[0.02, 1.0], [0.0, 3.0]]))
        tensor([0.1000, 2.0000])
    """
    _check_features("features", features)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    c = features.detach().float().mean(dim=0)
    small = c.abs() < eps
    return torch.where(small & (c >= 0), torch.full_like(c, eps), torch.where(small, torch.full_like(c, -eps), c))


def svdd_distances(features: Tensor, center: Tensor) -> Tensor:
    """Squared distances ``||φ(x_i) - c||²``: the one-class anomaly score (higher = more anomalous).

    Shapes:
        features (N, D), center (D,) -> (N,).

    Raises:
        ValueError: ``features`` is not (N, D) or ``center`` is not (D,).
    """
    _check_features("features", features)
    if center.shape != features.shape[1:]:
        raise ValueError(f"center must have shape ({features.shape[1]},) to match the features, "
                         f"got {tuple(center.shape)}")
    return (features.float() - center).pow(2).sum(dim=1)


def one_class_loss(features: Tensor, center: Tensor) -> Tensor:
    """One-class Deep SVDD loss: the mean squared distance to c (weight decay is the optimizer's)."""
    return svdd_distances(features, center).mean()


def soft_boundary_loss(features: Tensor, center: Tensor, radius: float, nu: float) -> Tensor:
    """Soft-boundary Deep SVDD loss ``R² + 1/ν · mean_i max(0, ||φ(x_i) - c||² - R²)`` (R fixed here).

    Args:
        radius: R >= 0 (set by :func:`svdd_radius`).
        nu: ν in (0, 1]: trades the sphere's volume against the share of training data outside it.

    Raises:
        ValueError: ``radius < 0`` or ``nu`` outside (0, 1].
    """
    nu = _check_nu(nu)
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius >= 0:
        raise ValueError(f"radius must be a number >= 0, got {radius!r}")
    d = svdd_distances(features, center)
    return radius ** 2 + F.relu(d - radius ** 2).mean() / nu


def svdd_radius(distances: Tensor, nu: float) -> float:
    """The soft-boundary line search for R: the square root of the (1 - ν)-quantile of the squared distances.

    Shapes:
        distances (N,) (squared, as :func:`svdd_distances` returns them).

    Raises:
        ValueError: ``nu`` outside (0, 1] or ``distances`` empty.
    """
    nu = _check_nu(nu)
    if distances.numel() == 0:
        raise ValueError("distances must be non-empty")
    return float(torch.quantile(distances.detach().float().flatten(), 1 - nu).clamp_min(0).sqrt())


class BiasFreeLeNet(nn.Module):
    """φ of Deep SVDD for 28x28 images: no bias terms, no bounded activations (Ruff et al. 2018, MNIST LeNet).

    ``conv 5x5 (C -> 8) - BN - leaky ReLU - max-pool 2 - conv 5x5 (8 -> 4) - BN - leaky ReLU - max-pool 2 -
    linear (4·7·7 -> rep_dim)``, batch norm without affine parameters (its shift would be a bias), every
    convolution and linear map without bias.

    Args:
        in_channels: image channels; default 1.
        rep_dim: size of the representation; default 32.

    Shapes:
        (B, C, 28, 28) -> (B, rep_dim).
    """

    def __init__(self, in_channels: int = 1, rep_dim: int = 32):
        super().__init__()
        self.rep_dim = rep_dim
        self.conv1 = nn.Conv2d(in_channels, 8, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-4, affine=False)
        self.conv2 = nn.Conv2d(8, 4, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm2d(4, eps=1e-4, affine=False)
        self.fc = nn.Linear(4 * 7 * 7, rep_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (28, 28):
            raise ValueError(f"BiasFreeLeNet reads 28x28 images, got {tuple(x.shape[-2:])}")
        x = F.max_pool2d(F.leaky_relu(self.bn1(self.conv1(x))), 2)  # (B, 8, 14, 14)
        x = F.max_pool2d(F.leaky_relu(self.bn2(self.conv2(x))), 2)  # (B, 4, 7, 7)
        return self.fc(x.flatten(1))  # (B, rep_dim)


class BiasFreeLeNetAutoencoder(nn.Module):
    """The auto-encoder whose encoder pre-trains Deep SVDD's φ (Ruff et al. 2018): the encoder is a
    :class:`BiasFreeLeNet`; the decoder mirrors it with 5x5 transposed convolutions and 2x nearest upsampling, bias
    free too. It returns logits (``sigmoid`` of them are the pixels in [0, 1]), so it trains with the losses of
    :mod:`deepnotes.nn.autoencoder` (Ruff et al. apply the sigmoid inside and take the squared error: the same).

    ``forward(x)`` and ``reconstruct(x)`` return the reconstruction's logits; ``encoder`` is the φ to copy into
    :class:`DeepSVDD`.

    Shapes:
        (B, C, 28, 28) -> (B, C, 28, 28).
    """

    def __init__(self, in_channels: int = 1, rep_dim: int = 32):
        super().__init__()
        if rep_dim % 16:
            raise ValueError(f"rep_dim must be a multiple of 16 (the decoder reshapes it to (rep_dim/16, 4, 4)), "
                             f"got {rep_dim}")
        self.encoder = BiasFreeLeNet(in_channels, rep_dim)
        self.deconv1 = nn.ConvTranspose2d(rep_dim // 16, 4, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(4, eps=1e-4, affine=False)
        self.deconv2 = nn.ConvTranspose2d(4, 8, 5, padding=3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=1e-4, affine=False)
        self.deconv3 = nn.ConvTranspose2d(8, in_channels, 5, padding=2, bias=False)

    def decode(self, z: Tensor) -> Tensor:
        x = z.view(z.shape[0], -1, 4, 4)  # (B, rep_dim/16, 4, 4)
        x = F.interpolate(F.leaky_relu(x), scale_factor=2)  # (B, rep_dim/16, 8, 8)
        x = F.interpolate(F.leaky_relu(self.bn1(self.deconv1(x))), scale_factor=2)  # (B, 4, 16, 16)
        x = F.interpolate(F.leaky_relu(self.bn2(self.deconv2(x))), scale_factor=2)  # (B, 8, 28, 28)
        return self.deconv3(x)  # (B, C, 28, 28) logits

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encoder(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)


class DeepSVDD(nn.Module):
    """φ with its fixed centre c (a buffer, saved with the weights) and, for the soft boundary, its radius R.

    ``forward(x)`` returns the anomaly score of each image: ``||φ(x) - c||²`` (one-class) or that minus R²
    (soft-boundary; negative inside the sphere). Call :meth:`init_center` once before training.

    Args:
        net: φ, with attribute ``rep_dim`` (its output size); must have no bias terms (checked: a ``ValueError``
            names the first parameter called ``*bias``).
        objective: ``"one-class"`` (default) or ``"soft-boundary"``.
        nu: ν of the soft boundary, in (0, 1]; default 0.1.

    Shapes:
        (B, C, H, W) -> (B,).
    """

    def __init__(self, net: nn.Module, objective: str = "one-class", nu: float = 0.1):
        super().__init__()
        if objective not in ("one-class", "soft-boundary"):
            raise ValueError(f"objective must be 'one-class' or 'soft-boundary', got {objective!r}")
        biased = [name for name, _ in net.named_parameters() if name.endswith("bias")]
        if biased:
            raise ValueError(f"Deep SVDD's network must have no bias terms (they allow the trivial map to c); "
                             f"{biased[0]} is one")
        rep_dim = getattr(net, "rep_dim", None)
        if not isinstance(rep_dim, int) or rep_dim < 1:
            raise ValueError(f"net must have an int attribute rep_dim (its output size), got {rep_dim!r}")
        self.net, self.objective, self.nu = net, objective, _check_nu(nu)
        self.register_buffer("center", torch.zeros(rep_dim))
        self.register_buffer("radius", torch.zeros(()))
        self.register_buffer("center_set", torch.zeros((), dtype=torch.bool))  # saved: a loaded model is ready

    @torch.no_grad()
    def init_center(self, batches, eps: float = 0.1) -> Tensor:
        """Set c from one forward pass (eval mode) over an iterable of image batches; returns c."""
        was_training = self.net.training
        self.net.eval()
        features = torch.cat([self.net(x).float() for x in batches])
        self.net.train(was_training)
        self.center.copy_(svdd_center(features, eps))
        self.center_set.fill_(True)
        return self.center

    def loss(self, features: Tensor) -> Tensor:
        """The training objective on a batch of representations φ(x)."""
        if not self.center_set:
            raise RuntimeError("DeepSVDD.init_center must run before training (c is set from the data)")
        if self.objective == "one-class":
            return one_class_loss(features, self.center)
        return soft_boundary_loss(features, self.center, float(self.radius), self.nu)

    def forward(self, x: Tensor) -> Tensor:
        if not self.center_set:
            raise RuntimeError("DeepSVDD.init_center must run before scoring (c is set from the data)")
        d = svdd_distances(self.net(x), self.center)
        return d - self.radius ** 2 if self.objective == "soft-boundary" else d


class DeepSVDDTask(Task):
    """Deep SVDD's objective for the Trainer. A batch is ``(x, y)`` (labels unused: every training image is normal).

    With the soft boundary, R is set after each training batch from that batch's distances (the line search, as
    Ruff et al.'s code does) once ``warmup_epochs`` have passed. Epoch metric: ``loss``.

    Args:
        model: the :class:`DeepSVDD`, its centre already set.
        prepare_batch: ``(x, y, train, generator) -> (images, y)`` on the device.
        warmup_epochs: epochs before R moves (soft boundary); default 1.
    """

    def __init__(self, model: DeepSVDD, prepare_batch: PrepareBatch, warmup_epochs: int = 1):
        super().__init__(model)
        self.prepare_batch, self.warmup_epochs = prepare_batch, warmup_epochs

    def training_step(self, model: nn.Module, batch, step: Step) -> StepOutput:
        svdd = getattr(model, "module", model)  # the DeepSVDD (unwrapped from data parallelism)
        x, _ = self.prepare_batch(batch[0], batch[1], step.train, step.generator)
        with step.autocast():
            features = svdd.net(x)
        loss = svdd.loss(features.float())
        if step.train and svdd.objective == "soft-boundary" and step.epoch >= self.warmup_epochs:
            svdd.radius.fill_(svdd_radius(svdd_distances(features.detach().float(), svdd.center), svdd.nu))
        return StepOutput(loss, {"loss": float(loss.detach()) * len(x)}, len(x))
