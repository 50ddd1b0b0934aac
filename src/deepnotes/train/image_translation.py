"""Image-to-image translation as :class:`~deepnotes.train.task.Task` s: pix2pix on paired images, CycleGAN on
unpaired ones (manual optimization with two named optimizers, ``generator`` and ``discriminator``, as
:class:`deepnotes.train.gan.GANTask`).

Sources: Isola et al., CVPR 2017 (pix2pix), section 3.3: "we alternate between one gradient descent step on D,
then one step on G", D's objective divided by 2, Adam with lr 2e-4 and betas (0.5, 0.999). Zhu et al., ICCV 2017
(CycleGAN), section 4 and their code: per update, one step of both generators on eq. (3) plus the identity term,
then one step of both discriminators (each loss halved), Adam with the same settings. The losses are
:mod:`deepnotes.nn.image_translation`.

* :class:`Pix2PixTask`: batches ``(x, y)`` of paired uint8 images; without a discriminator in the model it trains
  the L1-only ablation (Isola et al., Table 1, "L1").
* :class:`CycleGANTask`: batches ``(a, b)`` of unpaired uint8 images of two domains (the channels may differ).
* :class:`UnpairedBatches`: independent shuffles of two image sets, a batch of each per update; the order depends
  only on (seed, epoch), so a resumed run draws the same batches.

Nothing in these steps is random (no z: like pix2pix's authors found, the generator learns to ignore it; no
dropout), so a run stopped after an epoch and resumed ends bit-equal to an uninterrupted one.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from deepnotes.nn.image_translation import (TRANSLATION_LOSSES, cycle_consistency_loss, cyclegan_generator_loss,
                                            identity_loss, pix2pix_generator_loss)
from deepnotes.train.batches import seed_for
from deepnotes.train.engine import optimizer_impl_kwargs
from deepnotes.train.task import Step, StepOutput, Task

__all__ = ["CycleGANTask", "Pix2PixTask", "UnpairedBatches", "match_channels", "to_signed"]


def to_signed(images: Tensor, device: torch.device | None = None) -> Tensor:
    """uint8 images 0-255 -> float32 in [-1, 1] (the generators' tanh range), on ``device``."""
    return images.to(device).float().div(127.5).sub(1.0)


def match_channels(x: Tensor, channels: int) -> Tensor:
    """``x`` (B, C, H, W) with ``channels`` channels: itself when C matches, the grey image repeated over 3 channels
    (C = 1), or the mean over the channels (``channels`` = 1): how an image of one domain is shown to a generator
    of the other for the identity loss when the domains differ in channels.

    Raises:
        ValueError: any other pair of channel counts.
    """
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1)
    if channels == 1:
        return x.mean(1, keepdim=True)
    raise ValueError(f"cannot map {c} channels to {channels}")


def _adam(params: Any, lr: float, betas: tuple[float, float], cfg: Any) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=betas, **optimizer_impl_kwargs(getattr(cfg, "optimizer_impl",
                                                                                        "foreach")))


