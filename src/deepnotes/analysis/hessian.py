"""The Hessian of a loss at a point, and what its eigenvalues say about that point.

Source: ML2021 lecture "類神經網路訓練不起來怎麼辦 (一): 局部最小值 (local minima) 與鞍點 (saddle
point)". Near a point θ' the loss is, to second order (Taylor),

    L(θ) ≈ L(θ') + (θ - θ')ᵀ g + ½ (θ - θ')ᵀ H (θ - θ'),   g = ∇L(θ'),  H = ∇²L(θ').

At a *critical point* g = 0 and the Hessian decides:

* every eigenvalue of H positive  -> local minimum,
* every eigenvalue negative        -> local maximum,
* some positive, some negative     -> saddle point; along a unit eigenvector u with eigenvalue
  λ < 0, L(θ' + η u) ≈ L(θ') + ½ λ η² < L(θ'): stepping along u escapes the saddle,
* otherwise (some eigenvalues zero, no negative/positive pair) the second-order test is
  inconclusive: *degenerate*.

The lecture's "minimum ratio" is (# positive eigenvalues) / (# eigenvalues): 1 at a strict local
minimum, lower the more downhill directions a critical point has.

The full Hessian costs O(P²) memory and P Hessian-vector products, so :func:`loss_hessian` is for
small models (up to a few thousand parameters); :func:`hessian_vector_product` (forward-over-reverse,
Pearlmutter's trick) costs about two gradients and works for any size.

Everything works on the *flat* parameter vector θ of shape (P,): the model's parameters (all of
``model.named_parameters()``, in that order) concatenated after flattening each; buffers (e.g.
BatchNorm statistics) are held fixed. Computations use torch.func (``functional_call``,
``grad``, ``jacfwd(jacrev)``), so the model itself is never modified. Use float64 models when the
eigenvalue signs near zero matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, hessian, jvp

__all__ = ["LOCAL_MINIMUM", "LOCAL_MAXIMUM", "SADDLE_POINT", "DEGENERATE", "CriticalPoint", "analyze_critical_point",
           "classify_critical_point", "flat_loss_function", "flatten_parameters", "gradient_norm", "hessian_eigen",
           "hessian_vector_product", "load_flat_parameters", "loss_gradient", "loss_hessian", "minimum_ratio"]

LOCAL_MINIMUM = "local minimum"
LOCAL_MAXIMUM = "local maximum"
SADDLE_POINT = "saddle point"
DEGENERATE = "degenerate"

LossFn = Callable[[Tensor, Tensor], Tensor]


# ----------------------------------------------------------------------------------- flat parameters
def flatten_parameters(model: nn.Module) -> Tensor:
    """The model's parameters as one detached vector θ of shape (P,), in ``named_parameters()`` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _unflatten(model: nn.Module, theta: Tensor) -> dict[str, Tensor]:
    named = list(model.named_parameters())
    total = sum(p.numel() for _, p in named)
    if theta.ndim != 1 or theta.numel() != total:
        raise ValueError(f"theta must have shape ({total},) for this model, got {tuple(theta.shape)}")
    out, start = {}, 0
    for name, p in named:
        out[name] = theta[start : start + p.numel()].view_as(p)
        start += p.numel()
    return out


def load_flat_parameters(model: nn.Module, theta: Tensor) -> None:
    """Copy the flat vector ``theta`` (P,) into the model's parameters (in place, no autograd).

    Raises:
        ValueError: ``theta`` does not have shape (P,) for this model.
    """
    with torch.no_grad():
        for p, value in zip(model.parameters(), _unflatten(model, theta).values()):
            p.copy_(value)


def flat_loss_function(model: nn.Module, loss_fn: LossFn, inputs: Tensor,
                       targets: Tensor) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """``f(θ) = loss_fn(model_θ(inputs), targets)`` as a pure function of the flat parameters.

    Args:
        model: any module; its own parameters are not changed.
        loss_fn: ``(outputs, targets) -> scalar``, e.g. ``nn.functional.cross_entropy``.
        inputs, targets: the (whole) batch the loss is taken over, batch-first.

    Returns:
        ``(f, theta0)``: the function (P,) -> scalar, differentiable by torch.func, and the
        model's current parameters θ0 (P,).
    """
    buffers = dict(model.named_buffers())

    def f(theta: Tensor) -> Tensor:
        out = functional_call(model, {**_unflatten(model, theta), **buffers}, (inputs,))
        return loss_fn(out, targets)

    return f, flatten_parameters(model)


