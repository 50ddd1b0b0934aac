"""First-order optimizers written from their update equations, one loop per parameter tensor.

Source: ML2021/2022 lecture 2, "類神經網路訓練不起來怎麼辦 (二)/(三)": momentum ("the update direction
takes all past gradients into account"), adaptive learning rates (Adagrad's root-mean-square of all
past gradients, RMSProp's exponential moving average), and Adam = RMSProp + momentum. Papers:
Polyak 1964 and Sutskever et al. 2013 (momentum, Nesterov); Duchi et al. 2011 (Adagrad); Hinton's
Coursera lecture 6e (RMSProp); Kingma & Ba 2015 (Adam); Loshchilov & Hutter 2019 (AdamW).

Every class is a :class:`torch.optim.Optimizer` and follows ``torch.optim``'s semantics exactly for
the options it exposes (where eps goes, when weight decay is added, how the first momentum buffer is
initialised), so ``state_dict``/``load_state_dict``, parameter groups and learning-rate schedulers work
as with the library twin; ``tests/optim/test_optimizers.py`` checks 100 steps against it. What is
left out: ``maximize``, ``foreach``/``fused`` kernels, AMSGrad, and complex parameters.

Notation of the docstrings: ``θ`` parameters, ``g_t`` gradient at update ``t`` (1-based), ``η`` learning
rate, ``λ`` weight decay; all operations are element-wise.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


def _check(name: str, value: float, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


class _Base(torch.optim.Optimizer):
    """Shared ``step`` plumbing: closure, no-grad, and a per-parameter ``_update``."""

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter with a gradient; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                self._update(p, p.grad, self.state[p], group)
        return loss


class SGD(_Base):
    r"""Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    Update, as ``torch.optim.SGD`` defines it::

        g_t ← g_t + λ θ_{t-1}                               (weight decay, if λ ≠ 0)
        b_1 = g_1;  b_t = μ b_{t-1} + (1 - τ) g_t            (momentum buffer, if μ ≠ 0; τ = dampening)
        d_t = g_t + μ b_t  (Nesterov)   or   d_t = b_t       (classic momentum)   or   d_t = g_t (μ = 0)
        θ_t = θ_{t-1} - η d_t

    Note the first buffer is the gradient itself, not ``(1 - τ) g_1`` (as in torch). The lecture's
    momentum ``m_t = λ m_{t-1} - η g_t`` is the same method with the learning rate folded into the buffer.

    Args:
        params: parameters or parameter groups.
        lr: learning rate η > 0. Default 1e-3 (torch's default).
        momentum: μ in [0, 1). Default 0 (plain SGD).
        dampening: τ in [0, 1]. Default 0.
        weight_decay: λ >= 0 (L2 penalty ``λ/2 ||θ||²`` added to the loss). Default 0.
        nesterov: Nesterov's look-ahead momentum (needs μ > 0 and τ = 0). Default False.

    Raises:
        ValueError: a hyper-parameter out of range (the message names it).

    Example::

        opt = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(self, params: Params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        _check("lr", lr, lr > 0, "> 0")
        _check("momentum", momentum, 0 <= momentum < 1, "in [0, 1)")
        _check("dampening", dampening, 0 <= dampening <= 1, "in [0, 1]")
        _check("weight_decay", weight_decay, weight_decay >= 0, ">= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, p, grad, state, group):
        mu, wd = group["momentum"], group["weight_decay"]
        if wd != 0:
            grad = grad.add(p, alpha=wd)
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.detach().clone()
            else:
                buf.mul_(mu).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buf, alpha=mu) if group["nesterov"] else buf
        p.add_(grad, alpha=-group["lr"])


class Adagrad(_Base):
    r"""Adagrad: each parameter's step is divided by the root of the sum of its squared gradients.

    Update, as ``torch.optim.Adagrad`` defines it::

        g_t ← g_t + λ θ_{t-1}                         (if λ ≠ 0)
        η_t = η / (1 + (t - 1) δ)                     (δ = lr_decay)
        s_t = s_{t-1} + g_t²                          (s_0 = initial_accumulator_value)
        θ_t = θ_{t-1} - η_t g_t / (√s_t + ε)

    The lecture writes σ_t = sqrt(mean of g²) (root mean square); the 1/t inside the root is folded
    into η there, so the two differ only by η's scale. Source: Duchi, Hazan & Singer 2011.

    Args:
        lr: η > 0. Default 1e-2. lr_decay: δ >= 0. Default 0. weight_decay: λ >= 0. Default 0.
        initial_accumulator_value: s_0 >= 0. Default 0. eps: ε >= 0, added after the square root. Default 1e-10.

    Raises:
        ValueError: a hyper-parameter out of range (the message names it).
    """

    def __init__(self, params: Params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        _check("lr", lr, lr > 0, "> 0")
        _check("lr_decay", lr_decay, lr_decay >= 0, ">= 0")
        _check("weight_decay", weight_decay, weight_decay >= 0, ">= 0")
        _check("initial_accumulator_value", initial_accumulator_value, initial_accumulator_value >= 0, ">= 0")
        _check("eps", eps, eps >= 0, ">= 0")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))
        # Like torch, the state exists from the start (so state_dict() is complete before any step).
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["step"] = torch.tensor(0.0)
                state["sum"] = torch.full_like(p, group["initial_accumulator_value"], memory_format=torch.preserve_format)

    def _update(self, p, grad, state, group):
        state["step"] += 1
        t = float(state["step"])
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        lr_t = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        state["sum"].addcmul_(grad, grad, value=1)
        std = state["sum"].sqrt().add_(group["eps"])
        p.addcdiv_(grad, std, value=-lr_t)


class RMSprop(_Base):
    r"""RMSProp: divide by the root of an exponential moving average of squared gradients.

    Update, as ``torch.optim.RMSprop`` defines it::

        g_t ← g_t + λ θ_{t-1}                                  (if λ ≠ 0)
        v_t = α v_{t-1} + (1 - α) g_t²                         (v_0 = 0)
        centered:  a_t = α a_{t-1} + (1 - α) g_t;  σ_t = √(v_t - a_t²) + ε
        otherwise: σ_t = √v_t + ε
        momentum μ > 0:  b_t = μ b_{t-1} + g_t / σ_t;  θ_t = θ_{t-1} - η b_t
        otherwise:       θ_t = θ_{t-1} - η g_t / σ_t

    Source: Hinton, Coursera "Neural networks for machine learning" lecture 6e; centered variant:
    Graves 2013. No bias correction (v starts at 0, so the first steps are large, as in torch).

    Args:
        lr: η > 0. Default 1e-2. alpha: α in [0, 1). Default 0.99. eps: ε >= 0 (after the root). Default 1e-8.
        weight_decay: λ >= 0. Default 0. momentum: μ in [0, 1). Default 0. centered: Default False.

    Raises:
        ValueError: a hyper-parameter out of range (the message names it).
    """

    def __init__(self, params: Params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        _check("lr", lr, lr > 0, "> 0")
        _check("alpha", alpha, 0 <= alpha < 1, "in [0, 1)")
        _check("eps", eps, eps >= 0, ">= 0")
        _check("weight_decay", weight_decay, weight_decay >= 0, ">= 0")
        _check("momentum", momentum, 0 <= momentum < 1, "in [0, 1)")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _update(self, p, grad, state, group):
        if not state:
            state["step"] = torch.tensor(0.0)
            state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        alpha = group["alpha"]
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        v = state["square_avg"]
        v.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            a = state["grad_avg"]
            a.lerp_(grad, 1 - alpha)
            sigma = v.addcmul(a, a, value=-1).sqrt_().add_(group["eps"])
        else:
            sigma = v.sqrt().add_(group["eps"])
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf.mul_(group["momentum"]).addcdiv_(grad, sigma)
            p.add_(buf, alpha=-group["lr"])
        else:
            p.addcdiv_(grad, sigma, value=-group["lr"])


class Adam(_Base):
    r"""Adam: momentum (first moment) divided by RMSProp's root mean square (second moment), bias-corrected.

    Update, as ``torch.optim.Adam`` defines it::

        g_t ← g_t + λ θ_{t-1}                      (L2 decay through the gradient, if λ ≠ 0)
        m_t = β1 m_{t-1} + (1 - β1) g_t            v_t = β2 v_{t-1} + (1 - β2) g_t²     (m_0 = v_0 = 0)
        m̂_t = m_t / (1 - β1^t)                     v̂_t = v_t / (1 - β2^t)               (bias correction)
        θ_t = θ_{t-1} - η m̂_t / (√v̂_t + ε)

    ε is added after the square root of the *corrected* v̂ (torch's placement). Source: Kingma & Ba,
    "Adam: a method for stochastic optimization", ICLR 2015, Algorithm 1; ML2021 lecture 2 ("Adam =
    RMSProp + Momentum").

    Args:
        lr: η > 0. Default 1e-3. betas: (β1, β2), each in [0, 1). Default (0.9, 0.999).
        eps: ε >= 0. Default 1e-8. weight_decay: λ >= 0 (coupled L2). Default 0.

    Raises:
        ValueError: a hyper-parameter out of range (the message names it).
    """

    decoupled = False

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        _check("lr", lr, lr > 0, "> 0")
        _check("betas[0]", betas[0], 0 <= betas[0] < 1, "in [0, 1)")
        _check("betas[1]", betas[1], 0 <= betas[1] < 1, "in [0, 1)")
        _check("eps", eps, eps >= 0, ">= 0")
        _check("weight_decay", weight_decay, weight_decay >= 0, ">= 0")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _update(self, p, grad, state, group):
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        lr, wd, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
        state["step"] += 1
        t = float(state["step"])
        if wd != 0:
            if self.decoupled:
                p.mul_(1 - lr * wd)  # AdamW: shrink θ directly, outside the adaptive scaling
            else:
                grad = grad.add(p, alpha=wd)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias1 = 1 - beta1**t
        bias2 = 1 - beta2**t
        denom = (v.sqrt() / math.sqrt(bias2)).add_(group["eps"])  # √v̂_t + ε
        p.addcdiv_(m, denom, value=-lr / bias1)  # η m̂_t / (√v̂_t + ε)


class AdamW(Adam):
    r"""AdamW: Adam with *decoupled* weight decay.

    Update, as ``torch.optim.AdamW`` defines it: first ``θ ← θ (1 - η λ)``, then Adam's step with the
    raw gradient (m̂, v̂ never see the decay term)::

        θ_{t-1}' = θ_{t-1} (1 - η λ)
        θ_t = θ_{t-1}' - η m̂_t / (√v̂_t + ε)

    With Adam's coupled L2 the decay is divided by √v̂ like the gradient, so weights with large
    gradients are barely regularised; decoupling restores plain shrinkage. Source: Loshchilov & Hutter,
    "Decoupled weight decay regularization", ICLR 2019, Algorithm 2.

    Args:
        as :class:`Adam`, but ``weight_decay`` defaults to 1e-2 (torch's default).

    Raises:
        ValueError: a hyper-parameter out of range (the message names it).
    """

    decoupled = True

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
