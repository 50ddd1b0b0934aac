"""Regression models of ML2021 lecture 1, from the linear model to deep ReLU networks.

Source: ML2021 lecture 1 (Hung-yi Lee, "predict tomorrow's channel views"):

* the linear model ``y = b + sum_j w_j x_j`` and its *model bias* (it can only draw straight lines);
* any piecewise-linear curve is a constant plus a sum of "hard sigmoids", and a smooth curve is
  approximated by a sum of sigmoids: ``y = b + sum_i c_i sigmoid(b_i + sum_j w_ij x_j)``;
* the hard sigmoid is two ReLUs, ``c max(0, z) - c max(0, z - 1)``; replacing sigmoids by ReLUs and
  stacking layers gives deep networks, which fit the training days better and better and, past
  some size, the unseen days worse (overfitting).

Everything here is batch-first: inputs (B, C) with C features, outputs (B,) (one number per row).
The models are registered by name (``create_model("regression-mlp", in_features=12, width=64, depth=2)``;
also ``regression-linear`` and ``regression-sigmoids``). :func:`fit_regressor` is the lecture's training
recipe: MSE loss with an optional L2 penalty (:class:`RegressorTask`), mini-batch (or full-batch) Adam or
SGD, early stopping on the validation MSE (:class:`EarlyStopping`), run by :class:`deepnotes.train.Trainer`
in a folder of its own, so that it checkpoints every epoch and resumes exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from deepnotes.io import atomic_path, write_json_atomic
from deepnotes.models.registry import create_model, register_model
from deepnotes.train.checkpoint import CHECKPOINT_DIR, cpu_state_dict, list_checkpoints
from deepnotes.train.config import TrainConfig
from deepnotes.train.engine import Callback, Trainer
from deepnotes.train.task import RegressionTask, Step, StepOutput


def hard_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """The lecture's hard sigmoid: 0 for z <= 0, z on [0, 1], 1 for z >= 1.

    ``hard_sigmoid(z) = max(0, z) - max(0, z - 1)`` (two ReLUs). Note: ``torch.nn.functional.hardsigmoid``
    is the same shape with another slope, ``F.hardsigmoid(6 z - 3) == hard_sigmoid(z)``.
    """
    return torch.relu(z) - torch.relu(z - 1.0)


@register_model("regression-linear")
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


@register_model("regression-mlp")
class MLPRegressor(nn.Module):
    """A ReLU network: ``depth`` hidden layers of ``width`` units, then one linear output.

    ``depth=0`` is the linear model. Lecture 1: ReLU in place of the sigmoid, layers stacked.

    Args:
        in_features: C.
        width: units per hidden layer (default 64).
        depth: number of hidden layers (default 2).
        dropout: dropout probability after each activation (default 0).
        activation: ``relu`` (default), or the smooth ``tanh`` / ``sigmoid`` (a Hessian defined everywhere).

    Shapes:
        x (B, C) -> y (B,).

    Raises:
        ValueError: ``width`` < 1, ``depth`` < 0 or an unknown activation.
    """

    ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}

    def __init__(self, in_features: int, width: int = 64, depth: int = 2, dropout: float = 0.0,
                 activation: str = "relu"):
        super().__init__()
        if width < 1 or depth < 0:
            raise ValueError(f"width must be >= 1 and depth >= 0, got width={width}, depth={depth}")
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(self.ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        c = in_features
        for _ in range(depth):
            layers += [nn.Linear(c, width), self.ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c = width
        layers.append(nn.Linear(c, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # (B, 1) -> (B,)


@register_model("regression-sigmoids")
def sum_of_sigmoids(in_features: int, num_sigmoids: int = 16, hard_sigmoid: bool = False) -> SumOfSigmoids:
    """:class:`SumOfSigmoids` by name, ``hard_sigmoid`` selecting the hard sigmoid."""
    return SumOfSigmoids(in_features, num_sigmoids, hard=hard_sigmoid)


ENSEMBLE = "ensemble"  # the mean of several trained regressors' predictions
LEAST_SQUARES = "least_squares"  # the closed-form fit's entry in a set of regressors (build_regressors)


class LeastSquares(nn.Module):
    """Ordinary least squares in closed form (scikit-learn's ``LinearRegression``), kept as float64 buffers
    ``coef`` (C,) and ``intercept`` (1,) so that it is saved and loaded with the trained models.

    Shapes: :meth:`predict` takes x (N, C) (NumPy) and returns (N,) ``x @ coef + intercept``.
    """

    def __init__(self, in_features: int):
        super().__init__()
        self.register_buffer("coef", torch.zeros(in_features, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(1, dtype=torch.float64))

    def fit(self, x: np.ndarray, y: np.ndarray) -> "LeastSquares":
        from sklearn.linear_model import LinearRegression as OLS

        ols = OLS().fit(x, y)
        self.coef = torch.as_tensor(ols.coef_, dtype=torch.float64).contiguous()
        self.intercept = torch.as_tensor([float(ols.intercept_)], dtype=torch.float64)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x) @ self.coef.cpu().numpy() + float(self.intercept[0])


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


# ----------------------------------------------------------------------------------- training
class RegressorTask(RegressionTask):
    """Lecture 1's loss on a batch ``(x (B, C), y (B,))``: ``mean((model(x) - y)^2) + l2 * sum ||W||^2``.

    Epoch metrics: ``loss`` (with the penalty) in training; ``mse`` (without it, model outputs taken 4096 rows
    at a time) in evaluation.

    Args:
        model: maps (B, C) -> (B,).
        optimizer: a ready optimizer over ``model``.
        l2: the L2 coefficient lambda (default 0), added to the loss, not to the optimizer.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, l2: float = 0.0):
        super().__init__(model, optimizer)
        self.l2 = l2

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        x, y = batch
        loss = torch.mean((model(x) - y) ** 2)
        if self.l2 > 0:
            loss = loss + self.l2 * l2_penalty(model)
        return StepOutput(loss, {"loss": float(loss.detach()) * len(y)}, len(y))

    def evaluation_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        x, y = batch
        return StepOutput(None, {"mse": mse(predict(model, x), y) * len(y)}, len(y))


