"""Vector quantization and the VQ-VAE: a codebook, the nearest code, the straight-through estimator, the commitment
loss and the moving-average (EMA) codebook updates.

Source: van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning" (VQ-VAE):

* quantization, eq. (1)-(2): ``k = argmin_j ||z_e(x) - e_j||_2``, ``z_q(x) = e_k``, with a codebook
  ``e in R^{K x D}``;
* the straight-through estimator (section 3.2): the decoder's gradient at z_q is copied to z_e, i.e. the forward
  value ``z_e + sg[z_q - z_e]`` (= z_q) whose derivative with respect to z_e is the identity;
* the loss, eq. (3): ``log p(x | z_q(x)) + ||sg[z_e(x)] - e||^2 + beta ||z_e(x) - sg[e]||^2``: the codebook term
  moves the chosen codes towards the encoder outputs, the commitment term (beta = 0.25 in the paper) keeps the
  encoder's outputs near their codes;
* the EMA updates of Appendix A.1 (replacing the codebook term): for each code i, with n_i encoder outputs
  {z_ij} assigned to it in the batch, ``N_i <- gamma N_i + (1 - gamma) n_i``,
  ``m_i <- gamma m_i + (1 - gamma) sum_j z_ij``, ``e_i = m_i / N_i`` (gamma = 0.99); the cluster sizes are
  Laplace-smoothed, ``N_i <- (N_i + eps) / (n + K eps) n`` with ``n = sum_i N_i``, as in the authors' Sonnet code,
  so that a code nobody picks does not divide by zero;
* with a uniform prior over the K codes and a one-hot posterior, ``KL(q || p) = log K`` per quantized vector, a
  constant: ``-log p(x | z_q) + M log K`` (M vectors per image) is the VQ-VAE's negative ELBO.

Deliberate differences: the squared distances are summed over the D components of each vector (the paper's
||.||^2), and :class:`VQVAE` sums them over the M vectors of an image, matching reconstruction nats per image
(Sonnet averages over components instead; with this sum beta keeps the paper's meaning at any D and M). In EMA mode
the averages start at ``N_i = 1, m_i = e_i`` (so ``e_i = m_i / N_i`` holds from the first update and a code that is
never picked keeps its place while its counts decay), where Sonnet uses zero-debiased averages from 0. The EMA
updates run in training mode only, on the batch of this process (no all-reduce across processes). Codebook usage is
summarized by the perplexity ``exp(-sum_k p_k log p_k)`` of the code frequencies p (K when every code is used
equally, 1 when one code takes everything).

The VQ-VAE here quantizes M global code vectors per image (not the paper's spatial grid), so that it has the same
kind of latent as :class:`deepnotes.nn.gumbel.GumbelVAE`: M categorical variables over K values each.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.nn.autoencoder import ConvDecoder, ConvEncoder, bernoulli_nll

__all__ = ["VQOutput", "VQVAE", "VectorQuantizer", "nearest_code", "perplexity"]


def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the codebook row nearest to each vector (squared Euclidean distance, ties to the lowest index).

    ``||z - e_j||^2 = ||z||^2 - 2 z . e_j + ||e_j||^2``, computed as one matrix product.

    Args:
        z: (..., D) vectors.
        codebook: (K, D) codes.

    Returns:
        (...,) int64 indices in [0, K).

    Raises:
        ValueError: the last dimensions differ.
    """
    if z.shape[-1] != codebook.shape[-1]:
        raise ValueError(f"z's last dimension {z.shape[-1]} must equal the codebook's code_dim {codebook.shape[-1]}")
    flat = z.reshape(-1, z.shape[-1]).float()  # (n, D)
    e = codebook.float()
    d2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)  # (n, K)
    return d2.argmin(1).reshape(z.shape[:-1])


def perplexity(codes: Tensor, num_codes: int) -> Tensor:
    """``exp(H(p))`` of the frequencies p of ``codes`` over ``num_codes`` values (0 log 0 = 0).

    Args:
        codes: (...) int64 indices in [0, num_codes).
        num_codes: K.

    Returns:
        A scalar in [1, K]: K for uniform usage of every code, 1 for a single code.

    Raises:
        ValueError: no codes, or ``num_codes`` < 1.
    """
    if codes.numel() == 0 or num_codes < 1:
        raise ValueError(f"perplexity needs at least one code and num_codes >= 1, got {codes.numel()} and {num_codes}")
    p = torch.bincount(codes.reshape(-1), minlength=num_codes).float() / codes.numel()
    return torch.exp(-torch.special.xlogy(p, p).sum())


