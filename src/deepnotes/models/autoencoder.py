"""Auto-encoders by name, and the tasks that train them with :class:`deepnotes.train.Trainer`.

The networks are :mod:`deepnotes.nn.autoencoder` (AE, denoising AE), :mod:`deepnotes.nn.vae` (VAE),
:mod:`deepnotes.nn.vq` (VQ-VAE) and :mod:`deepnotes.nn.gumbel` (discrete VAE through Gumbel-softmax); see them for
the sources. Registered names: ``ae`` and ``dae`` (the same :class:`~deepnotes.nn.autoencoder.Autoencoder`; the
denoising is the task's), ``vae``, ``vq-vae``, ``gumbel-vae``; :func:`autoencoder_task` gives each its task.

A batch is ``(x, y)`` of uint8 images (labels unused), turned by the lab's ``prepare_batch`` into pixels in [0, 1]
on the device. Every task's loss is a mean over the batch of a per-image quantity in nats (Bernoulli decoder):

* :class:`AutoencoderTask` (``ae``): ``-log p(x | dec(enc(x)))`` (binary cross-entropy summed over pixels), or the
  per-pixel squared error with ``loss="mse"``;
* :class:`DenoisingTask` (``dae``): the same loss of the *clean* x from ``dec(enc(x~))``, x~ corrupted with noise
  drawn from the Trainer's seeded generator (so ``--resume`` redraws the same noise);
* :class:`VAETask`: the negative ELBO, ``nll + kl``, one reparameterized sample per image;
* :class:`VQVAETask`: eq. (3) of van den Oord et al.: ``nll + codebook + beta commitment`` (codebook term replaced
  by EMA updates in EMA mode); the batch's code perplexity is logged;
* :class:`GumbelVAETask`: the relaxed negative ELBO with the temperature annealed by update
  (:func:`deepnotes.nn.gumbel.tau_schedule`, 1 -> 0.5); evaluation decodes one-hot samples (the discrete bound).

Evaluation draws its noise (corruption, z samples) from a generator seeded by the batch's contents, so the
validation numbers of a batch are the same at every epoch and after ``--resume``. The tasks call the model's own
methods (``loss_terms``): they run in one process (no DistributedDataParallel wrapper).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from deepnotes.models.registry import register_model
from deepnotes.nn.autoencoder import Autoencoder, bernoulli_nll, corrupt, squared_error
from deepnotes.nn.gumbel import GumbelVAE, categorical_kl_uniform, tau_schedule
from deepnotes.nn.vae import VAE
from deepnotes.nn.vq import VQVAE
from deepnotes.train.batches import seed_for
from deepnotes.train.task import PrepareBatch, Step, StepOutput, Task

#: The names registered here, in the order a lab shows them.
AUTOENCODERS = ("ae", "dae", "vae", "vq-vae", "gumbel-vae")


@register_model("ae")
def ae(in_channels: int = 1, latent_dim: int = 16, **kwargs: Any) -> Autoencoder:
    """:class:`deepnotes.nn.autoencoder.Autoencoder` (keyword arguments: ``width``, ``hidden``, ``image_size``)."""
    return Autoencoder(latent_dim=latent_dim, in_channels=in_channels, **kwargs)


@register_model("dae")
def dae(in_channels: int = 1, latent_dim: int = 16, **kwargs: Any) -> Autoencoder:
    """The same network as ``ae``; :class:`DenoisingTask` trains it on corrupted inputs."""
    return Autoencoder(latent_dim=latent_dim, in_channels=in_channels, **kwargs)


@register_model("vae")
def vae(in_channels: int = 1, latent_dim: int = 16, **kwargs: Any) -> VAE:
    """:class:`deepnotes.nn.vae.VAE` (also ``beta``)."""
    return VAE(latent_dim=latent_dim, in_channels=in_channels, **kwargs)


@register_model("vq-vae")
def vq_vae(in_channels: int = 1, num_latents: int = 16, num_codes: int = 64, code_dim: int = 16,
           **kwargs: Any) -> VQVAE:
    """:class:`deepnotes.nn.vq.VQVAE` (also ``commitment_cost``, ``ema``, ``decay``, ``eps``)."""
    return VQVAE(num_latents=num_latents, num_codes=num_codes, code_dim=code_dim, in_channels=in_channels, **kwargs)


@register_model("gumbel-vae")
def gumbel_vae(in_channels: int = 1, num_latents: int = 16, categories: int = 64, **kwargs: Any) -> GumbelVAE:
    """:class:`deepnotes.nn.gumbel.GumbelVAE` (also ``hard`` for straight-through samples)."""
    return GumbelVAE(num_latents=num_latents, categories=categories, in_channels=in_channels, **kwargs)


class ReconstructionTask(Task):
    """The base of the auto-encoder tasks: prepares the batch, picks the generator, averages per-image terms.

    Subclasses define ``terms(model, x, step, generator) -> dict`` of (B,) tensors holding ``loss`` (and whatever
    else the epoch should average: ``nll``, ``kl``...) or scalars (batch statistics, averaged over batches).

    Args:
        model: the network.
        prepare_batch: ``(x, y, train, generator) -> (pixels in [0, 1] on the device, y)``.
        seed: the run's seed; evaluation draws from a generator seeded by (seed, the batch's pixel sum).
    """

    def __init__(self, model: nn.Module, prepare_batch: PrepareBatch, seed: int = 0):
        super().__init__(model)
        self.prepare_batch, self.seed = prepare_batch, seed

    def terms(self, model: nn.Module, x: Tensor, step: Step, generator: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        x, _ = self.prepare_batch(batch[0], batch[1], step.train, step.generator)
        generator = step.generator
        if generator is None:  # evaluation: the same draws for the same batch, every time
            generator = torch.Generator().manual_seed(seed_for(self.seed, int(batch[0].sum())))
        with step.autocast():
            terms = self.terms(model, x, step, generator)
        n = len(x)
        sums = {k: float(v.detach().float().sum()) if v.ndim else float(v) * n for k, v in terms.items()}
        return StepOutput(terms["loss"].float().mean(), sums, n)


class AutoencoderTask(ReconstructionTask):
    """The plain auto-encoder: reconstruct x from x. Epoch metric ``loss`` (nats per image, or squared error per
    pixel with ``loss="mse"``).

    Raises:
        ValueError: ``loss`` is not ``"bce"`` or ``"mse"``.
    """

    def __init__(self, model: nn.Module, prepare_batch: PrepareBatch, seed: int = 0,
                 loss: Literal["bce", "mse"] = "bce"):
        super().__init__(model, prepare_batch, seed)
        if loss not in ("bce", "mse"):
            raise ValueError(f"loss must be 'bce' or 'mse', got {loss!r}")
        self.loss = loss

    def inputs(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return x

    def terms(self, model: nn.Module, x: Tensor, step: Step, generator: torch.Generator) -> dict[str, Tensor]:
        logits = model(self.inputs(x, generator)).float()
        return {"loss": bernoulli_nll(logits, x) if self.loss == "bce" else squared_error(logits, x)}


class DenoisingTask(AutoencoderTask):
    """The denoising auto-encoder (Vincent et al. 2008): the loss of the clean x from ``model(corrupt(x))``.

    Args:
        model, prepare_batch, seed, loss: as :class:`AutoencoderTask`.
        noise: ``"mask"`` or ``"gaussian"`` (:func:`deepnotes.nn.autoencoder.corrupt`). Default ``"mask"``.
        noise_level: masking probability or noise standard deviation. Default 0.25.
    """

    def __init__(self, model: nn.Module, prepare_batch: PrepareBatch, seed: int = 0,
                 loss: Literal["bce", "mse"] = "bce", noise: Literal["mask", "gaussian"] = "mask",
                 noise_level: float = 0.25):
        super().__init__(model, prepare_batch, seed, loss)
        corrupt(torch.zeros(1), noise, noise_level)  # checks the arguments now (ValueError naming them)
        self.noise, self.noise_level = noise, noise_level

    def inputs(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return corrupt(x, self.noise, self.noise_level, generator)


class VAETask(ReconstructionTask):
    """The negative ELBO of :class:`~deepnotes.nn.vae.VAE`. Epoch metrics: ``loss`` (nats per image), ``nll``,
    ``kl``."""

    def terms(self, model: nn.Module, x: Tensor, step: Step, generator: torch.Generator) -> dict[str, Tensor]:
        t = model.loss_terms(x, generator=generator)
        return {"loss": t["loss"], "nll": t["nll"], "kl": t["kl"]}


class VQVAETask(ReconstructionTask):
    """Eq. (3) of the VQ-VAE. Epoch metrics: ``loss``, ``nll``, ``commitment``, ``codebook`` (per image) and the
    batches' mean code ``perplexity``."""

    def terms(self, model: nn.Module, x: Tensor, step: Step, generator: torch.Generator) -> dict[str, Tensor]:
        t = model.loss_terms(x)
        return {k: t[k] for k in ("loss", "nll", "commitment", "codebook", "perplexity")}