# ----------------------------------------------------------------------------------- derivatives
def loss_gradient(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> Tensor:
    """g = ∇L(θ) at the model's parameters, flat, shape (P,)."""
    f, theta = flat_loss_function(model, loss_fn, inputs, targets)
    return grad(f)(theta)


def gradient_norm(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> float:
    """||∇L(θ)||₂, the Euclidean norm of the flat gradient (a critical point has norm 0)."""
    return float(torch.linalg.vector_norm(loss_gradient(model, loss_fn, inputs, targets)))


def loss_hessian(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> Tensor:
    """The full Hessian H = ∇²L(θ) w.r.t. all parameters, flattened to shape (P, P).

    ``H[i, j] = ∂²L / ∂θ_i ∂θ_j`` with θ the flat parameter vector (:func:`flatten_parameters`
    order). Computed as ``torch.func.hessian`` (= ``jacfwd(jacrev(f))``): P forward-mode passes
    over the reverse-mode gradient, exact up to floating-point rounding (not finite differences).
    Symmetric up to rounding; :func:`hessian_eigen` symmetrizes before decomposing.

    Shapes:
        inputs (B, ...), targets (B, ...) -> H (P, P), P = number of parameter entries.

    Example::

        >>> model = nn.Linear(3, 1).double()
        >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
        >>> loss_hessian(model, nn.functional.mse_loss, x, y).shape
        torch.Size([4, 4])
    """
    f, theta = flat_loss_function(model, loss_fn, inputs, targets)
    return hessian(f)(theta)


def hessian_vector_product(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, v: Tensor) -> Tensor:
    """H v without forming H: the directional derivative of the gradient, d/dε ∇L(θ + ε v) at ε = 0.

    Forward-over-reverse (Pearlmutter 1994, "Fast exact multiplication by the Hessian"): one
    ``jvp`` through ``grad``; costs a few gradient evaluations, memory O(P).

    Args:
        v: direction, shape (P,), same dtype/device as the parameters.

    Returns:
        H v, shape (P,).

    Raises:
        ValueError: ``v`` does not have shape (P,).
    """
    f, theta = flat_loss_function(model, loss_fn, inputs, targets)
    if v.shape != theta.shape:
        raise ValueError(f"v must have shape {tuple(theta.shape)} (one entry per parameter), got {tuple(v.shape)}")
    return jvp(grad(f), (theta,), (v.to(theta),))[1]


# ----------------------------------------------------------------------------------- what H says
def hessian_eigen(H: Tensor) -> tuple[Tensor, Tensor]:
    """Eigen-decomposition of a symmetric Hessian: ``H = U diag(λ) Uᵀ``.

    ``H`` is symmetrized as ``(H + Hᵀ)/2`` first (rounding makes it symmetric only to ~1e-16
    relative), then decomposed with ``torch.linalg.eigh``.

    Returns:
        ``(eigenvalues, eigenvectors)``: λ (P,) in ascending order, U (P, P) whose *columns* are
        the unit eigenvectors (``U[:, 0]`` goes with the most negative eigenvalue).

    Raises:
        ValueError: ``H`` is not square (P, P).
    """
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square (P, P) matrix, got shape {tuple(H.shape)}")
    return torch.linalg.eigh((H + H.T) / 2)


def _zero_tolerance(eigenvalues: Tensor, tol: float, relative: bool) -> float:
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    scale = float(eigenvalues.abs().max()) if relative and eigenvalues.numel() else 1.0
    return tol * scale


def classify_critical_point(eigenvalues: Tensor, tol: float = 1e-6, relative: bool = True) -> str:
    """Second-order test of a critical point from its Hessian eigenvalues.

    An eigenvalue with ``|λ| <= tol`` (times ``max|λ|`` when ``relative``) counts as zero. Then:

    * ``"saddle point"``: some λ > 0 and some λ < 0 (zeros allowed: a direction down exists),
    * ``"local minimum"``: all λ > 0; ``"local maximum"``: all λ < 0,
    * ``"degenerate"``: no negative/positive pair but some λ = 0 (the test is inconclusive:
      higher-order terms decide; e.g. f = x⁴ at 0), or all λ = 0.

    Args:
        eigenvalues: λ (P,), any order.
        tol: zero tolerance (default 1e-6).
        relative: scale ``tol`` by the largest |λ| (default True), so the test does not depend
            on the loss's units.

    Returns:
        One of :data:`LOCAL_MINIMUM`, :data:`LOCAL_MAXIMUM`, :data:`SADDLE_POINT`, :data:`DEGENERATE`.

    Raises:
        ValueError: ``tol < 0`` or ``eigenvalues`` is empty.

    Example::

        >>> classify_critical_point(torch.tensor([2.0, -2.0]))   # f = x² - y² at (0, 0)
        'saddle point'
    """
    if eigenvalues.numel() == 0:
        raise ValueError("eigenvalues is empty: the model has no parameters")
    zero = _zero_tolerance(eigenvalues, tol, relative)
    n_pos = int((eigenvalues > zero).sum())
    n_neg = int((eigenvalues < -zero).sum())
    n = eigenvalues.numel()
    if n_pos and n_neg:
        return SADDLE_POINT
    if n_pos == n:
        return LOCAL_MINIMUM
    if n_neg == n:
        return LOCAL_MAXIMUM
    return DEGENERATE


def minimum_ratio(eigenvalues: Tensor, tol: float = 0.0, relative: bool = True) -> float:
    """The lecture's minimum ratio: (# positive eigenvalues) / (# eigenvalues), in [0, 1].

    An eigenvalue counts as positive when ``λ > tol`` (times ``max|λ|`` when ``relative``);
    the default ``tol=0`` is the lecture's plain count.

    Raises:
        ValueError: ``tol < 0`` or ``eigenvalues`` is empty.
    """
    if eigenvalues.numel() == 0:
        raise ValueError("eigenvalues is empty: the model has no parameters")
    zero = _zero_tolerance(eigenvalues, tol, relative)
    return float((eigenvalues > zero).sum()) / eigenvalues.numel()


@dataclass(frozen=True)
class CriticalPoint:
    """What :func:`analyze_critical_point` finds at the model's current parameters.

    Attributes:
        loss: L(θ).
        grad_norm: ||∇L(θ)||₂.
        eigenvalues: Hessian eigenvalues (P,), ascending.
        eigenvectors: (P, P), column i goes with ``eigenvalues[i]``.
        kind: :func:`classify_critical_point` of the eigenvalues (meaningful only when
            ``grad_norm`` is small: the test assumes g = 0).
        min_ratio: :func:`minimum_ratio` with the same tolerance.
    """

    loss: float
    grad_norm: float
    eigenvalues: Tensor
    eigenvectors: Tensor
    kind: str
    min_ratio: float

    @property
    def escape_direction(self) -> Tensor | None:
        """Unit eigenvector of the most negative eigenvalue (P,), or None when no λ < 0."""
        return self.eigenvectors[:, 0] if float(self.eigenvalues[0]) < 0 else None


def analyze_critical_point(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, tol: float = 1e-6,
                           relative: bool = True) -> CriticalPoint:
    """Loss, gradient norm, Hessian spectrum, class and minimum ratio at the model's parameters.

    Args:
        tol, relative: eigenvalue zero tolerance, as in :func:`classify_critical_point`.
    """
    f, theta = flat_loss_function(model, loss_fn, inputs, targets)
    loss = float(f(theta))
    g = grad(f)(theta)
    lam, U = hessian_eigen(hessian(f)(theta))
    return CriticalPoint(loss=loss, grad_norm=float(torch.linalg.vector_norm(g)), eigenvalues=lam, eigenvectors=U,
                         kind=classify_critical_point(lam, tol, relative), min_ratio=minimum_ratio(lam, tol, relative))