class EpochShuffle:
    """Batch source: every epoch one pass over the rows ``(x, y)`` in the order
    ``torch.randperm(N)`` seeded with ``seed * 1_000_003 + epoch + 1``, ``batch_size`` rows at a time.

    Raises:
        ValueError: ``batch_size`` < 1.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 1)
        order = torch.randperm(len(self.x), generator=g).to(self.x.device)
        for start in range(0, len(self.x), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]


def save_weights(module: nn.Module, path: Path) -> None:
    """``module``'s state dict as a safetensors file at ``path``, written atomically."""
    with atomic_path(path) as tmp:
        save_file(cpu_state_dict(module), str(tmp))


def best_so_far(scores: list[float]) -> tuple[int, float, int]:
    """``(best epoch (1-based, 0 if none), lowest score, epochs since it)`` over per-epoch scores; a score must be
    strictly lower to count as better (NaN never is)."""
    best, best_epoch, since = math.inf, 0, 0
    for epoch, score in enumerate(scores, start=1):
        if score < best:
            best, best_epoch, since = score, epoch, 0
        else:
            since += 1
    return best_epoch, best, since


class EarlyStopping(Callback):
    """Save the weights of the epoch with the lowest ``monitor`` as ``path`` (None: save nothing) and stop
    training after ``patience`` epochs without a lower value (0: never stop).

    Its decisions are a function of the trainer's history, so a resumed run decides as an uninterrupted one.
    """

    def __init__(self, path: Path | None, monitor: str = "valid_mse", patience: int = 0):
        self.path, self.monitor, self.patience = path, monitor, patience

    def should_stop(self, history: list[dict[str, Any]]) -> bool:
        return self.patience > 0 and best_so_far([h[self.monitor] for h in history])[2] >= self.patience

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        history = [*trainer.history, row]
        if self.path is not None and best_so_far([h[self.monitor] for h in history])[2] == 0:
            save_weights(trainer.model, self.path)
        trainer.should_stop = self.should_stop(history)


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