class GumbelVAETask(ReconstructionTask):
    """The Gumbel-softmax VAE's relaxed negative ELBO, the temperature annealed by update from ``tau0`` to
    ``tau_min`` (:func:`deepnotes.nn.gumbel.tau_schedule`). Evaluation reports the discrete model's negative ELBO
    (one-hot samples). Epoch metrics: ``loss``, ``nll``, ``kl``, ``tau`` (training).

    Raises:
        ValueError: the temperatures out of order (0 < tau_min <= tau0).
    """

    def __init__(self, model: nn.Module, prepare_batch: PrepareBatch, seed: int = 0, tau0: float = 1.0,
                 tau_min: float = 0.5):
        super().__init__(model, prepare_batch, seed)
        tau_schedule(0, 1, tau0, tau_min)  # checks the temperatures now
        self.tau0, self.tau_min = tau0, tau_min

    def terms(self, model: nn.Module, x: Tensor, step: Step, generator: torch.Generator) -> dict[str, Tensor]:
        if not step.train:
            logits = model.encode(x)
            loss = model.negative_elbo(x, generator)
            return {"loss": loss, "kl": categorical_kl_uniform(logits).sum(-1)}
        tau = tau_schedule(step.step, step.total_steps, self.tau0, self.tau_min)
        t = model.loss_terms(x, tau, generator=generator)
        return {"loss": t["loss"], "nll": t["nll"], "kl": t["kl"], "tau": torch.tensor(tau)}


