"""Regression models of ML2021 lecture 1, from the linear model to deep ReLU networks.

Source: ML2021 lecture 1 (Hung-yi Lee, "predict tomorrow's channel views"):

* the linear model ``y = b + sum_j w_j x_j`` and its *model bias* (it can only draw straight lines);
* any piecewise-linear curve is a constant plus a sum of "hard sigmoids", and a smooth curve is
  approximated by a sum of sigmoids: ``y = b + sum_i c_i sigmoid(b_i + sum_j w_ij x_j)``;
* the hard sigmoid is two ReLUs, ``c max(0, z) - c max(0, z - 1)``; replacing sigmoids by ReLUs and
  stacking layers gives deep networks, which fit the training days better and better and, past
  some size, the unseen days worse (overfitting).

Everything here is batch-first: inputs (B, C) with C features, outputs (B,) (one number per row).
:func:`fit_regressor` is the lecture's training recipe written out: MSE loss, optional L2 penalty,
mini-batch (or full-batch) Adam or SGD, early stopping on the validation MSE.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn


def hard_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """The lecture's hard sigmoid: 0 for z <= 0, z on [0, 1], 1 for z >= 1.

    ``hard_sigmoid(z) = max(0, z) - max(0, z - 1)`` (two ReLUs). Note: ``torch.nn.functional.hardsigmoid``
    is the same shape with another slope, ``F.hardsigmoid(6 z - 3) == hard_sigmoid(z)``.
    """
    return torch.relu(z) - torch.relu(z - 1.0)


class LinearRegression(nn.Module):
    """``y = b + sum_j w_j x_j`` (lecture 1's linear model).

    Args:
        in_features: C, number of input features.

    Shapes:
        x (B, C) -> y (B,).
    """

    def __init__(self, in_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)  # (B, 1) -> (B,)


class SumOfSigmoids(nn.Module):
    """``y = b + sum_{i=1..K} c_i sigmoid(b_i + sum_j w_ij x_j)`` (lecture 1's flexible model).

    With ``hard=True`` each sigmoid is replaced by :func:`hard_sigmoid`, so the model is exactly
    piecewise linear in x (a constant plus K ramps), the lecture's first construction.

    Args:
        in_features: C.
        num_sigmoids: K, the number of (hard) sigmoids (default 16).
        hard: use the hard sigmoid (default False).

    Shapes:
        x (B, C) -> y (B,); weights W (K, C), b_i (K,), c (K,), b scalar.

    Raises:
        ValueError: ``num_sigmoids`` < 1.
    """

    def __init__(self, in_features: int, num_sigmoids: int = 16, hard: bool = False):
        super().__init__()
        if num_sigmoids < 1:
            raise ValueError(f"num_sigmoids must be >= 1, got {num_sigmoids}")
        self.hard = hard
        self.hidden = nn.Linear(in_features, num_sigmoids)  # r = b_i + W x,   (B, K)
        self.out = nn.Linear(num_sigmoids, 1)  # b + c^T a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.hidden(x)  # (B, K)
        a = hard_sigmoid(r) if self.hard else torch.sigmoid(r)  # (B, K)
        return self.out(a).squeeze(-1)  # (B,)


class MLPRegressor(nn.Module):
    """A ReLU network: ``depth`` hidden layers of ``width`` units, then one linear output.

    ``depth=0`` is the linear model. Lecture 1: ReLU in place of the sigmoid, layers stacked.

    Args:
        in_features: C.
        width: units per hidden layer (default 64).
        depth: number of hidden layers (default 2).
        dropout: dropout probability after each ReLU (default 0).

    Shapes:
        x (B, C) -> y (B,).

    Raises:
        ValueError: ``width`` < 1 or ``depth`` < 0.
    """

    def __init__(self, in_features: int, width: int = 64, depth: int = 2, dropout: float = 0.0):
        super().__init__()
        if width < 1 or depth < 0:
            raise ValueError(f"width must be >= 1 and depth >= 0, got width={width}, depth={depth}")
        layers: list[nn.Module] = []
        c = in_features
        for _ in range(depth):
            layers += [nn.Linear(c, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c = width
        layers.append(nn.Linear(c, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # (B, 1) -> (B,)


def build_regressor(name: str, in_features: int, *, num_sigmoids: int = 16, hard_sigmoid: bool = False,
                    width: int = 64, depth: int = 2, dropout: float = 0.0) -> nn.Module:
    """A model by name: ``linear``, ``sigmoids`` or ``mlp``.

    Raises:
        ValueError: unknown name (the message lists the names).
    """
    if name == "linear":
        return LinearRegression(in_features)
    if name == "sigmoids":
        return SumOfSigmoids(in_features, num_sigmoids, hard=hard_sigmoid)
    if name == "mlp":
        return MLPRegressor(in_features, width, depth, dropout)
    raise ValueError(f"unknown model {name!r}; choose linear, sigmoids or mlp")


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """``sum ||W||^2`` over weight matrices (parameters with 2 or more dims; biases are not penalized)."""
    terms = [p.pow(2).sum() for p in model.parameters() if p.ndim > 1]
    return torch.stack(terms).sum() if terms else torch.zeros(())


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Model outputs (N,) for inputs (N, C), in eval mode, without gradients."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else x.new_zeros(0)


def mse(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error ``mean((pred - y)^2)`` as a float."""
    return float(torch.mean((pred.reshape(-1) - y.reshape(-1)) ** 2))


@dataclass
class FitResult:
    """What :func:`fit_regressor` returns.

    Attributes:
        history: one dict per epoch: ``epoch``, ``train_mse``, ``valid_mse`` (None without valid data),
            all in the units of the ``y`` given (measured after the epoch, in eval mode, without the
            L2 term).
        best_epoch: epoch with the lowest valid MSE (the last epoch without valid data).
        best_valid_mse: that MSE (None without valid data).
        stopped_early: True if the patience ran out before ``epochs``.
    """

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_mse: float | None = None
    stopped_early: bool = False


def fit_regressor(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_valid: torch.Tensor | None = None,
    y_valid: torch.Tensor | None = None,
    *,
    epochs: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: Literal["adam", "sgd"] = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    patience: int = 0,
    restore_best: bool = True,
    seed: int = 0,
) -> FitResult:
    """Train ``model`` to minimize ``MSE + weight_decay * sum ||W||^2`` (lecture 1's three steps).

    One epoch visits the training rows once in a random order (seeded by ``seed`` and the epoch) in
    batches of ``batch_size`` (0 = the whole set, full-batch gradient descent). After each epoch the
    train and valid MSE are measured; with ``patience > 0`` training stops when the valid MSE has not
    improved for ``patience`` epochs (early stopping), and with ``restore_best`` the weights of the
    best epoch are put back.

    Args:
        model: maps (B, C) -> (B,); trained in place.
        x_train, y_train: (N, C) and (N,) float tensors on the model's device.
        x_valid, y_valid: validation rows, or None (then no early stopping).
        epochs: maximum number of epochs (default 300).
        batch_size: rows per update, 0 for full batch (default 64).
        lr: learning rate (default 1e-3).
        optimizer: ``adam`` or ``sgd`` (with ``momentum``).
        weight_decay: the L2 coefficient lambda (default 0), added to the loss, not to the optimizer.
        patience: early-stopping patience in epochs (0 = train all epochs).
        restore_best: reload the weights of the epoch with the best valid MSE at the end.
        seed: seeds the data order.

    Returns:
        :class:`FitResult`.

    Raises:
        ValueError: bad ``optimizer``, ``epochs`` < 1, negative ``batch_size`` or ``weight_decay``.
        FloatingPointError: the loss became NaN or infinite (lower ``lr``).
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be adam or sgd, got {optimizer!r}")
    if epochs < 1 or batch_size < 0 or weight_decay < 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 0, weight_decay >= 0 (got {epochs}, {batch_size}, {weight_decay})")
    params = [p for p in model.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer = (
        torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr, momentum=momentum)
    )
    n = len(x_train)
    bs = n if batch_size == 0 else min(batch_size, n)
    has_valid = x_valid is not None and y_valid is not None and len(x_valid) > 0
    result = FitResult()
    best_state = None
    best = math.inf
    since_best = 0
    for epoch in range(1, epochs + 1):
        model.train()
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g).to(x_train.device)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            pred = model(x_train[idx])  # (b,)
            loss = torch.mean((pred - y_train[idx]) ** 2)
            if weight_decay > 0:
                loss = loss + weight_decay * l2_penalty(model)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {float(loss.detach())} at epoch {epoch}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        train_mse = mse(predict(model, x_train), y_train)
        valid_mse = mse(predict(model, x_valid), y_valid) if has_valid else None
        result.history.append({"epoch": epoch, "train_mse": train_mse, "valid_mse": valid_mse})
        score = valid_mse if has_valid else train_mse
        if score < best:
            best, since_best = score, 0
            result.best_epoch = epoch
            if restore_best and has_valid:
                best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
            if has_valid and patience > 0 and since_best >= patience:
                result.stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    result.best_valid_mse = best if has_valid else None
    if not has_valid:
        result.best_epoch = len(result.history)
    return result
