"""The adversarial game as a :class:`~deepnotes.train.task.Task`: alternating discriminator and generator updates.

Sources: EE-559 11-1 "Adversarial Networks" (Fleuret's loop: a discriminator step on real and generated samples,
then a generator step, Adam for both) and 11-2 "Wasserstein GAN" (``n_critic`` critic updates per generator
update, clipping or a gradient penalty); Goodfellow et al. 2014, Algorithm 1 (``k`` discriminator steps per
generator step); Arjovsky et al. 2017 and Gulrajani et al. 2017 (the WGAN loops and their optimizers); Miyato &
Koyama 2018 (a class-conditional game: ``G(z, y)`` and ``D(x, y)``, the generated labels drawn uniformly); Odena et
al. 2017 (AC-GAN: D also classifies real and generated images, and both networks lower that classification loss).

The losses, the clipping and the penalty are :mod:`deepnotes.nn.gan`; this module holds what every GAN lab shares
around them:

* :class:`GANVariant`: one objective and how it is optimized (loss, critic updates, clipping, penalty, spectral
  normalization, optimizer and its betas, conditioning);
* :class:`GANTask`: one Trainer update = ``n_critic`` discriminator updates, then one generator update
  (manual optimization with two named optimizers, ``generator`` and ``discriminator``);
* :class:`CriticBatches`: a batch source's batches reshaped to ``(n_critic, B, ...)``, one real batch per
  discriminator update.

Used by the ``gan-toy`` lab (2-D mixtures) and the ``gan`` lab (Fashion-MNIST).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.nn.gan import GAN_LOSSES, clip_weights_, gradient_penalty
from deepnotes.train.batches import BatchSource
from deepnotes.train.engine import optimizer_impl_kwargs
from deepnotes.train.task import Step, StepOutput, Task

__all__ = ["CriticBatches", "GANTask", "GANVariant"]


@dataclass(frozen=True)
class GANVariant:
    """One GAN objective and how it is optimized.

    Attributes:
        label: the name in tables. loss: a key of :data:`deepnotes.nn.gan.GAN_LOSSES`.
        repeat_critic: ``n_critic`` discriminator updates per generator update (the WGANs), else 1.
        clip: clip the critic's weights to ``[-clip_value, clip_value]`` after each update. gp: add the gradient
            penalty.
        spectral: spectral normalization on D's layers (the lab builds D accordingly; the task does not look).
        optimizer: ``adam`` or ``rmsprop``.
        betas: Adam's (beta1, beta2); None: (the task's ``beta1``, 0.999).
        d_lr_scale: the discriminator's learning rate over the generator's (the two time-scale update rule,
            Heusel et al. 2017: e.g. 4 with G at 1e-4 and D at 4e-4); carried as the param group's ``lr_scale``,
            so the Trainer's schedule keeps the ratio.
        conditional: ``G(z, y)`` and ``D(x, y)`` on class labels (batches are ``(x, y)``).
        aux_weight: AC-GAN's auxiliary classification loss (Odena et al. 2017, eq. 3-4), for a conditional variant
            whose D has ``forward_aux``: D adds ``w (CE(C(x), y) + CE(C(G(z, y')), y'))``, G adds
            ``w CE(C(G(z, y')), y')`` (``C``: D's class logits); 0 (default): off.
        source: the paper.
    """

    label: str
    loss: str
    repeat_critic: bool = False
    clip: bool = False
    gp: bool = False
    spectral: bool = False
    optimizer: str = "adam"
    betas: tuple[float, float] | None = None
    d_lr_scale: float = 1.0
    conditional: bool = False
    aux_weight: float = 0.0
    source: str = ""


class CriticBatches:
    """Another source's batches of ``n_critic * B`` rows, reshaped to ``(n_critic, B, ...)``: one real batch per
    discriminator update of a :class:`GANTask` update. The order is the inner source's (a function of seed and
    epoch only, so a resumed run draws the same batches).

    Args:
        source: e.g. ``TensorBatches((x, y), n_critic * B, seed, steps_per_epoch=...)``: batches of exactly
            ``n_critic * B`` rows (tuples of tensors, or one tensor).
        n_critic: discriminator updates per update.

    Raises:
        ValueError: ``n_critic < 1``; (when iterating) a batch whose rows do not split into ``n_critic`` parts.
    """

    def __init__(self, source: BatchSource, n_critic: int):
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        self.source, self.n_critic = source, n_critic

    def __len__(self) -> int:
        return len(self.source)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        if len(t) % self.n_critic:
            raise ValueError(f"a batch of {len(t)} rows does not split into n_critic = {self.n_critic} equal parts")
        return t.reshape(self.n_critic, len(t) // self.n_critic, *t.shape[1:])  # (n_critic, B, ...)

    def epoch(self, epoch: int) -> Iterator[Any]:
        for batch in self.source.epoch(epoch):
            yield tuple(self._split(t) for t in batch) if isinstance(batch, (tuple, list)) else self._split(batch)


class GANTask(Task):
    """The adversarial game with manual optimization.

    A training step gets real samples ``(n_critic, B, ...)`` (a tensor, or a tuple whose first item it is; for a
    conditional variant ``(x, y)`` with x ``(n_critic, B, ...)`` and labels ``(n_critic, B)``); for each of the
    ``n_critic`` batches the discriminator takes one step on ``d_loss(D(x), D(G(z)))`` (plus the gradient penalty;
    then the clipping), then the generator takes one step on ``g_loss(D(G(z)))``. z, the penalty's interpolation
    coefficients and the generated samples' labels (uniform over the classes) come from ``step.generator`` (seeded
    per epoch by the Trainer). Real batches move to the generator's device here. Epoch metrics: ``d_loss`` and
    ``g_loss`` (means over updates).

    Args:
        model: ``ModuleDict(generator=..., discriminator=...)``; ``generator(z[, y])`` -> samples,
            ``discriminator(x[, y])`` -> (B,) or (B, 1) logits or scores.
        variant: a :class:`GANVariant`. z_dim: the generator's input size.
        lr: the learning rate the optimizers start from (the Trainer sets its schedule's before every update).
        beta1: Adam's beta1 where the variant does not fix its betas. clip_value, gp_weight: clipping's ``c`` and
            the penalty's ``lambda``.
        num_classes: the labels' range for a conditional variant (>= 1 then).

    Raises:
        ValueError: a conditional variant without ``num_classes``; ``aux_weight`` on an unconditional variant.
    """

    manual_optimization = True

    def __init__(self, model: nn.ModuleDict, variant: GANVariant, z_dim: int, lr: float, beta1: float,
                 clip_value: float = 0.01, gp_weight: float = 10.0, num_classes: int = 0):
        super().__init__(model)
        if variant.conditional and num_classes < 1:
            raise ValueError(f"a conditional GAN needs num_classes >= 1, got {num_classes}")
        if variant.aux_weight and not variant.conditional:
            raise ValueError(f"aux_weight {variant.aux_weight} needs a conditional variant (labels to classify)")
        self.variant, self.z_dim, self.lr, self.beta1 = variant, z_dim, lr, beta1
        self.clip_value, self.gp_weight, self.num_classes = clip_value, gp_weight, num_classes
        self.d_loss, self.g_loss = GAN_LOSSES[variant.loss]

    def configure_optimizers(self, cfg: Any) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per network: the variant's RMSprop or Adam (D's learning rate times ``d_lr_scale``, kept as
        its group's ``lr_scale``); ``cfg.optimizer_impl`` picks torch's fused
        Adam step, its foreach path (default) or its for-loop (RMSprop has no fused kernel: foreach unless for-loop).
        """
        v = self.variant
        impl = getattr(cfg, "optimizer_impl", "foreach")
        kw = optimizer_impl_kwargs(impl)
        opts = {}
        for name in ("generator", "discriminator"):
            scale = v.d_lr_scale if name == "discriminator" else 1.0
            params = [{"params": list(self.model[name].parameters()), "lr_scale": scale}]
            if v.optimizer == "rmsprop":
                opts[name] = torch.optim.RMSprop(params, lr=self.lr * scale, foreach=impl != "for-loop")
            else:
                opts[name] = torch.optim.Adam(params, lr=self.lr * scale, betas=v.betas or (self.beta1, 0.999), **kw)
        return opts

    def _noise(self, n: int, step: Step, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z (n, z_dim) and, for a conditional variant, uniform labels (n,), drawn from ``step.generator``."""
        z = torch.randn(n, self.z_dim, generator=step.generator).to(device)
        if not self.variant.conditional:
            return z, None
        return z, torch.randint(self.num_classes, (n,), generator=step.generator).to(device)

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        G, D = model["generator"], model["discriminator"]
        opt_g, opt_d = step.optimizers["generator"], step.optimizers["discriminator"]
        device = next(G.parameters()).device
        parts = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        xs = parts[0].to(device)  # (n_critic, B, ...)
        ys = parts[1].to(device) if self.variant.conditional else None  # (n_critic, B)

        def gen(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
            return G(z) if y is None else G(z, y)

        def disc(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
            return (D(x) if y is None else D(x, y)).reshape(len(x))  # (B,)

        w = self.variant.aux_weight

        def disc_aux(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """AC-GAN: D's logits (B,) and its auxiliary classifier's cross-entropy on labels y (a scalar)."""
            logits, class_logits = D.forward_aux(x, y)  # (B,), (B, K)
            return logits.reshape(len(x)), F.cross_entropy(class_logits, y)

        d_total = 0.0
        for i, real in enumerate(xs):  # (B, ...) each
            y_real = None if ys is None else ys[i]
            z, y_fake = self._noise(len(real), step, device)
            with torch.no_grad():  # D's step needs no graph through G (batch norm still updates its statistics)
                fake = gen(z, y_fake)
            if w:
                (d_real, c_real), (d_fake, c_fake) = disc_aux(real, y_real), disc_aux(fake, y_fake)
                d_loss = self.d_loss(d_real, d_fake) + w * (c_real + c_fake)
            else:
                d_loss = self.d_loss(disc(real, y_real), disc(fake, y_fake))
            if self.variant.gp:  # the conditional critic is penalized at the real samples' labels
                d_loss = d_loss + gradient_penalty(lambda x: disc(x, y_real), real, fake, self.gp_weight,
                                                   step.generator)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            if self.variant.clip:
                clip_weights_(D, self.clip_value)
            d_total += float(d_loss.detach())
        z, y_fake = self._noise(xs.shape[1], step, device)
        if w:
            g_fake, c_fake = disc_aux(gen(z, y_fake), y_fake)
            g_loss = self.g_loss(g_fake) + w * c_fake
        else:
            g_loss = self.g_loss(disc(gen(z, y_fake), y_fake))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        return StepOutput(g_loss.detach() + d_loss.detach(),  # checked for NaN by the Trainer
                          {"d_loss": d_total / len(xs), "g_loss": float(g_loss.detach())}, 1)
