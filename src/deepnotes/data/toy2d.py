"""The 2-D Gaussian mixtures of the mode-collapse benchmarks, and their evaluation protocol.

Sources: Metz et al. 2017, "Unrolled Generative Adversarial Networks", section 3.1 and the authors' code
(``sample_mog(batch_size, n_mixture=8, std=0.02, radius=2.0)``: 8 Gaussians evenly spaced on a circle of radius 2,
standard deviation 0.02); Srivastava et al. 2017, "VEEGAN", section 5.1 (the ring and a 5x5 grid; the metrics);
Lin et al. 2018, "PacGAN" (their released configuration of the grid: means ``{-4, -2, 0, 2, 4}^2``, standard
deviation 0.05, 2,500 samples evaluated). The EE-559 11-1 toy GAN (Fleuret) learns such 2-D densities.

The protocol (VEEGAN, section 5.1; PacGAN's ``MetricLogger`` computes the same): draw 2,500 samples from the
generator; a sample is **high quality** when it lies within 3 standard deviations of its nearest mode
(``||x - mu_k|| / std < 3``); a mode is **captured** when it is the nearest mode of at least one high-quality
sample. Reported: the number of modes captured and the share of high-quality samples. ``min_count`` raises the
bar (a mode needs that many high-quality samples), which a single stray sample cannot meet.

* :data:`MIXTURES`: ``ring`` and ``grid``, each a :class:`Mixture2D` (means, std);
* :func:`sample_mixture`: samples and their components, from an explicit generator;
* :func:`mode_metrics`: the protocol's numbers, and per-mode counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepnotes.errors import UserError

__all__ = ["MIXTURES", "Mixture2D", "get_mixture", "grid_means", "mode_metrics", "ring_means", "sample_mixture"]


def ring_means(n_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """(n_modes, 2) means evenly spaced on a circle, the first at angle 0: ``r (cos 2 pi k / n, sin 2 pi k / n)``."""
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid_means(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """(side^2, 2) means on a square grid centred on 0: ``{-4, -2, 0, 2, 4}^2`` for side 5, spacing 2."""
    ticks = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    return torch.cartesian_prod(ticks, ticks).float()


@dataclass(frozen=True)
class Mixture2D:
    """An equally weighted mixture of isotropic 2-D Gaussians.

    Attributes:
        name: ``ring`` or ``grid``.
        means: (K, 2) the modes.
        std: the standard deviation of every component (per coordinate).
        source: where the constants come from.
    """

    name: str
    means: torch.Tensor
    std: float
    source: str

    @property
    def n_modes(self) -> int:
        return len(self.means)

    @property
    def description(self) -> str:
        return f"synthetic 2-D mixture of {self.n_modes} Gaussians (std {self.std}; {self.source}), sampled on the fly"

    def status(self) -> str:
        """Always present: sampled when used (``deepnotes data list``)."""
        return "present (synthetic: sampled on the fly)"

    def how_to_get(self) -> str:
        return f"{self.name}: {self.description}\nNothing to get: `deepnotes run gan-toy` samples it."

    def build(self) -> Path:
        """Write the mixture's means and std as JSON under the data root (there is nothing else to build)."""
        from deepnotes.data.paths import data_root
        from deepnotes.io import write_json_atomic

        path = data_root() / "toy2d" / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"name": self.name, "means": self.means.tolist(), "std": self.std,
                                 "source": self.source})
        return path


MIXTURES: dict[str, Mixture2D] = {
    "ring": Mixture2D("ring", ring_means(8, 2.0), 0.02, "Metz et al. 2017 (Unrolled GAN): 8 modes, radius 2, std 0.02"),
    "grid": Mixture2D("grid", grid_means(5, 2.0), 0.05, "VEEGAN / PacGAN: 25 modes {-4,-2,0,2,4}^2, std 0.05"),
}


def get_mixture(name: str) -> Mixture2D:
    """The mixture called ``name``.

    Raises:
        UserError: an unknown name (the message lists the known ones).
    """
    if name not in MIXTURES:
        raise UserError(f"unknown 2-D mixture {name!r}; choose from {', '.join(MIXTURES)}")
    return MIXTURES[name]


def sample_mixture(mixture: Mixture2D, n: int, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples: a component ``k`` uniformly, then ``mu_k + std * N(0, I)``.

    Args:
        mixture: the mixture.
        n: how many samples (>= 0).
        generator: the source of randomness; default None: torch's global generator.

    Returns:
        ``(x, k)``: x (n, 2) float32 samples, k (n,) int64 their components.

    Raises:
        ValueError: ``n < 0``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    k = torch.randint(mixture.n_modes, (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator)
    return mixture.means[k] + mixture.std * noise, k


def mode_metrics(samples: torch.Tensor, means: torch.Tensor, std: float, threshold: float = 3.0,
                 min_count: int = 1) -> dict[str, Any]:
    """The VEEGAN protocol's numbers for generated 2-D ``samples`` against a mixture's modes.

    Args:
        samples: (N, 2) generated points (N >= 1).
        means: (K, 2) the mixture's modes.
        std: the components' standard deviation.
        threshold: a sample is high quality within ``threshold * std`` of its nearest mode (the protocol: 3).
        min_count: high-quality samples a mode needs to count as captured (the protocol: 1).

    Returns:
        ``modes`` (int, the modes captured), ``high_quality`` (float in [0, 1], the share of high-quality
        samples), ``counts`` (list of K ints, the high-quality samples nearest to each mode), ``n`` (N).
        Non-finite samples count as neither.

    Raises:
        ValueError: wrong shapes, no samples, ``std <= 0`` or ``min_count < 1``.
    """
    if samples.ndim != 2 or samples.shape[1] != means.shape[-1] or means.ndim != 2 or len(samples) == 0:
        raise ValueError(f"samples must be (N >= 1, D) and means (K, D), got {tuple(samples.shape)} and "
                         f"{tuple(means.shape)}")
    if not std > 0 or min_count < 1:
        raise ValueError(f"std must be > 0 and min_count >= 1, got std={std}, min_count={min_count}")
    x = samples.detach().double().cpu()
    finite = torch.isfinite(x).all(dim=1)
    x = torch.where(finite[:, None], x, torch.zeros_like(x))
    dist = torch.cdist(x, means.double().cpu())  # (N, K) Euclidean distances
    nearest_dist, nearest = dist.min(dim=1)
    good = finite & (nearest_dist < threshold * std)
    counts = torch.bincount(nearest[good], minlength=len(means))
    share = counts.double() / max(int(counts.sum()), 1)
    entropy = -float((share[share > 0] * share[share > 0].log()).sum())
    return {"modes": int((counts >= min_count).sum()), "high_quality": float(good.double().mean()),
            "effective_modes": math.exp(entropy) if counts.sum() > 0 else 0.0, "counts": counts.tolist(),
            "n": len(x)}