def fit_regressor(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor | None = None,
                  y_valid: torch.Tensor | None = None, *, epochs: int = 300, batch_size: int = 64, lr: float = 1e-3,
                  optimizer: Literal["adam", "sgd"] = "adam", momentum: float = 0.9, weight_decay: float = 0.0,
                  patience: int = 0, restore_best: bool = True, seed: int = 0, run_dir: str | Path | None = None,
                  resume: bool = False, progress: bool = False) -> FitResult:
    """Train ``model`` to minimize ``MSE + weight_decay * sum ||W||^2`` (lecture 1's three steps).

    One epoch visits the training rows once in a random order (seeded by ``seed`` and the epoch,
    :class:`EpochShuffle`) in batches of ``batch_size`` (0 = the whole set, full-batch gradient descent). After
    each epoch the train and valid MSE are measured; with ``patience > 0`` training stops when the valid MSE has
    not improved for ``patience`` epochs (early stopping), and with ``restore_best`` the weights of the best
    epoch are put back. The :class:`~deepnotes.train.Trainer` writes ``run_dir``: metrics.csv, checkpoints/,
    best.safetensors, then model.safetensors (the weights kept) and fit.json (the result) when done; the checkpoints
    and best.safetensors of a finished fit are deleted.

    Args:
        model: maps (B, C) -> (B,); trained in place.
        x_train, y_train: (N, C) and (N,) float tensors on the model's device.
        x_valid, y_valid: validation rows, or None (then no early stopping).
        epochs: maximum number of epochs (default 300).
        batch_size: rows per update, 0 for full batch (default 64).
        lr: learning rate (default 1e-3).
        optimizer: ``adam`` or ``sgd`` (with ``momentum``), torch's fused step (equal to its for-loop up to rounding).
        weight_decay: the L2 coefficient lambda (default 0), added to the loss, not to the optimizer.
        patience: early-stopping patience in epochs (0 = train all epochs).
        restore_best: reload the weights of the epoch with the best valid MSE at the end.
        seed: seeds the data order.
        run_dir: the folder of this fit (default None: a temporary one, deleted at the end).
        resume: continue the fit of ``run_dir`` (finished: load its result; else from its last checkpoint).
        progress: a progress bar per epoch (on a terminal).

    Returns:
        :class:`FitResult`.

    Raises:
        ValueError: bad ``optimizer``, ``epochs`` < 1, negative ``batch_size`` or ``weight_decay``.
        TrainingDiverged: the loss became NaN or infinite (lower ``lr``).
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be adam or sgd, got {optimizer!r}")
    if epochs < 1 or batch_size < 0 or weight_decay < 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 0, weight_decay >= 0 (got {epochs}, {batch_size}, {weight_decay})")
    with contextlib.nullcontext(run_dir) if run_dir is not None else tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if resume and (folder / "fit.json").is_file():
            model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(x_train.device)))
            return FitResult(**json.loads((folder / "fit.json").read_text()))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = (torch.optim.Adam(params, lr=lr, fused=True) if optimizer == "adam"  # torch's fused step kernels
               else torch.optim.SGD(params, lr=lr, momentum=momentum, fused=True))
        bs = len(x_train) if batch_size == 0 else min(batch_size, len(x_train))
        has_valid = x_valid is not None and y_valid is not None and len(x_valid) > 0
        evals = {"train": [(x_train, y_train)], **({"valid": [(x_valid, y_valid)]} if has_valid else {})}
        best_path = folder / "best.safetensors"
        stopper = EarlyStopping(best_path if restore_best and has_valid else None,
                                "valid_mse" if has_valid else "train_mse", patience if has_valid else 0)
        cfg = TrainConfig(seed=seed, epochs=epochs, batch_size=bs, lr=lr, schedule="constant", amp=False,
                          progress=progress)
        trainer = Trainer(cfg, RegressorTask(model, opt, weight_decay), folder, EpochShuffle(x_train, y_train, bs, seed),
                          evals, x_train.device, log=lambda _msg: None, callbacks=[stopper])
        if resume and list_checkpoints(folder):
            trainer.resume()
            trainer.should_stop = stopper.should_stop(trainer.history)
        else:  # a fresh start: nothing of an earlier attempt that died in its first epoch
            for stale in ("metrics.csv", "best.safetensors"):
                (folder / stale).unlink(missing_ok=True)
        trainer.fit()
        history = [{"epoch": h["epoch"], "train_mse": h["train_mse"], "valid_mse": h.get("valid_mse")}
                   for h in trainer.history]
        best_epoch, best, _ = best_so_far([h["valid_mse" if has_valid else "train_mse"] for h in history])
        if stopper.path is not None and best_path.is_file():
            model.load_state_dict(load_file(str(best_path), device=str(x_train.device)))
        result = FitResult(history, best_epoch if has_valid else len(history), best if has_valid else None,
                           len(history) < epochs)
        save_weights(model, folder / "model.safetensors")
        write_json_atomic(folder / "fit.json", asdict(result))
        # finished: resume reads fit.json and model.safetensors only (a full run folder stays ~1 MB, not ~15 MB)
        shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)
        best_path.unlink(missing_ok=True)
        return result


# ----------------------------------------------------------------------------------- a set of regressors
def build_regressors(specs: dict[str, dict[str, Any]], in_features: int, seed: int | None = None) -> nn.ModuleDict:
    """Models by spec (``{"name": "mlp", "width": 64, ...}`` -> ``regression-mlp`` of the model registry), each
    initialized after ``torch.manual_seed(seed)`` when a seed is given, and a :class:`LeastSquares` as
    :data:`LEAST_SQUARES`: what a regression run saves in one safetensors file (``<key>.<parameter>``)."""
    models = nn.ModuleDict()
    for key, spec in specs.items():
        if seed is not None:
            torch.manual_seed(seed)
        models[key] = create_model(f"regression-{spec['name']}", in_features=in_features,
                                   **{k: v for k, v in spec.items() if k != "name"})
    models[LEAST_SQUARES] = LeastSquares(in_features)
    return models


def predict_regressors(models: nn.ModuleDict, x: np.ndarray, z: torch.Tensor, to_units: Any,
                       persistence: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Predictions of a :func:`build_regressors` set: each trained model on the standardized inputs ``z`` (N, C)
    (``to_units`` maps its outputs (N,) back to the target's units), their mean (:data:`ENSEMBLE`, with two or
    more), ``least squares`` on the raw features ``x`` (N, C), and ``persistence`` (given values) when given."""
    preds = {k: to_units(predict(m.to(z.device), z).cpu().numpy()) for k, m in models.items() if k != LEAST_SQUARES}
    if len(preds) >= 2:
        preds[ENSEMBLE] = np.mean(list(preds.values()), axis=0)
    preds["least squares"] = models[LEAST_SQUARES].predict(x)
    return {**preds, **({"persistence": persistence} if persistence is not None else {})}