class Pix2PixTask(Task):
    """pix2pix: a conditional GAN with an L1 term, on paired images.

    One update: D takes a step on ``0.5 * d_loss(D(y | x), D(G(x) | x))``, then G takes a step on eq. (4),
    ``g_loss(D(G(x) | x)) + l1_weight * mean|y - G(x)|`` (with the updated D). Without ``discriminator`` in the
    model only G's L1 step is taken. Images arrive as uint8 and are mapped to [-1, 1] on G's device. Epoch
    metrics (means over images): ``d_loss``, ``g_adv`` (the adversarial term) and ``l1`` (in [-1, 1] units: twice
    the L1 in [0, 1]).

    Args:
        model: ``ModuleDict(generator=G)`` or ``ModuleDict(generator=G, discriminator=D)``; ``G(x)`` -> (B, C_y,
            H, W), ``D(y, x)`` -> patch logits.
        l1_weight: lambda (the paper: 100), >= 0.
        lr: the optimizers' starting learning rate (the Trainer sets its schedule's before each update).
        betas: Adam's betas (the paper: (0.5, 0.999)).
        loss: a key of :data:`deepnotes.nn.image_translation.TRANSLATION_LOSSES` (the paper: ``nonsaturating``).

    Raises:
        ValueError: no ``generator`` in the model, ``l1_weight < 0``, an unknown loss.
    """

    manual_optimization = True

    def __init__(self, model: nn.ModuleDict, l1_weight: float = 100.0, lr: float = 2e-4,
                 betas: tuple[float, float] = (0.5, 0.999), loss: str = "nonsaturating"):
        super().__init__(model)
        if "generator" not in model or l1_weight < 0 or loss not in TRANSLATION_LOSSES:
            raise ValueError(f"Pix2PixTask needs a generator, l1_weight >= 0 and a loss in "
                             f"{', '.join(TRANSLATION_LOSSES)}; got {list(model)}, {l1_weight}, {loss!r}")
        self.adversarial = "discriminator" in model
        self.l1_weight, self.lr, self.betas = l1_weight, lr, betas
        self.d_loss, self.g_loss = TRANSLATION_LOSSES[loss]

    def configure_optimizers(self, cfg: Any) -> dict[str, torch.optim.Optimizer]:
        return {name: _adam(self.model[name].parameters(), self.lr, self.betas, cfg)
                for name in ("generator", "discriminator") if name in self.model}

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        G = model["generator"]
        device = next(G.parameters()).device
        x, y = to_signed(batch[0], device), to_signed(batch[1], device)  # (B, C_x, H, W), (B, C_y, H, W)
        fake = G(x)
        d_value, logits = 0.0, None
        if self.adversarial:
            D, opt_d = model["discriminator"], step.optimizers["discriminator"]
            d_loss = 0.5 * self.d_loss(D(y, x), D(fake.detach(), x))  # section 3.3: D's objective halved
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            d_value, logits = float(d_loss.detach()), D(fake, x)
        g = pix2pix_generator_loss(logits, fake, y, self.l1_weight, self.g_loss)
        opt_g = step.optimizers["generator"]
        opt_g.zero_grad(set_to_none=True)
        g.total.backward()
        opt_g.step()
        n = len(x)  # sums over the batch's images, so the epoch means are per image and throughput is images/s
        return StepOutput(g.total.detach(), {"d_loss": d_value * n, "g_adv": float(g.adversarial.detach()) * n,
                                             "l1": float(g.reconstruction.detach()) * n}, n)


class CycleGANTask(Task):
    """CycleGAN: two generators G: A -> B and F: B -> A, two discriminators D_A and D_B, on unpaired images.

    One update: both generators take one Adam step on ``g_loss(D_B(G(a))) + g_loss(D_A(F(b))) + cycle_weight *
    L_cyc + identity_weight * L_identity`` (the identity terms show G the b's and F the a's, channels adapted by
    :func:`match_channels`); then both discriminators take one step on ``0.5 * (d_loss(D_A(a), D_A(F(b))) +
    d_loss(D_B(b), D_B(G(a))))`` with the generated images of this update (no image pool: Zhu et al.'s buffer of 50
    past images is left out, so the step keeps no state outside the checkpoint). Epoch metrics (means over
    images): ``d_loss``, ``g_adv``, ``cycle``, ``identity`` (unweighted, [-1, 1] units).

    Args:
        model: ``ModuleDict(g_ab=G, g_ba=F, d_a=D_A, d_b=D_B)``; D's unconditional (``D(x)`` -> scores).
        cycle_weight: lambda_cyc (the paper: 10). identity_weight: lambda_id (the paper: 0.5 lambda_cyc = 5; 0
            skips the identity passes).
        lr, betas: Adam's (the paper: 2e-4, (0.5, 0.999)).
        loss: a key of :data:`~deepnotes.nn.image_translation.TRANSLATION_LOSSES` (the paper: ``least-squares``).

    Raises:
        ValueError: a missing network, a negative weight, an unknown loss.
    """

    manual_optimization = True
    NETWORKS = ("g_ab", "g_ba", "d_a", "d_b")

    def __init__(self, model: nn.ModuleDict, cycle_weight: float = 10.0, identity_weight: float = 5.0,
                 lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), loss: str = "least-squares"):
        super().__init__(model)
        if any(n not in model for n in self.NETWORKS) or min(cycle_weight, identity_weight) < 0 \
                or loss not in TRANSLATION_LOSSES:
            raise ValueError(f"CycleGANTask needs networks {', '.join(self.NETWORKS)}, weights >= 0 and a loss in "
                             f"{', '.join(TRANSLATION_LOSSES)}; got {list(model)}, {cycle_weight}, "
                             f"{identity_weight}, {loss!r}")
        self.cycle_weight, self.identity_weight, self.lr, self.betas = cycle_weight, identity_weight, lr, betas
        self.d_loss, self.g_loss = TRANSLATION_LOSSES[loss]

    def configure_optimizers(self, cfg: Any) -> dict[str, torch.optim.Optimizer]:
        m = self.model
        return {"generator": _adam(itertools.chain(m["g_ab"].parameters(), m["g_ba"].parameters()), self.lr,
                                   self.betas, cfg),
                "discriminator": _adam(itertools.chain(m["d_a"].parameters(), m["d_b"].parameters()), self.lr,
                                       self.betas, cfg)}

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        G, F, D_A, D_B = (model[n] for n in self.NETWORKS)
        device = next(G.parameters()).device
        a, b = to_signed(batch[0], device), to_signed(batch[1], device)  # (B, C_a, H, W), (B, C_b, H, W)
        fake_b, fake_a = G(a), F(b)
        cycle = cycle_consistency_loss(a, F(fake_b), b, G(fake_a))  # eq. (2)
        identity = None
        if self.identity_weight > 0:
            identity = identity_loss(a, F(match_channels(a, b.shape[1])), b, G(match_channels(b, a.shape[1])))
        g = cyclegan_generator_loss(D_B(fake_b), D_A(fake_a), cycle, identity, self.cycle_weight,
                                    self.identity_weight, self.g_loss)
        opt_g, opt_d = step.optimizers["generator"], step.optimizers["discriminator"]
        opt_g.zero_grad(set_to_none=True)
        g.total.backward()
        opt_g.step()
        d_loss = 0.5 * (self.d_loss(D_A(a), D_A(fake_a.detach())) + self.d_loss(D_B(b), D_B(fake_b.detach())))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        n = len(a)
        return StepOutput(g.total.detach() + d_loss.detach(),
                          {"d_loss": float(d_loss.detach()) * n, "g_adv": float(g.adversarial.detach()) * n,
                           "cycle": float(g.reconstruction.detach()) * n,
                           "identity": float(g.identity.detach()) * n}, n)