class VQOutput(NamedTuple):
    """What :class:`VectorQuantizer` returns.

    Attributes:
        quantized: (..., D) ``z_e + sg[z_q - z_e]``: the forward value is z_q, the gradient goes to z_e unchanged.
        codes: (...) int64 index of each vector's code.
        codebook_loss: (...) ``||sg[z_e] - z_q||^2`` per vector (no gradient in EMA mode: a buffer codebook).
        commitment_loss: (...) ``||z_e - sg[z_q]||^2`` per vector.
        loss: (...) per vector: ``codebook_loss + beta commitment_loss``, or ``beta commitment_loss`` in EMA mode.
        perplexity: scalar, of this batch's code usage (:func:`perplexity`).
    """

    quantized: Tensor
    codes: Tensor
    codebook_loss: Tensor
    commitment_loss: Tensor
    loss: Tensor
    perplexity: Tensor


class VectorQuantizer(nn.Module):
    """A codebook of K vectors of size D; maps each input vector to its nearest code (van den Oord et al. 2017).

    Args:
        num_codes: K. Default 512.
        code_dim: D. Default 64.
        commitment_cost: beta, the commitment term's weight. Default 0.25 (the paper's).
        ema: update the codebook by exponential moving averages (Appendix A.1) instead of the codebook loss; the
            codebook is then a buffer, not a parameter. Default False.
        decay: gamma of the moving averages, in [0, 1). Default 0.99.
        eps: Laplace smoothing of the cluster sizes, > 0. Default 1e-5.

    Attributes:
        codebook: (K, D), initialized uniform in [-1/K, 1/K] (a parameter, or a buffer with ``ema``).
        ema_cluster_size, ema_sum: (K,) and (K, D) buffers N and m (``ema`` only).

    Shapes:
        z_e (..., D) -> :class:`VQOutput` (quantized (..., D), codes (...), per-vector losses (...)).

    Raises:
        ValueError: a size below 1, ``commitment_cost`` < 0, ``decay`` outside [0, 1) or ``eps`` <= 0.

    Example::

        vq = VectorQuantizer(num_codes=64, code_dim=16, ema=True)
        out = vq(z_e)                              # z_e (B, M, 16)
        recon = decoder(out.quantized)             # gradients reach the encoder through the straight-through copy
        loss = nll + out.loss.sum(-1)              # (B,)
    """

    def __init__(self, num_codes: int = 512, code_dim: int = 64, commitment_cost: float = 0.25, ema: bool = False,
                 decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        if num_codes < 1 or code_dim < 1:
            raise ValueError(f"num_codes and code_dim must be >= 1, got {num_codes} and {code_dim}")
        if commitment_cost < 0:
            raise ValueError(f"commitment_cost must be >= 0, got {commitment_cost}")
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.num_codes, self.code_dim = num_codes, code_dim
        self.commitment_cost, self.ema, self.decay, self.eps = commitment_cost, ema, decay, eps
        init = torch.empty(num_codes, code_dim).uniform_(-1 / num_codes, 1 / num_codes)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_cluster_size", torch.ones(num_codes))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)

    @torch.no_grad()
    def ema_update(self, z_e: Tensor, codes: Tensor) -> None:
        """One EMA step of the codebook from the vectors ``z_e`` (n, D) assigned to ``codes`` (n,) (Appendix A.1;
        see the module docstring). Called by :meth:`forward` in training mode when ``ema`` is set."""
        onehot = F.one_hot(codes, self.num_codes).to(z_e.dtype)  # (n, K)
        n_i = onehot.sum(0)  # (K,) vectors assigned to each code
        sums = onehot.t() @ z_e  # (K, D) sum of the vectors assigned to each code
        self.ema_cluster_size.mul_(self.decay).add_(n_i, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_cluster_size.sum()
        smoothed = (self.ema_cluster_size + self.eps) / (n + self.num_codes * self.eps) * n  # Laplace smoothing
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))

    def forward(self, z_e: Tensor) -> VQOutput:
        if z_e.shape[-1] != self.code_dim:
            raise ValueError(f"z_e's last dimension {z_e.shape[-1]} must equal code_dim {self.code_dim}")
        codes = nearest_code(z_e.detach(), self.codebook)  # (...)
        if self.ema and self.training:
            self.ema_update(z_e.detach().reshape(-1, self.code_dim).float(), codes.reshape(-1))
        z_q = self.codebook[codes].to(z_e.dtype)  # (..., D)
        codebook_loss = (z_q - z_e.detach()).float().pow(2).sum(-1)
        commitment_loss = (z_e - z_q.detach()).float().pow(2).sum(-1)
        loss = self.commitment_cost * commitment_loss + (0 if self.ema else codebook_loss)
        quantized = z_e + (z_q - z_e).detach()  # straight-through: forward z_q, gradient identity to z_e
        return VQOutput(quantized, codes, codebook_loss, commitment_loss, loss, perplexity(codes, self.num_codes))