def autoencoder_task(name: str, model: nn.Module, prepare_batch: PrepareBatch, seed: int = 0,
                     **kwargs: Any) -> ReconstructionTask:
    """The task that trains the model registered as ``name`` (one of :data:`AUTOENCODERS`).

    Args:
        kwargs: the task's own options: ``loss`` (ae, dae), ``noise`` and ``noise_level`` (dae), ``tau0`` and
            ``tau_min`` (gumbel-vae); options of other tasks are ignored.

    Raises:
        ValueError: unknown ``name``, or a task rejects its options.
    """
    tasks: dict[str, tuple[type, tuple[str, ...]]] = {
        "ae": (AutoencoderTask, ("loss",)), "dae": (DenoisingTask, ("loss", "noise", "noise_level")),
        "vae": (VAETask, ()), "vq-vae": (VQVAETask, ()), "gumbel-vae": (GumbelVAETask, ("tau0", "tau_min"))}
    if name not in tasks:
        raise ValueError(f"name must be one of {', '.join(AUTOENCODERS)}, got {name!r}")
    cls, keys = tasks[name]
    return cls(model, prepare_batch, seed, **{k: v for k, v in kwargs.items() if k in keys})


# ------------------------------------------------------------------ scoring, codes, latent walks (labs read these)
def _latent_maps(model: nn.Module) -> tuple[Any, Any]:
    """``(to_latent, from_latent)``: the continuous space a model interpolates in, and back to image logits."""
    if isinstance(model, VAE):
        return model.code, model.decode  # the posterior mean
    if isinstance(model, VQVAE):  # z_e, quantized on the way back (the walk jumps between codes)
        return model.encode, lambda z: model.decode(model.quantizer(z).quantized)
    if isinstance(model, GumbelVAE):  # q(y | x), decoded as the relaxed input the decoder was trained on
        return (lambda x: torch.softmax(model.encode(x).float(), -1)), model.decode
    if isinstance(model, Autoencoder):
        return model.encode, model.decode
    raise ValueError(f"model must be one of Autoencoder, VAE, VQVAE, GumbelVAE, got {type(model).__name__}")


