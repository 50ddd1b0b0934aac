r"""Domain-adversarial training (DANN): a gradient reversal layer, Ganin's schedules, and the three-part model.

Source: ML2021 lecture "概述領域自適應 (Domain Adaptation)" and HW11 (domain shift; domain adversarial
training: a domain classifier tries to tell source features from target features, and the feature
extractor learns to fool it until the classifier can no longer tell them apart). Papers: Ganin &
Lempitsky 2015, "Unsupervised Domain Adaptation by Backpropagation" (ICML), and Ganin et al. 2016,
"Domain-Adversarial Training of Neural Networks" (JMLR 17(59)).

The model has a feature extractor G_f, a label predictor G_y and a domain classifier G_d. With the
label loss L_y (source only) and the domain loss L_d (both domains), the saddle point sought is::

    θ_f, θ_y = argmin  L_y - λ L_d           θ_d = argmin  L_d

The gradient reversal layer R_λ makes it one ordinary minimisation of ``L_y + L_d``: it is the
identity forward and multiplies the gradient by -λ backward, so G_d descends L_d while G_f, behind
R_λ, ascends λ L_d (Ganin & Lempitsky 2015, section 3)::

    R_λ(x) = x,        dR_λ/dx = -λ I

Schedules (Ganin & Lempitsky 2015, section 5, training procedure), with p in [0, 1] the training progress
(``step / total_steps``): λ_p = 2 / (1 + exp(-γ p)) - 1 with γ = 10, which starts the adaptation
at 0 so the domain classifier's early noise does not reach G_f; and the learning rate
μ_p = μ_0 / (1 + α p)^β with μ_0 = 0.01, α = 10, β = 0.75.

Differences from the papers: the domain loss is the mean over source and target examples together
(Ganin et al. 2016 add the source mean and the target mean: twice ours when the two batches
have the same size; HW11's sample code takes the mean as we do); with ``lambd = 0`` the same model
and loss train source-only while the domain classifier still learns, and its accuracy then measures
how separable the two domains' features are.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.nn.recurrent import _check_positive_int
from deepnotes.train.task import Step, StepOutput, Task


def _check_lambd(lambd) -> float:
    if isinstance(lambd, bool) or not isinstance(lambd, (int, float)) or not math.isfinite(lambd) or lambd < 0:
        raise ValueError(f"lambd must be a finite float >= 0 (the gradient is scaled by -lambd), got {lambd!r}")
    return float(lambd)


def _check_progress(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"p (training progress, step / total_steps) must be in [0, 1], got {p!r}")
    return float(p)


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class GradientReversal(torch.autograd.Function):
    """Identity forward, ``-lambd * grad`` backward: Ganin & Lempitsky's gradient reversal layer.

    Call through :func:`grad_reverse` (which checks ``lambd``) or :class:`GradientReversalLayer`.
    ``lambd`` is a Python float, a constant: it gets no gradient.
    """

    @staticmethod
    def forward(ctx, x: Tensor, lambd: float) -> Tensor:
        ctx.lambd = lambd
        return x.clone()  # a copy, not a view: an in-place op after the layer cannot change x

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        return -ctx.lambd * grad_output, None


def grad_reverse(x: Tensor, lambd: float = 1.0) -> Tensor:
    """Gradient reversal R_λ: returns ``x`` unchanged; backward, the gradient reaching ``x`` is ``-lambd`` times it.

    Args:
        x: any tensor.
        lambd: the reversal strength λ >= 0, a constant (no gradient). 0 blocks the gradient. Default 1.

    Shapes:
        x: (*) -> (*), the same values.

    Raises:
        ValueError: ``lambd`` negative, not finite or not a number.

    Example::

        x = torch.ones(3, requires_grad=True)
        grad_reverse(x, 0.5).sum().backward()  # x.grad == -0.5
    """
    return GradientReversal.apply(x, _check_lambd(lambd))


class GradientReversalLayer(nn.Module):
    """:func:`grad_reverse` as a module, with a settable ``lambd`` (set it each step from :func:`grl_lambda`).

    Args:
        lambd: the reversal strength λ >= 0. Default 1.

    Raises:
        ValueError: ``lambd`` negative, not finite or not a number (also when set later).
    """

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = lambd

    @property
    def lambd(self) -> float:
        return self._lambd

    @lambd.setter
    def lambd(self, value: float) -> None:
        self._lambd = _check_lambd(value)

    def forward(self, x: Tensor) -> Tensor:
        return GradientReversal.apply(x, self._lambd)

    def extra_repr(self) -> str:
        return f"lambd={self._lambd}"


def grl_lambda(p: float, gamma: float = 10.0) -> float:
    """Ganin's adaptation factor λ_p = 2 / (1 + exp(-γ p)) - 1: 0 at p = 0, rising to ~1 (0.99991 at p = 1, γ = 10).

    Args:
        p: training progress in [0, 1] (``step / total_steps``).
        gamma: steepness γ > 0. Default 10 (Ganin & Lempitsky 2015).

    Raises:
        ValueError: ``p`` outside [0, 1]; ``gamma`` not > 0.
    """
    p, gamma = _check_progress(p), _check_positive("gamma", gamma)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def dann_lr(p: float, lr0: float = 0.01, alpha: float = 10.0, beta: float = 0.75) -> float:
    """Ganin's annealed learning rate μ_p = μ_0 / (1 + α p)^β: μ_0 at p = 0, ≈ 0.166 μ_0 at p = 1.

    Use it with ``torch.optim.lr_scheduler.LambdaLR(opt, lambda step: dann_lr(step / total) / lr0)``.

    Args:
        p: training progress in [0, 1].
        lr0: the initial learning rate μ_0 > 0. Default 0.01.
        alpha: α >= 0. Default 10.
        beta: β >= 0. Default 0.75 (Ganin & Lempitsky 2015).

    Raises:
        ValueError: ``p`` outside [0, 1]; ``lr0`` not > 0; ``alpha`` or ``beta`` negative.
    """
    p, lr0 = _check_progress(p), _check_positive("lr0", lr0)
    for name, value in (("alpha", alpha), ("beta", beta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return lr0 / (1.0 + alpha * p) ** beta


class DigitFeatureExtractor(nn.Module):
    """Ganin & Lempitsky's feature extractor for 28x28 digits (their MNIST -> MNIST-M network, supplementary material).

    conv 5x5 (32) -> max-pool 2 -> ReLU -> conv 5x5 (48) -> max-pool 2 -> ReLU -> flatten, giving
    ``feature_dim = 48 * 4 * 4 = 768`` features. Grey images may be given as ``in_channels=1`` or
    repeated to 3 channels by the caller.

    Args:
        in_channels: image channels C (1 grey, 3 colour). Default 3.

    Shapes:
        x: (B, C, 28, 28) pixels in [0, 1] -> (B, 768).

    Raises:
        ValueError: ``in_channels`` not a positive int; an input not of shape (B, in_channels, 28, 28).
    """

    feature_dim = 768

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        self.in_channels = in_channels
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5), nn.MaxPool2d(2), nn.ReLU(),  # (B, 32, 12, 12)
            nn.Conv2d(32, 48, 5), nn.MaxPool2d(2), nn.ReLU(),  # (B, 48, 4, 4)
            nn.Flatten(),  # (B, 768)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, 28, 28):
            raise ValueError(f"DigitFeatureExtractor(in_channels={self.in_channels}) expects images of shape "
                             f"(B, {self.in_channels}, 28, 28), got {tuple(x.shape)}")
        return self.net(x)


class DANN(nn.Module):
    """Domain-adversarial network: G_f, then G_y for the class and R_λ -> G_d for the domain (Ganin et al. 2016).

    Args:
        feature_extractor: G_f, images (or any input) -> features (B, F).
        label_predictor: G_y, features (B, F) -> class logits (B, K).
        domain_classifier: G_d, features (B, F) -> one domain logit per example, (B, 1) or (B,);
            positive means "target".
        lambd: reversal strength λ >= 0 of the layer ``self.grl``; change it during training with
            ``model.grl.lambd = grl_lambda(p)``. Default 1.

    Shapes:
        forward(x): x (B, *) -> (class logits (B, K), domain logits (B,)).

    Raises:
        ValueError: ``lambd`` negative; the domain classifier returns another shape than (B, 1) or (B,).

    Example::

        model = DANN.for_digits(in_channels=3, num_classes=10)
        logits, domain_logits = model(torch.rand(8, 3, 28, 28))  # (8, 10), (8,)
    """

    def __init__(self, feature_extractor: nn.Module, label_predictor: nn.Module, domain_classifier: nn.Module,
                 lambd: float = 1.0) -> None:
        super().__init__()
        self.feature_extractor = feature_extractor
        self.label_predictor = label_predictor
        self.grl = GradientReversalLayer(lambd)
        self.domain_classifier = domain_classifier

    @classmethod
    def for_digits(cls, in_channels: int = 3, num_classes: int = 10, hidden: int = 100, lambd: float = 1.0) -> DANN:
        """Ganin & Lempitsky's MNIST -> MNIST-M architecture for (B, C, 28, 28) images.

        G_f: :class:`DigitFeatureExtractor` (768 features); G_y: 768 -> hidden -> hidden -> num_classes
        with ReLUs; G_d: 768 -> hidden -> 1 with a ReLU. ``hidden`` = 100 as in the paper.

        Raises:
            ValueError: a size not a positive int, ``lambd`` negative.
        """
        for name, value in (("num_classes", num_classes), ("hidden", hidden)):
            _check_positive_int(name, value)
        features = DigitFeatureExtractor(in_channels)
        d = features.feature_dim
        label = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                              nn.Linear(hidden, num_classes))
        domain = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        return cls(features, label, domain, lambd=lambd)

    def forward(self, x: Tensor, lambd: float | None = None) -> tuple[Tensor, Tensor]:
        """Class logits (B, K) and domain logits (B,) of ``x``; ``lambd`` overrides ``self.grl.lambd`` for this call."""
        features = self.feature_extractor(x)  # (B, F)
        reversed_ = self.grl(features) if lambd is None else grad_reverse(features, lambd)
        domain = self.domain_classifier(reversed_)
        if domain.dim() == 2 and domain.shape[1] == 1:
            domain = domain.squeeze(1)
        if domain.shape != (x.shape[0],):
            raise ValueError(f"the domain classifier must return one logit per example, shape ({x.shape[0]}, 1) "
                             f"or ({x.shape[0]},), got {tuple(domain.shape)}")
        return self.label_predictor(features), domain


def dann_losses(model: DANN, x_source: Tensor, y_source: Tensor, x_target: Tensor, lambd: float,
                entropy_weight: float = 0.0) -> dict[str, Tensor]:
    """DANN's losses on one source batch (labelled) and one target batch (unlabelled).

    Source and target go through the model as one batch. ``label`` is the cross-entropy of the source
    class logits; ``domain`` the binary cross-entropy of the domain logits over both batches, source
    labelled 0 and target 1 (mean over all B_s + B_t examples); ``total = label + domain``, to be
    minimised by one optimizer over all parameters: the reversal layer turns the domain term into
    ``-lambd * domain`` for the feature extractor. ``domain_accuracy`` (no gradient) is the domain
    classifier's accuracy on this batch, near 0.5 when the features are aligned. ``lambd = 0``
    gives source-only training of G_f and G_y.

    Args:
        model: a :class:`DANN`.
        x_source: source inputs (B_s, *); y_source: their classes (B_s,) int64.
        x_target: target inputs (B_t, *), the same trailing shape as ``x_source``.
        lambd: reversal strength λ >= 0 for this call (e.g. ``grl_lambda(step / total)``).
        entropy_weight: w >= 0 of the target's conditional entropy ``H = -mean_t sum_k p_k log p_k`` added to
            ``total`` (the lecture's fix for aligned but mixed classes: the boundary should avoid the target's dense
            regions; Shu et al. 2018, VADA). Default 0: plain DANN.

    Returns:
        dict with scalar tensors ``label``, ``domain``, ``entropy`` (of the target's class predictions), ``total``,
        ``domain_accuracy`` and ``source_accuracy``
        (the label predictor's accuracy on the source batch, no gradient).

    Raises:
        ValueError: empty batches, ``y_source`` not (B_s,), mismatched trailing shapes, ``lambd`` or
            ``entropy_weight`` negative.
    """
    if not (entropy_weight >= 0 and math.isfinite(entropy_weight)):
        raise ValueError(f"entropy_weight must be a finite number >= 0, got {entropy_weight}")
    if x_source.shape[0] == 0 or x_target.shape[0] == 0:
        raise ValueError(f"x_source and x_target must be non-empty batches, got {tuple(x_source.shape)} and "
                         f"{tuple(x_target.shape)}")
    if y_source.shape != (x_source.shape[0],):
        raise ValueError(f"y_source must have shape ({x_source.shape[0]},) to match x_source, "
                         f"got {tuple(y_source.shape)}")
    if x_source.shape[1:] != x_target.shape[1:]:
        raise ValueError(f"x_source and x_target must have the same shape after the batch dimension, got "
                         f"{tuple(x_source.shape)} and {tuple(x_target.shape)}")
    n_source = x_source.shape[0]
    logits, domain_logits = model(torch.cat([x_source, x_target]), lambd=lambd)  # (B_s + B_t, K), (B_s + B_t,)
    domain_labels = torch.cat([torch.zeros(n_source), torch.ones(x_target.shape[0])]).to(domain_logits)
    label_loss = F.cross_entropy(logits[:n_source], y_source)
    log_p = F.log_softmax(logits[n_source:].float(), dim=-1)  # (B_t, K)
    entropy = -(log_p.exp() * log_p).sum(dim=-1).mean()
    domain_loss = F.binary_cross_entropy_with_logits(domain_logits, domain_labels)
    with torch.no_grad():
        domain_accuracy = ((domain_logits > 0).to(domain_labels) == domain_labels).float().mean()
        source_accuracy = (logits[:n_source].argmax(dim=-1) == y_source).float().mean()
    return {"label": label_loss, "domain": domain_loss, "entropy": entropy,
            "total": label_loss + domain_loss + entropy_weight * entropy,
            "domain_accuracy": domain_accuracy, "source_accuracy": source_accuracy}


class DANNTask(Task):
    """DANN as a :class:`deepnotes.train.Task`: a labelled source batch from the Trainer, an unlabelled target batch
    drawn here, and :func:`dann_losses` with λ following :func:`grl_lambda` over the run (Ganin & Lempitsky 2015).

    The target batch (as many images as the source batch) is drawn with replacement from ``target_images`` with the
    generator the Trainer hands to each step, so a resumed run draws the same batches. ``adapt=False`` trains the
    same network source-only (λ = 0; the domain classifier still learns and measures how far apart the domains'
    features are); given the target's labelled images as the source, it is the "trained on the target" upper bound.
    Epoch metrics: ``loss`` and ``acc`` (source labels; in evaluation, of the set evaluated), ``domain_loss`` and
    ``domain_acc`` (training only), ``lambda``.

    Args:
        model: a :class:`DANN`.
        target_images: (N_t, C, H, W) unlabelled target images, in the form ``prepare`` takes (e.g. uint8).
        prepare: images as stored -> model inputs on the device (e.g. uint8 -> pixels in [0, 1]).
        adapt: True for DANN, False for source-only (λ = 0). Default True.
        gamma: of :func:`grl_lambda`. Default 10.
        entropy_weight: of the target's prediction entropy (:func:`dann_losses`), used only when ``adapt``.
            Default 0.

    Raises:
        ValueError: ``target_images`` empty.
    """

    def __init__(self, model: DANN, target_images: Tensor, prepare: Callable[[Tensor], Tensor], adapt: bool = True,
                 gamma: float = 10.0, entropy_weight: float = 0.0):
        super().__init__(model)
        if len(target_images) == 0:
            raise ValueError("target_images must hold at least one image")
        self.target_images, self.prepare, self.adapt, self.gamma = target_images, prepare, adapt, gamma
        self.entropy_weight = entropy_weight

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        x, y = batch
        n = len(y)
        lambd = grl_lambda(step.step / max(1, step.total_steps - 1), self.gamma) if self.adapt else 0.0
        idx = torch.randint(len(self.target_images), (n,), generator=step.generator)
        x_source, x_target = self.prepare(x), self.prepare(self.target_images[idx])
        y = y.to(x_source.device)
        with step.autocast():
            losses = dann_losses(model, x_source, y, x_target, lambd, self.entropy_weight if self.adapt else 0.0)
        return StepOutput(losses["total"], {"loss": float(losses["label"].detach()) * n,
                                            "acc": float(losses["source_accuracy"]) * n,
                                            "domain_loss": float(losses["domain"].detach()) * n,
                                            "domain_acc": float(losses["domain_accuracy"]) * n,
                                            "target_entropy": float(losses["entropy"].detach()) * n,
                                            "lambda": lambd * n}, n)

    def evaluation_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        x, y = batch
        x = self.prepare(x)
        y = y.to(x.device)
        with step.autocast():
            logits = model(x)[0].float()
        loss = F.cross_entropy(logits, y)
        return StepOutput(loss, {"loss": float(loss) * len(y), "acc": float((logits.argmax(dim=-1) == y).sum())},
                          len(y))
