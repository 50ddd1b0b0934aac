r"""StableNet's pieces: random Fourier features, weighted cross-covariance, learned sample weights, global memory.

Source: the notes' digest of Zhang, Cui, Xu, Zhou, He & Shen, CVPR 2021, "Deep Stable Learning for
Out-Of-Distribution Generalization" (StableNet; seed 000: remove the statistical dependence between
relevant and irrelevant features by learning sample weights, measure general independence with random
Fourier features, and "perceive and remove correlations globally" by saving and reloading earlier
features and weights). Random Fourier features: Rahimi & Recht 2007, "Random Features for Large-Scale
Kernel Machines" (NeurIPS). The authors' code (github.com/xxgege/StableNet: ``loss_reweighting.py``,
``training/reweighting.py``) was read to settle details the paper leaves open; ours is written from
the equations below.

Random Fourier features (Rahimi & Recht). For the RBF kernel k(x, y) = exp(-|x - y|² / (2σ²)) on R^d,
with W ∈ R^{D x d} of i.i.d. N(0, 1/σ²) entries and b ∈ R^D uniform on [0, 2π)::

    z(x) = sqrt(2 / D) cos(W x + b),        E[z(x)·z(y)] = k(x, y)

StableNet (section 3) maps each scalar feature dimension Z_{:,i} through n_F functions of
H_RFF = {h: x -> sqrt(2) cos(ω x + φ) | ω ~ N(0, 1), φ ~ U(0, 2π)}, giving u(Z_{:,i}) ∈ R^{N x n_F}. Two
dimensions are independent when the partial cross-covariance of such maps vanishes (HSIC with RFF).
With sample weights w (w_i >= 0) normalised to p_i = w_i / Σ_j w_j, the weighted cross-covariance is::

    Σ^w_{AB} = Σ_i p_i (a_i - ā)(b_i - b̄)^T,   ā = Σ_i p_i a_i,  b̄ = Σ_i p_i b_i

and the decorrelation loss to be minimised over w is (paper, section 3.1)::

    L(w) = Σ_{1 <= i < j <= m} || Σ^w_{u(Z_{:,i}) u(Z_{:,j})} ||_F²

Sample weights (paper: w ∈ Δ_n = {w ∈ R^n_+ : Σ_i w_i = n}, i.e. mean 1) are parameterised, as in the
authors' code, as w = n softmax(θ) with free logits θ starting at 0 (uniform), optimised for a few
steps on the detached features; the classifier is then trained on the weighted loss Σ_i w_i ℓ_i / n.

Global saving and reloading (paper, section 3, "learning sample weights globally"): the weights are
learned on Z_O = [Z_G1; ...; Z_Gk; Z_L] (the saved global features and the current batch, the saved
weights w_G fixed), and after each batch the saved copies are fused with the batch's, each with its
own smoothing α_i (long- and short-term memory)::

    Z_Gi' = α_i Z_Gi + (1 - α_i) Z_L,        w_Gi' = α_i w_Gi + (1 - α_i) w_L

Deliberate differences, and the choices the paper leaves open:

* The weighted covariance is the standard one above (``numpy.cov(..., aweights=w, bias=True)``), as the
  authors' code computes it (``cov`` in ``loss_reweighting.py``, with softmax weights summing to 1).
* The loss covers every pair of RFF functions (k, l) of dimensions i < j, the Frobenius norm of the paper;
  the authors' code pairs only the k-th function of i with the k-th of j, and draws one function per
  dimension whose argument it min-max rescales per example.
* The frequencies are N(0, 1/σ²) with ``sigma`` = 1 by default (the paper's N(0, 1)); scale or
  standardise features whose spread is far from 1.
* One RFF draw per call of :func:`learn_sample_weights`, fixed during its steps (the code redraws every
  step); optimiser Adam (the code: SGD, lr 1, momentum 0.9, 20 steps); the optional ``weight_penalty``
  adds ``weight_penalty * mean(w²)`` (the code's ``lossp``, Σ softmax(θ)², which keeps the effective sample
  size n / mean(w²) from collapsing).
* Memory: the fusion is applied to the weights themselves (the code fuses the logits θ); rows never
  written are left out of Z_G; with ``warmup`` the first updates use the running mean,
  α_eff = min(α_i, t / (t + 1)) after t earlier updates of that row (the code's first-epoch warm-up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from deepnotes.nn.recurrent import _check_positive_int


def _check_sigma(sigma) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma (the RBF bandwidth) must be a finite number > 0, got {sigma!r}")
    return float(sigma)


def _check_matrix(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] == 0 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor of shape (N, C) with N >= 1, got {shape}")


def _normalized_weights(weights: Tensor | None, n: int, like: Tensor) -> Tensor:
    """Weights (N,) >= 0 with a positive sum, divided by their sum; None gives uniform 1/N."""
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    if not isinstance(weights, Tensor) or weights.shape != (n,):
        shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise ValueError(f"weights must be a tensor of shape ({n},), one per sample, got {shape}")
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()) or not bool(weights.sum() > 0):
        raise ValueError("weights must be finite, >= 0 and have a positive sum")
    weights = weights.to(like.dtype)
    return weights / weights.sum()


def random_fourier_features(x: Tensor, num_features: int, sigma: float = 1.0,
                            generator: torch.Generator | None = None) -> Tensor:
    """Rahimi & Recht's random Fourier features z(x) = sqrt(2/D) cos(W x + b) of the RBF kernel of bandwidth ``sigma``.

    ``z(x) @ z(y)`` estimates ``exp(-|x - y|² / (2 sigma²))`` (scikit-learn's ``rbf_kernel`` with
    ``gamma = 1 / (2 sigma²)``), unbiased, with an error of order 1 / sqrt(D). W (D, C) has i.i.d.
    N(0, 1 / sigma²) entries, b (D,) is uniform on [0, 2π); both are drawn from ``generator``, so the
    same seed maps every batch with the same features.

    Args:
        x: points (N, C), float.
        num_features: D >= 1.
        sigma: kernel bandwidth σ > 0, in the units of ``x``. Default 1.
        generator: source of W and b (CPU generator; None: torch's global one).

    Shapes:
        x: (N, C) -> (N, D).

    Raises:
        ValueError: ``x`` not a non-empty float (N, C) tensor; ``num_features`` not a positive int; ``sigma`` not > 0.

    Example::

        z = random_fourier_features(x, 4096, sigma=1.0, generator=torch.Generator().manual_seed(0))
        approx = z @ z.T  # ≈ exp(-cdist(x, x)² / 2)
    """
    _check_matrix("x", x)
    _check_positive_int("num_features", num_features)
    sigma = _check_sigma(sigma)
    w = torch.randn(num_features, x.shape[1], generator=generator, dtype=x.dtype) / sigma  # (D, C)
    b = torch.rand(num_features, generator=generator, dtype=x.dtype) * (2 * math.pi)  # (D,)
    return math.sqrt(2.0 / num_features) * torch.cos(x @ w.to(x.device).T + b.to(x.device))  # (N, D)


def per_dimension_rff(features: Tensor, num_functions: int = 5, sigma: float = 1.0,
                      generator: torch.Generator | None = None) -> Tensor:
    """StableNet's RFF maps of each scalar feature dimension: u_k(Z_{:,i}) = sqrt(2) cos(ω_ik Z_{:,i} + φ_ik).

    ω_ik ~ N(0, 1 / sigma²) and φ_ik ~ U(0, 2π), independent for every dimension i and function k
    (Zhang et al. 2021, section 3, H_RFF). Unlike :func:`random_fourier_features` the maps are not
    divided by sqrt(num_functions): each is one element of H_RFF.

    Args:
        features: Z (N, C), float.
        num_functions: n_F functions per dimension, >= 1. Default 5.
        sigma: frequency scale, ω ~ N(0, 1 / sigma²). Default 1 (the paper's N(0, 1)).
        generator: source of ω and φ (CPU generator; None: torch's global one).

    Shapes:
        features: (N, C) -> (N, C, n_F).

    Raises:
        ValueError: ``features`` not a non-empty float (N, C) tensor; ``num_functions`` not a positive int;
            ``sigma`` not > 0.
    """
    _check_matrix("features", features)
    _check_positive_int("num_functions", num_functions)
    sigma = _check_sigma(sigma)
    c = features.shape[1]
    w = (torch.randn(c, num_functions, generator=generator, dtype=features.dtype) / sigma).to(features.device)
    phi = (torch.rand(c, num_functions, generator=generator, dtype=features.dtype) * (2 * math.pi)).to(features.device)
    return math.sqrt(2.0) * torch.cos(features.unsqueeze(-1) * w + phi)  # (N, C, n_F)


def weighted_cross_covariance(u: Tensor, v: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted cross-covariance Σ^w_{uv} = Σ_i p_i (u_i - ū)(v_i - v̄)^T, p = weights / sum(weights).

    With ``weights`` None (uniform) it is the biased sample covariance (divided by N). Equal to the
    (u, v) block of ``numpy.cov(np.hstack([u, v]).T, aweights=weights, bias=True)``. Differentiable in
    ``u``, ``v`` and ``weights``.

    Args:
        u: (N, A) float; v: (N, B) float, the same N.
        weights: (N,) finite, >= 0, with a positive sum; any scale (normalised here). Default None (uniform).

    Shapes:
        u (N, A), v (N, B), weights (N,) -> (A, B).

    Raises:
        ValueError: shapes that do not match; negative, non-finite or all-zero weights.
    """
    _check_matrix("u", u)
    _check_matrix("v", v)
    if u.shape[0] != v.shape[0]:
        raise ValueError(f"u and v must have the same number of samples N, got {u.shape[0]} and {v.shape[0]}")
    p = _normalized_weights(weights, u.shape[0], u).unsqueeze(1)  # (N, 1)
    u_centred = u - (p * u).sum(0)  # (N, A)
    v_centred = v - (p * v).sum(0)  # (N, B)
    return (p * u_centred).T @ v_centred  # (A, B)


def _pairwise_decorrelation(rff: Tensor, weights: Tensor | None) -> Tensor:
    """Σ_{i<j} ||Σ^w_{u_i u_j}||_F² from RFF maps (N, C, n_F)."""
    n, c, f = rff.shape
    flat = rff.reshape(n, c * f)  # (N, C n_F)
    cov = weighted_cross_covariance(flat, flat, weights)  # (C n_F, C n_F)
    blocks = cov.pow(2).reshape(c, f, c, f).sum(dim=(1, 3))  # (C, C): ||Σ_{u_i u_j}||_F²
    return torch.triu(blocks, diagonal=1).sum()


def decorrelation_loss(features: Tensor, weights: Tensor | None = None, num_functions: int = 5, sigma: float = 1.0,
                       generator: torch.Generator | None = None) -> Tensor:
    """StableNet's loss Σ_{i<j} ||Σ^w_{u(Z_i) u(Z_j)}||_F² over pairs of feature dimensions (Zhang et al. 2021, 3.1).

    About 0 (sampling error of order n_F² C² / N) when the dimensions are independent under the
    weights; positive for any dependence the RFF maps see, linear or not (x and x² are uncorrelated
    but dependent, and the loss sees it). Differentiable in ``weights`` (and ``features``).

    Args:
        features: Z (N, C) float, C >= 2 for a non-zero loss.
        weights: (N,) >= 0, any scale (normalised). Default None (uniform).
        num_functions: RFF functions per dimension n_F. Default 5.
        sigma: RFF frequency scale (:func:`per_dimension_rff`). Default 1.
        generator: source of the RFF draw.

    Shapes:
        features (N, C), weights (N,) -> scalar.

    Raises:
        ValueError: as :func:`per_dimension_rff` and :func:`weighted_cross_covariance`.
    """
    return _pairwise_decorrelation(per_dimension_rff(features, num_functions, sigma, generator), weights)


def learn_sample_weights(features: Tensor, steps: int = 20, lr: float = 0.1, *,
                         global_features: Tensor | None = None, global_weights: Tensor | None = None,
                         num_functions: int = 5, sigma: float = 1.0, weight_penalty: float = 0.0,
                         generator: torch.Generator | None = None) -> Tensor:
    """StableNet's sample weights for one batch: minimise :func:`decorrelation_loss` over w = N softmax(θ).

    The logits θ (one per batch sample) start at 0 (uniform weights) and take ``steps`` Adam steps on
    ``decorrelation_loss + weight_penalty * mean(w²)``, with the features detached and one RFF draw.
    With saved global features Z_G and weights w_G (:class:`FeatureMemory`), the loss is taken over
    ``[Z_G; Z]`` with weights softmax([log w_G; θ]), w_G fixed (the paper's global reloading).

    Args:
        features: Z_L (N, C), the batch's features (detached here).
        steps: optimisation steps >= 0. Default 20 (the authors' ``epochb``).
        lr: Adam learning rate > 0. Default 0.1.
        global_features: Z_G (M, C) or None. global_weights: w_G (M,) > 0 (mean 1) or None; both or neither.
        num_functions: RFF functions per dimension. Default 5.
        sigma: RFF frequency scale. Default 1.
        weight_penalty: coefficient >= 0 of mean(w²) = 1 + var(w), which keeps weights from collapsing
            on few samples. Default 0.
        generator: source of the RFF draw.

    Returns:
        w_L (N,), positive, mean 1 (the paper's Δ_N), detached: train with ``(w * loss_per_example).mean()``.

    Raises:
        ValueError: bad shapes, only one of the global tensors, non-positive global weights, ``steps``
            negative, ``lr`` not > 0, ``weight_penalty`` negative.
    """
    _check_matrix("features", features)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if isinstance(weight_penalty, bool) or not isinstance(weight_penalty, (int, float)) or not weight_penalty >= 0:
        raise ValueError(f"weight_penalty must be a number >= 0, got {weight_penalty!r}")
    if (global_features is None) != (global_weights is None):
        raise ValueError("pass both global_features and global_weights (e.g. from FeatureMemory), or neither")
    n = features.shape[0]
    z = features.detach()
    log_global = torch.zeros(0, dtype=z.dtype, device=z.device)
    if global_features is not None:
        _check_matrix("global_features", global_features)
        if global_features.shape[1] != z.shape[1] or global_weights.shape != (global_features.shape[0],):
            raise ValueError(f"global_features must be (M, {z.shape[1]}) and global_weights (M,), got "
                             f"{tuple(global_features.shape)} and {tuple(global_weights.shape)}")
        if not bool((global_weights > 0).all()):
            raise ValueError("global_weights must be > 0")
        z = torch.cat([global_features.detach().to(z), z])  # (M + N, C)
        log_global = global_weights.detach().to(z).log()
    rff = per_dimension_rff(z, num_functions, sigma, generator)  # (M + N, C, n_F)
    logits = torch.zeros(n, dtype=z.dtype, device=z.device, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            all_weights = torch.softmax(torch.cat([log_global, logits]), 0)  # (M + N,)
            local = n * torch.softmax(logits, 0)  # (N,), mean 1
            loss = _pairwise_decorrelation(rff, all_weights) + weight_penalty * local.pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return (n * torch.softmax(logits, 0)).detach()


class FeatureMemory(nn.Module):
    """StableNet's saved global features Z_G and weights w_G, fused with each batch (Zhang et al. 2021, section 3).

    ``k = len(alphas)`` groups of ``size`` rows each. :meth:`update` fuses row r of every group with row r
    of the batch: ``Z_Gi' = α_i Z_Gi + (1 - α_i) Z_L``, ``w_Gi' = α_i w_Gi + (1 - α_i) w_L``; a larger α_i
    is a longer memory. A row never written is copied in, and with ``warmup`` the α of a row written t
    times before is ``min(α_i, t / (t + 1))`` (a running mean until it reaches α_i). The state (buffers
    ``features``, ``weights``, ``counts``) is in ``state_dict`` and travels with checkpoints.

    Args:
        size: rows per group, usually the batch size; a smaller batch updates the first rows.
        num_features: C, the feature dimension.
        alphas: smoothing α_i in [0, 1) per group. Default (0.9,) (the authors' ``presave_ratio``).
        warmup: running mean over the first updates. Default True.

    Shapes:
        update(features (B, C), weights (B,)) with B <= size; global_features (k R, C) and
        global_weights (k R,), R the rows written so far.

    Raises:
        ValueError: bad sizes or alphas; at update, a batch larger than ``size``, the wrong C, weights not > 0.

    Example::

        memory = FeatureMemory(size=128, num_features=64)
        w = learn_sample_weights(z, global_features=memory.global_features, global_weights=memory.global_weights)
        memory.update(z, w)
    """

    def __init__(self, size: int, num_features: int, alphas: Sequence[float] = (0.9,), warmup: bool = True) -> None:
        super().__init__()
        _check_positive_int("size", size)
        _check_positive_int("num_features", num_features)
        alphas = tuple(alphas)
        if not alphas or any(isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a < 1 for a in alphas):
            raise ValueError(f"alphas must be a non-empty sequence of numbers in [0, 1), got {alphas!r}")
        self.alphas = tuple(float(a) for a in alphas)
        self.warmup = bool(warmup)
        k = len(alphas)
        self.register_buffer("features", torch.zeros(k, size, num_features))
        self.register_buffer("weights", torch.ones(k, size))
        self.register_buffer("counts", torch.zeros(size, dtype=torch.long))

    @property
    def global_features(self) -> Tensor | None:
        """Z_G: the written rows of every group, (k R, C); None before the first update."""
        written = self.counts > 0
        return None if not bool(written.any()) else self.features[:, written].reshape(-1, self.features.shape[2])

    @property
    def global_weights(self) -> Tensor | None:
        """w_G: the weights of those rows, (k R,); None before the first update."""
        written = self.counts > 0
        return None if not bool(written.any()) else self.weights[:, written].reshape(-1)

    @torch.no_grad()
    def update(self, features: Tensor, weights: Tensor) -> None:
        """Fuse the batch's features Z_L (B, C) and weights w_L (B,) into the first B rows of every group."""
        _check_matrix("features", features)
        b, size, c = features.shape[0], self.features.shape[1], self.features.shape[2]
        if b > size or features.shape[1] != c:
            raise ValueError(f"features must be (B, {c}) with B <= size = {size}, got {tuple(features.shape)}")
        if not isinstance(weights, Tensor) or weights.shape != (b,) or not bool((weights > 0).all()):
            raise ValueError(f"weights must be a positive tensor of shape ({b},)")
        counts = self.counts[:b].to(self.features.dtype)  # (B,)
        for i, alpha in enumerate(self.alphas):
            a = torch.full_like(counts, alpha)
            if self.warmup:
                a = torch.minimum(a, counts / (counts + 1))
            a = torch.where(counts > 0, a, torch.zeros_like(a))  # (B,): never-written rows are copied in
            self.features[i, :b] = a.unsqueeze(1) * self.features[i, :b] + (1 - a.unsqueeze(1)) * features.detach()
            self.weights[i, :b] = a * self.weights[i, :b] + (1 - a) * weights.detach()
        self.counts[:b] += 1

    def extra_repr(self) -> str:
        k, size, c = self.features.shape
        return f"size={size}, num_features={c}, alphas={self.alphas}, warmup={self.warmup}"
