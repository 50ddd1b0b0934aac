"""How good are a generator's samples? FID, the Inception-style score, the class histogram and nearest neighbours.

Source: ML2021 "GAN (3): evaluation of generation" (Hung-yi Lee): a classifier judges the samples. *Quality*: each
sample's class distribution ``p(y|x)`` should be peaked; *diversity*: the average over samples ``p(y)`` should be
flat; *mode collapse* (many samples, few kinds) and *mode dropping* (whole classes missing) show in the histogram of
the classifier's decisions; FID compares the classifier's penultimate features of real and generated images as two
Gaussians; and a generator that copies its training images scores well on all of these, so look at the samples'
nearest training images (*memorization*). Papers:

* Heusel et al. 2017 (FID): with ``(mu_r, S_r)`` and ``(mu_g, S_g)`` the means and covariances of the features,
  ``FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})``, the Frechet (Wasserstein-2) distance of the
  two Gaussians (Dowson & Landau 1982);
* Salimans et al. 2016 (Inception score): ``IS = exp(E_x KL(p(y|x) || p(y)))``, ``p(y) = E_x p(y|x)``; between 1
  (every sample the same distribution) and K (every sample confidently one class, the classes equally often).

Deliberate differences from the papers: the features and class probabilities come from a small classifier trained
on the same dataset (the ``gan`` lab's Fashion-MNIST LeNet), not Inception-v3 on ImageNet, so the numbers are on
their own scale ("Inception-style"; compare them only with each other and with the real-vs-real floor). The matrix
square root is computed here, from the equations, rather than with ``scipy.linalg.sqrtm`` (tested against it):
``(S_r S_g)^{1/2}`` is not symmetric, but its trace is ``Tr((S_r^{1/2} S_g S_r^{1/2})^{1/2})`` (the two products
are similar matrices: same eigenvalues, all >= 0), so two symmetric eigen-decompositions suffice, in float64.

* :func:`gaussian_stats`, :func:`sqrtm_psd`, :func:`trace_sqrt_product`, :func:`frechet_distance`, :func:`fid`;
* :func:`inception_score`;
* :func:`class_histogram` (counts, entropy, effective and covered classes, distance to a reference histogram);
* :func:`nearest_neighbours` (each sample's closest training images, in pixel space or any features),
  :func:`memorization_stats`;
* :func:`classifier_features`: a classifier's penultimate features and logits (the input of its last ``Linear``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["class_histogram", "classifier_features", "fid", "frechet_distance", "gaussian_stats",
           "inception_score", "memorization_stats", "nearest_neighbours", "probabilities", "sqrtm_psd",
           "trace_sqrt_product"]


def _as_float64(x: Any) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def gaussian_stats(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of feature rows, in float64.

    Args:
        features: (N, C) array or tensor, N >= 2.

    Returns:
        ``(mu, sigma)``: (C,) and (C, C), the unbiased covariance (divided by N - 1, as ``np.cov``).

    Raises:
        ValueError: not 2-D, or fewer than 2 rows.
    """
    f = _as_float64(features)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be (N, C) with N >= 2, got shape {f.shape}")
    mu = f.mean(axis=0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def sqrtm_psd(matrix: Any) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix: ``V diag(sqrt(max(l, 0))) V^T`` from
    the eigen-decomposition ``A = V diag(l) V^T`` (eigenvalues below 0 from rounding are set to 0).

    Args:
        matrix: (C, C) symmetric (its symmetric part ``(A + A^T) / 2`` is used).

    Returns:
        (C, C) float64 ``R`` with ``R R = A`` (up to rounding) and ``R = R^T``.
    """
    a = _as_float64(matrix)
    a = (a + a.T) / 2
    lam, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(lam, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: Any, sigma2: Any) -> float:
    """``Tr((S1 S2)^{1/2})`` for covariance matrices: ``sum_i sqrt(l_i)`` over the eigenvalues ``l_i`` of
    ``S1^{1/2} S2 S1^{1/2}`` (symmetric PSD, similar to ``S1 S2``).

    Args:
        sigma1, sigma2: (C, C) symmetric positive semi-definite.

    Returns:
        A float >= 0.

    Raises:
        ValueError: shapes that differ or are not square.
    """
    s1, s2 = _as_float64(sigma1), _as_float64(sigma2)
    if s1.ndim != 2 or s1.shape[0] != s1.shape[1] or s1.shape != s2.shape:
        raise ValueError(f"sigma1 and sigma2 must be square and of the same shape, got {s1.shape} and {s2.shape}")
    r = sqrtm_psd(s1)
    m = r @ s2 @ r
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """The Frechet distance of N(mu1, S1) and N(mu2, S2): ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})``.

    Args:
        mu1, mu2: (C,) means. sigma1, sigma2: (C, C) covariances.

    Returns:
        A float >= 0 (0 for identical Gaussians, up to rounding; clipped at 0).

    Raises:
        ValueError: shapes that do not match.
    """
    m1, m2 = _as_float64(mu1), _as_float64(mu2)
    if m1.shape != m2.shape or m1.ndim != 1:
        raise ValueError(f"mu1 and mu2 must be (C,) of the same size, got {m1.shape} and {m2.shape}")
    s1, s2 = _as_float64(sigma1), _as_float64(sigma2)
    if s1.shape != (len(m1), len(m1)):
        raise ValueError(f"sigma1 must be ({len(m1)}, {len(m1)}), got {s1.shape}")
    d = float(((m1 - m2) ** 2).sum()) + float(np.trace(s1) + np.trace(s2)) - 2 * trace_sqrt_product(s1, s2)
    return max(d, 0.0)


def fid(features_a: Any, features_b: Any) -> float:
    """Frechet Inception Distance of two sets of feature rows (Heusel et al. 2017): :func:`frechet_distance` of
    their :func:`gaussian_stats`.

    Args:
        features_a, features_b: (N, C) and (M, C), N, M >= 2 (the estimate is biased upward for small N, M: compare
            FIDs computed with the same sample sizes).

    Example::

        fid(feats_generated, feats_real)   # 0 for identical sets; grows as the distributions part
    """
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def inception_score(probs: Any, splits: int = 1, eps: float = 1e-12) -> tuple[float, float]:
    """``exp(E_x KL(p(y|x) || p(y)))`` with ``p(y)`` the mean of ``p(y|x)`` over the samples (Salimans et al. 2016).

    The samples are cut into ``splits`` consecutive parts (the paper: 10 parts of 5,000) and the score taken on each.

    Args:
        probs: (N, K) class probabilities, rows summing to 1 (softmax of the classifier's logits).
        splits: parts (>= 1, <= N). eps: added inside the logarithms (a probability of 0 contributes 0).

    Returns:
        ``(mean, std)`` over the parts (std 0 for one part). Between 1 and K.

    Raises:
        ValueError: not (N, K), rows that do not sum to 1, or a bad ``splits``.
    """
    p = _as_float64(probs)
    if p.ndim != 2 or len(p) < 1:
        raise ValueError(f"probs must be (N, K) with N >= 1, got shape {p.shape}")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-4) or (p < 0).any():
        raise ValueError("probs must hold probabilities, each row summing to 1 (pass softmax(logits))")
    if not 1 <= splits <= len(p):
        raise ValueError(f"splits must be in [1, {len(p)}], got {splits}")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)  # (1, K): p(y)
        kl = (part * (np.log(part + eps) - np.log(py + eps))).sum(axis=1)  # (n,): KL(p(y|x) || p(y))
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def class_histogram(pred: Any, num_classes: int, min_share: float = 0.1,
                    reference: Sequence[float] | None = None) -> dict[str, Any]:
    """The histogram of the classes a classifier gives the samples: mode dropping and collapse in numbers.

    Args:
        pred: (N,) predicted class indices in ``[0, num_classes)``.
        num_classes: K.
        min_share: a class is *covered* when it holds at least ``min_share / K`` of the samples (``min_share`` of its
            fair share; default 0.1).
        reference: K shares to compare with (e.g. the classifier's histogram on real images); default None: uniform.

    Returns:
        ``counts`` (K ints), ``shares`` (K floats), ``entropy`` (nats), ``effective_classes`` (``exp(entropy)``: K
        when spread evenly, 1 when every sample is one class), ``covered`` (classes covered) and ``tv`` (the total
        variation ``0.5 sum |share - reference|``, 0 to 1).

    Raises:
        ValueError: an empty ``pred``, a class outside the range, or a reference of the wrong length.
    """
    y = torch.as_tensor(pred).long().reshape(-1)
    if len(y) == 0 or num_classes < 1 or int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"pred must be non-empty class indices in [0, {num_classes})")
    counts = torch.bincount(y, minlength=num_classes).double()
    shares = counts / counts.sum()
    nz = shares[shares > 0]
    entropy = float(-(nz * nz.log()).sum())
    ref = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64) if reference is None \
        else torch.as_tensor(reference, dtype=torch.float64)
    if ref.shape != (num_classes,):
        raise ValueError(f"reference must hold {num_classes} shares, got {tuple(ref.shape)}")
    return {"counts": counts.long().tolist(), "shares": shares.tolist(), "entropy": entropy,
            "effective_classes": math.exp(entropy), "covered": int((shares >= min_share / num_classes).sum()),
            "tv": float(0.5 * (shares - ref).abs().sum())}


@torch.no_grad()
def nearest_neighbours(queries: torch.Tensor, references: torch.Tensor, k: int = 1,
                       batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's ``k`` nearest references in Euclidean distance (brute force, ``batch_size`` queries at a time):
    ``||q - r||^2 = ||q||^2 - 2 q.r + ||r||^2``, in float64 when the rows are short, else float32.

    Args:
        queries: (N, ...) e.g. generated images (flattened to (N, D)). references: (M, ...) e.g. training images.
        k: neighbours per query (1 <= k <= M).

    Returns:
        ``(distances, indices)``: (N, k) Euclidean distances, ascending, and (N, k) indices into ``references``.

    Raises:
        ValueError: rows of different sizes or a bad ``k``.
    """
    q, r = queries.reshape(len(queries), -1), references.reshape(len(references), -1)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries and references must have rows of the same size, got {q.shape[1]} and {r.shape[1]}")
    if not 1 <= k <= len(r):
        raise ValueError(f"k must be in [1, {len(r)}], got {k}")
    dtype = torch.float64 if q.shape[1] <= 64 else torch.float32
    q, r = q.to(dtype), r.to(dtype)
    r2 = (r * r).sum(1)  # (M,)
    dists, idx = [], []
    for start in range(0, len(q), batch_size):
        qb = q[start:start + batch_size]  # (b, D)
        d2 = (qb * qb).sum(1, keepdim=True) - 2 * qb @ r.T + r2  # (b, M)
        d, i = d2.topk(k, dim=1, largest=False)
        dists.append(d.clamp_min(0).sqrt())
        idx.append(i)
    return torch.cat(dists).float(), torch.cat(idx)


def memorization_stats(sample_dist: torch.Tensor, real_dist: torch.Tensor) -> dict[str, float]:
    """Are samples closer to their nearest training image than unseen real images are? (memorization)

    Args:
        sample_dist: (N,) each generated sample's distance to its nearest training image.
        real_dist: (M,) the same for real images the generator never saw (test images): the reference.

    Returns:
        ``sample_median``, ``real_median``, ``ratio`` (sample median / real median: well below 1 means samples sit
        on training images), ``share_closer`` (the share of samples closer to a training image than the closest
        test image is: near 0 unless the generator copies).
    """
    s, r = sample_dist.double().reshape(-1), real_dist.double().reshape(-1)
    s_med, r_med = float(s.median()), float(r.median())
    return {"sample_median": s_med, "real_median": r_med, "ratio": s_med / r_med if r_med > 0 else math.inf,
            "share_closer": float((s < r.min()).double().mean())}


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to take the penultimate features from")
    return linears[-1]


@torch.no_grad()
def classifier_features(model: nn.Module, x: torch.Tensor, batch_size: int = 500,
                        device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A classifier's penultimate features (the input of its last ``nn.Linear``, caught by a forward hook) and
    logits, in eval mode, ``batch_size`` rows at a time.

    Args:
        model: a classifier whose last ``nn.Linear`` (in ``model.modules()`` order) makes the logits.
        x: (N, ...) inputs as the model reads them. device: where to run (default: the model's).

    Returns:
        ``(features, logits)``: (N, C) and (N, K) float32 on the CPU.

    Raises:
        ValueError: the model has no ``nn.Linear``.
    """
    head = _last_linear(model)
    device = device or next(model.parameters()).device
    caught: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, inputs, _out: caught.append(inputs[0].flatten(1).float().cpu()))
    was_training = model.training
    model.eval()
    logits = []
    try:
        for start in range(0, len(x), batch_size):
            logits.append(model(x[start:start + batch_size].to(device)).float().cpu())
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(caught), torch.cat(logits)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension, in float64 (rows sum to 1 within rounding)."""
    return F.softmax(logits.double(), dim=-1)