class VQVAE(nn.Module):
    """A VQ-VAE with M global code vectors per image: encoder -> (B, M, D) -> nearest codes -> decoder.

    Args:
        num_latents: M, code vectors per image. Default 16.
        num_codes: K, codebook size. Default 64.
        code_dim: D. Default 16.
        in_channels: image channels. Default 1.
        width, hidden, image_size: as :class:`~deepnotes.nn.autoencoder.ConvEncoder`.
        commitment_cost, ema, decay, eps: as :class:`VectorQuantizer`.

    Shapes:
        x (B, C, S, S); encode -> z_e (B, M, D); quantize -> :class:`VQOutput`; decode: (B, M, D) -> logits.

    Raises:
        ValueError: as :class:`VectorQuantizer` and :class:`~deepnotes.nn.autoencoder.ConvEncoder`.
    """

    def __init__(self, num_latents: int = 16, num_codes: int = 64, code_dim: int = 16, in_channels: int = 1,
                 width: int = 32, hidden: int = 256, image_size: int = 28, commitment_cost: float = 0.25,
                 ema: bool = True, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        if num_latents < 1:
            raise ValueError(f"num_latents must be >= 1, got {num_latents}")
        self.num_latents, self.code_dim = num_latents, code_dim
        self.encoder = ConvEncoder(num_latents * code_dim, in_channels, width, hidden, image_size)
        self.quantizer = VectorQuantizer(num_codes, code_dim, commitment_cost, ema, decay, eps)
        self.decoder = ConvDecoder(num_latents * code_dim, in_channels, width, hidden, image_size)

    def encode(self, x: Tensor) -> Tensor:
        """z_e: (B, M, D)."""
        return self.encoder(x).reshape(len(x), self.num_latents, self.code_dim)

    def decode(self, z_q: Tensor) -> Tensor:
        return self.decoder(z_q.flatten(1))

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Logits of the images whose code indices are ``codes`` (B, M)."""
        return self.decode(self.quantizer.codebook[codes])

    def code(self, x: Tensor) -> Tensor:
        """The representation: z_q flattened, (B, M D)."""
        return self.quantizer(self.encode(x)).quantized.flatten(1)

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.quantizer(self.encode(x)).quantized)

    def loss_terms(self, x: Tensor, target: Tensor | None = None) -> dict[str, Tensor]:
        """Eq. (3) per image: ``nll`` ``-log p(target | z_q)``, ``vq`` (codebook + beta commitment, summed over the
        M vectors), ``loss`` = nll + vq, ``commitment`` and ``codebook`` (summed over M), ``negative_elbo``
        (nll + M log K): each (B,); ``perplexity`` (scalar) and ``codes`` (B, M)."""
        out = self.quantizer(self.encode(x))
        nll = bernoulli_nll(self.decode(out.quantized), x if target is None else target)
        vq = out.loss.sum(-1)
        kl = self.num_latents * torch.log(torch.tensor(float(self.quantizer.num_codes)))
        return {"nll": nll, "vq": vq, "loss": nll + vq, "commitment": out.commitment_loss.sum(-1),
                "codebook": out.codebook_loss.sum(-1), "negative_elbo": nll + kl, "perplexity": out.perplexity,
                "codes": out.codes}

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)
