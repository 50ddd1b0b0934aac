"""Spectral normalization by power iteration: ``W_SN = W / sigma(W)``, sigma the largest singular value.

Source: EE-559 11-2 (Fleuret: "Spectral Normalization is a layer normalization that estimates the largest
singular value of a weight matrix, and rescales it accordingly": a 1-Lipschitz layer, so a 1-Lipschitz critic
with 1-Lipschitz activations); Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks",
Algorithm 1. A linear layer's Lipschitz constant is ``sigma(W) = max_{||h|| = 1} ||W h||``; keeping a left and a
right vector ``u``, ``v`` from one update to the next, one step of the power iteration per forward pass is
enough, because ``W`` changes little per update::

    u <- W v / ||W v||          v <- W^T u / ||W^T u||        sigma = u^T W v        W_SN = W / sigma

A convolution's kernel (C_out, C_in, kh, kw) is reshaped to (C_out, C_in * kh * kw) first (``dim`` 0; a transposed
convolution's output channels are its ``dim`` 1). Gradients flow through ``sigma`` (through ``W`` with ``u`` and
``v`` held constant), as in the paper. The iteration runs in training mode only; in evaluation mode the stored
``u`` and ``v`` are used as they are.

Deliberate differences from the paper's listing, so that the values match
``torch.nn.utils.parametrizations.spectral_norm`` (tested): the update computes ``u`` from ``v`` then ``v`` from
``u`` (Algorithm 1 updates ``v`` first: the same iteration, shifted by half a step); 15 iterations are run when the
layer is wrapped, so that ``sigma`` is accurate from the first forward pass; a 1-D weight is divided by its norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["SpectralNorm", "power_iteration", "spectral_norm", "weight_matrix"]


def weight_matrix(weight: Tensor, dim: int = 0) -> Tensor:
    """``weight`` as a matrix: ``dim`` first, the other dimensions flattened, (weight.shape[dim], -1)."""
    if dim != 0:
        weight = weight.movedim(dim, 0)
    return weight.flatten(1)


@torch.no_grad()
def power_iteration(weight_mat: Tensor, u: Tensor, v: Tensor, n_iterations: int = 1,
                    eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """``n_iterations`` steps of ``u <- W v / ||W v||``, ``v <- W^T u / ||W^T u||``, written into ``u`` and ``v``.

    Args:
        weight_mat: (H, W) the matrix.
        u: (H,) the current left vector. v: (W,) the current right vector (both updated in place).
        n_iterations: steps (>= 0).
        eps: the smallest norm divided by (as F.normalize).

    Returns:
        ``(u, v)``, the same tensors.
    """
    for _ in range(n_iterations):
        F.normalize(torch.mv(weight_mat, v), dim=0, eps=eps, out=u)
        F.normalize(torch.mv(weight_mat.H, u), dim=0, eps=eps, out=v)
    return u, v


class SpectralNorm(nn.Module):
    """A parametrization ``W -> W / sigma(W)`` with ``sigma = u^T W v`` from a power iteration kept in buffers.

    Register it with :func:`spectral_norm` (or ``torch.nn.utils.parametrize.register_parametrization``); the
    buffers ``_u`` (H,) and ``_v`` (W,) are saved in the module's state_dict, so a checkpoint resumes the iteration.

    Args:
        weight: the weight it will normalize (to size ``u`` and ``v``).
        n_power_iterations: power-iteration steps per forward pass in training mode (>= 1; the paper: 1).
        dim: the dimension of the output features (0; 1 for transposed convolutions).
        eps: the smallest norm divided by.
        generator: the source of the random initial ``u``, ``v``; default None: torch's global generator.

    Raises:
        ValueError: ``n_power_iterations < 1`` or ``dim`` out of range.
    """

    def __init__(self, weight: Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12,
                 generator: torch.Generator | None = None):
        super().__init__()
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        if not -weight.ndim <= dim < max(weight.ndim, 1):
            raise ValueError(f"dim must be in [-{weight.ndim}, {weight.ndim - 1}], got {dim}")
        self.dim = dim % weight.ndim
        self.eps = eps
        self.n_power_iterations = n_power_iterations
        if weight.ndim > 1:
            mat = weight_matrix(weight.detach(), self.dim)
            h, w = mat.shape
            u = torch.randn(h, generator=generator, dtype=mat.dtype).to(mat.device)
            v = torch.randn(w, generator=generator, dtype=mat.dtype).to(mat.device)
            self.register_buffer("_u", F.normalize(u, dim=0, eps=eps))
            self.register_buffer("_v", F.normalize(v, dim=0, eps=eps))
            power_iteration(mat, self._u, self._v, 15, eps)  # start from good singular vectors

    def sigma(self, weight: Tensor) -> Tensor:
        """``u^T W v`` with the stored vectors (no iteration); differentiable in ``weight``."""
        mat = weight_matrix(weight, self.dim)
        u = self._u.clone(memory_format=torch.contiguous_format)  # clones: a later in-place update must not
        v = self._v.clone(memory_format=torch.contiguous_format)  # change what an earlier graph saved
        return torch.vdot(u, torch.mv(mat, v))

    def forward(self, weight: Tensor) -> Tensor:
        """``weight / sigma``, after ``n_power_iterations`` steps when training; a 1-D weight over its norm."""
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        if self.training:
            power_iteration(weight_matrix(weight, self.dim), self._u, self._v, self.n_power_iterations, self.eps)
        return weight / self.sigma(weight)

    def right_inverse(self, value: Tensor) -> Tensor:
        """Assigning ``module.weight = value`` stores ``value`` as the unnormalized weight."""
        return value


def spectral_norm(module: nn.Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None, generator: torch.Generator | None = None) -> nn.Module:
    """Spectrally normalize ``module.<name>`` (a parametrization: ``module.weight`` is then ``W / sigma(W)``).

    Args:
        module: a layer with a weight (Linear, Conv*, ConvTranspose*, Embedding...).
        name: the parameter's name (default ``"weight"``).
        n_power_iterations, eps, generator: see :class:`SpectralNorm`.
        dim: the output dimension; default None: 1 for transposed convolutions, else 0.

    Returns:
        ``module`` (changed in place).

    Raises:
        ValueError: ``module`` has no parameter ``name``, or see :class:`SpectralNorm`.

    Example::

        critic = nn.Sequential(spectral_norm(nn.Linear(2, 128)), nn.ReLU(), spectral_norm(nn.Linear(128, 1)))
    """
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"module {type(module).__name__} has no parameter or buffer called {name!r}")
    if dim is None:
        dim = 1 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    parametrize.register_parametrization(module, name, SpectralNorm(weight, n_power_iterations, dim, eps, generator))
    return module