@torch.no_grad()
def interpolate(model: nn.Module, x0: Tensor, x1: Tensor, steps: int = 8) -> Tensor:
    """Decoded points on the straight line between the latents of two images (ML2021: walking in the code space).

    The latent is z (AE), the posterior mean (VAE), z_e quantized after mixing (VQ-VAE), or the probabilities
    q(y | x) (Gumbel VAE).

    Args:
        model: an :class:`~deepnotes.nn.autoencoder.Autoencoder`, :class:`~deepnotes.nn.vae.VAE`,
            :class:`~deepnotes.nn.vq.VQVAE` or :class:`~deepnotes.nn.gumbel.GumbelVAE`.
        x0, x1: (C, S, S) images in [0, 1].
        steps: points from x0's latent to x1's, both ends included (>= 2). Default 8.

    Returns:
        (steps, C, S, S) pixel means in [0, 1], on the CPU.

    Raises:
        ValueError: another model type, or ``steps`` < 2.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    to_latent, from_latent = _latent_maps(model)
    model.eval()
    device = next(model.parameters()).device
    z = to_latent(torch.stack([x0, x1]).to(device))  # (2, ...)
    w = torch.linspace(0, 1, steps, device=device).reshape(-1, *([1] * (z.ndim - 1)))  # (steps, 1, ...)
    return torch.sigmoid(from_latent((1 - w) * z[:1] + w * z[1:]).float()).cpu()


@torch.no_grad()
def sample_prior(model: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` images decoded from the prior: N(0, I) (VAE), uniform one-hot categories (Gumbel VAE), uniform codes
    (VQ-VAE, whose real prior is learned afterwards, e.g. by a PixelCNN over the codes).

    Returns:
        (n, C, S, S) pixel means in [0, 1], on the CPU.

    Raises:
        ValueError: a model without a prior (the AE), or ``n`` < 1.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    model.eval()
    device = next(model.parameters()).device
    if isinstance(model, VAE):
        z = torch.randn(n, model.latent_dim, generator=generator)
        out = model.decode(z.to(device))
    elif isinstance(model, GumbelVAE):
        k = torch.randint(model.categories, (n, model.num_latents), generator=generator)
        out = model.decode(torch.nn.functional.one_hot(k, model.categories).float().to(device))
    elif isinstance(model, VQVAE):
        k = torch.randint(model.quantizer.num_codes, (n, model.num_latents), generator=generator)
        out = model.decode_codes(k.to(device))
    else:
        raise ValueError(f"{type(model).__name__} has no prior to sample from (VAE, VQVAE or GumbelVAE)")
    return torch.sigmoid(out.float()).cpu()


@torch.no_grad()
def score_images(model: nn.Module, x: Tensor, seed: int = 0, batch_size: int = 500,
                 noise: tuple[str, float] | None = None) -> dict[str, Tensor]:
    """Per-image scores of an auto-encoder on pixels ``x`` (N, C, S, S) in [0, 1] (what an anomaly detector ranks):

    * ``mse``: squared error per pixel of the deterministic reconstruction (``model.reconstruct``: z, the posterior
      mean, the quantized code, the mode of q);
    * ``bce``: its Bernoulli negative log-likelihood, nats per image;
    * ``negative_elbo`` (VAE, VQ-VAE, Gumbel VAE): ``-L(x)`` with one posterior sample per image, drawn from a
      generator seeded by ``seed`` (VQ-VAE: deterministic, ``nll + M log K``);
    * ``codes`` (VQ-VAE): (N, M) code indices;
    * ``denoise_bce`` (with ``noise = (kind, level)``): the Bernoulli negative log-likelihood of the clean x from the
      reconstruction of a corrupted copy (:func:`~deepnotes.nn.autoencoder.corrupt`, drawn from a generator seeded by
      ``seed``): what the denoising auto-encoder is trained for.

    Returns:
        name -> (N,) float tensor (``codes``: (N, M) int64), on the CPU.
    """
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    noise_generator = torch.Generator().manual_seed(seed)
    out: dict[str, list[Tensor]] = {}
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device)
        logits = model.reconstruct(xb).float()
        parts = {"mse": squared_error(logits, xb), "bce": bernoulli_nll(logits, xb)}
        if isinstance(model, (VAE, GumbelVAE)):
            parts["negative_elbo"] = model.negative_elbo(xb, generator)
        elif isinstance(model, VQVAE):
            t = model.loss_terms(xb)
            parts["negative_elbo"], parts["codes"] = t["negative_elbo"], t["codes"]
        if noise is not None:
            noisy = corrupt(xb, noise[0], noise[1], noise_generator)
            parts["denoise_bce"] = bernoulli_nll(model.reconstruct(noisy).float(), xb)
        for k, v in parts.items():
            out.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


@torch.no_grad()
def latent_codes(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    """``model.code`` of every image of ``x`` (N, C, S, S) in [0, 1]: the representation (N, F) on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model.code(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])