class UnpairedBatches:
    """Batches ``(a[i], b[j])`` of two unpaired image sets, shuffled independently: no row of ``a`` is ever tied
    to a row of ``b``.

    Epoch ``e`` takes ``steps_per_epoch * batch_size`` rows of each set from permutations drawn by generators
    seeded with ``seed_for(seed, e, 1)`` (for ``a``) and ``seed_for(seed, e, 2)`` (for ``b``), chained when one
    permutation is not enough, so the order depends only on (seed, epoch).

    Args:
        a: (N_a, ...) and b: (N_b, ...) tensors. batch_size: rows of each per batch (>= 1).
        seed: the order's seed. steps_per_epoch: batches per epoch; default ``min(N_a, N_b) // batch_size``
            (at least 1).

    Raises:
        ValueError: an empty set, ``batch_size < 1`` or ``steps_per_epoch < 1``.
    """

    def __init__(self, a: Tensor, b: Tensor, batch_size: int, seed: int, steps_per_epoch: int | None = None):
        if len(a) == 0 or len(b) == 0 or batch_size < 1 or (steps_per_epoch is not None and steps_per_epoch < 1):
            raise ValueError(f"UnpairedBatches needs non-empty sets, batch_size >= 1 and steps_per_epoch >= 1, got "
                             f"{len(a)}, {len(b)}, {batch_size}, {steps_per_epoch}")
        self.a, self.b, self.batch_size, self.seed = a, b, batch_size, seed
        self.steps = steps_per_epoch or max(1, min(len(a), len(b)) // batch_size)

    def __len__(self) -> int:
        return self.steps

    def _order(self, n: int, epoch: int, which: int) -> Tensor:
        g = torch.Generator().manual_seed(seed_for(self.seed, epoch, which))
        need = self.steps * self.batch_size
        return torch.cat([torch.randperm(n, generator=g) for _ in range(-(-need // n))])[:need]

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        ia, ib = self._order(len(self.a), epoch, 1), self._order(len(self.b), epoch, 2)
        for s in range(self.steps):
            rows = slice(s * self.batch_size, (s + 1) * self.batch_size)
            yield self.a[ia[rows]], self.b[ib[rows]]
