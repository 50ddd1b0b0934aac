"""The training loop: epochs, batches, updates, train and eval modes, written out in full.

Source: ML2021 lecture 1-2 (the three steps of training: a function with unknown parameters, a loss,
optimization by gradient descent over mini-batches; an *epoch* is one pass over the shuffled
training set, an *update* is one gradient step on one batch) and EE-559 (train/eval modes of
dropout and batch normalization, gradient clipping).

One update::

    x, y   = prepare_batch(...)            # augmentation + normalization of a batch
    logits = model(x)                      # forward (autocast on CUDA when cfg.amp; bf16 on CPU when cfg.cpu_bf16)
    loss   = cross_entropy(logits, y)      # mean over the batch
    loss.backward()                        # gradients (averaged over processes by DDP)
    clip_grad_norm_(params, cfg.grad_clip) # optional
    optimizer.step()                       # theta <- theta - lr * update(grad)

What the loop adds around that: a learning rate set from the schedule before every update, an
optional exponential moving average of the weights (``cfg.ema_decay``; torch's ``AveragedModel``,
which then stands in for the weights at every evaluation and in the saved model), optional Lookahead
(``cfg.lookahead_steps``, Zhang et al. 2019: slow weights phi, every k updates phi <- phi + alpha (theta - phi),
theta <- phi), a progress bar,
a metrics row per epoch (``metrics.csv`` and TensorBoard when installed), an atomic checkpoint per epoch, exact resumption, a stop on a non-finite loss that keeps the last good
checkpoint, and data parallelism across processes (launched by torchrun).

Resumption is exact because nothing random depends on history: the data order and the
augmentation of epoch ``e`` come from generators seeded with ``(seed, e)``, and the global RNG
(dropout) is saved in each checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from deepnotes.errors import UserError
from deepnotes.io import atomic_path
from deepnotes.report import append_metrics_row
from deepnotes.train import distributed as distr
from deepnotes.train.checkpoint import cpu_state_dict, list_checkpoints, load_checkpoint, save_checkpoint
from deepnotes.train.config import TrainConfig
from deepnotes.train.schedule import lr_at

# prepare_batch(x, y, train, generator) -> (inputs on device, targets on device)
PrepareBatch = Callable[[torch.Tensor, torch.Tensor, bool, torch.Generator | None], tuple[torch.Tensor, torch.Tensor]]


IGNORE_INDEX = -100  # a target equal to this (padding) is ignored, as by F.cross_entropy


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the message says which update and where the last good checkpoint is."""


@dataclass
class EpochStats:
    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        counted = y != IGNORE_INDEX  # padding targets take no part in the loss or the accuracy
        n = int(counted.sum())  # examples, or tokens for sequence targets
        self.loss_sum += float(loss) * n
        self.correct += float(((logits.argmax(dim=-1) == y) & counted).sum())
        self.count += n

    def reduced(self, info: distr.DistInfo, device: torch.device) -> tuple[float, float]:
        loss_sum, correct, count = distr.all_reduce_sum([self.loss_sum, self.correct, self.count], info, device)
        return loss_sum / max(count, 1.0), correct / max(count, 1.0)


def make_optimizer(model: nn.Module, cfg: TrainConfig, scaled: Iterable[nn.Parameter] = (),
                   lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """SGD or AdamW with weight decay on weight matrices/kernels only (not biases, not norm scales).

    ``scaled`` parameters, if any, go to a third group trained at ``lr * lr_scale`` (the group's ``"lr_scale"``,
    applied by :class:`Trainer`) with weight decay ``weight_decay / lr_scale``, so that their decay per update is the
    weights' (airbench94's 64x rate for batch-norm shifts, Jordan 2024).
    """
    scaled = [p for p in scaled if p.requires_grad]
    taken = {id(p) for p in scaled}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    groups = [
        {"params": [p for p in rest if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for p in rest if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if scaled:
        groups.append({"params": scaled, "weight_decay": cfg.weight_decay / lr_scale, "lr_scale": lr_scale})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    raise UserError(f"--optimizer must be sgd or adamw, got {cfg.optimizer!r}")


def ema_decay_at(decay: float, n_averaged: int) -> float:
    """The decay of the moving average's next update after ``n_averaged`` updates (>= 1):
    ``min(decay, (1 + n) / (10 + n))``, TensorFlow's ``ExponentialMovingAverage(num_updates=n)`` warm-up,
    so that a short run's average is not stuck at the initial weights (the first update copies them)."""
    return min(decay, (1 + n_averaged) / (10 + n_averaged))


def ema_with_warmup(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor | int], None]:
    """A ``multi_avg_fn`` for torch's ``AveragedModel``: ``e <- d e + (1 - d) theta`` with d from :func:`ema_decay_at`."""

    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor | int) -> None:
        d = ema_decay_at(decay, int(n_averaged))
        for e, c in zip(ema, current):
            if e.is_floating_point():
                e.lerp_(c, 1.0 - d)  # e + (1 - d)(c - e) = d e + (1 - d) c
            else:  # integer buffers (batch-norm's num_batches_tracked): the latest value
                e.copy_(c)

    return update


def lookahead_alpha_at(alpha: float, ramp: bool, step: int, total_steps: int) -> float:
    """Lookahead's alpha at update ``step`` of ``total_steps``: ``alpha``, or with ``ramp`` airbench94's
    ``1 - (1 - alpha) (step / total_steps)^3``, which starts at 1 (the slow weights follow the trained ones) and
    reaches ``alpha`` at the end (Jordan 2024)."""
    if not ramp:
        return alpha
    return 1.0 - (1.0 - alpha) * (step / max(1, total_steps)) ** 3


def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bfloat16 dot products natively (``avx512_bf16`` or ``amx_bf16``).

    Reads ``/proc/cpuinfo`` (Linux); elsewhere returns False, so ``--cpu-bf16 auto`` stays off.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def use_cpu_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether training on ``device`` runs under bfloat16 autocast on the CPU (``cfg.cpu_bf16``)."""
    setting = getattr(cfg, "cpu_bf16", "off")
    return device.type == "cpu" and (setting == "on" or (setting == "auto" and cpu_has_native_bf16()))


def _seed_for(*parts: int) -> int:
    """A generator seed derived from integers (seed, epoch, rank, ...), stable across runs."""
    h = 0
    for p in parts:
        h = (h * 1_000_003 + int(p) + 0x9E3779B9) % (2**63 - 1)
    return h


class Trainer:
    """Supervised classification training over tensors held in memory.

    Args:
        cfg: the lab's config (a :class:`TrainConfig` subclass).
        model: the network; logits (B, K) from inputs given by ``prepare_batch``.
        run_dir: the run folder (rank 0 writes metrics.csv, checkpoints/, model.safetensors, tb/).
        train: ``(x, y)`` with x (N, ...) any dtype, y (N,) int64 class indices.
        prepare_batch: turns a raw batch into model inputs and targets on ``device``; called with
            ``train=True`` and a seeded generator for augmentation, ``train=False`` and None for eval.
        eval_sets: name -> ``(x, y)`` evaluated at the end of every epoch (e.g. ``{"val": ...}``).
        device: from :func:`deepnotes.train.distributed.resolve_device`.
        info: this process's rank and the world size.
        log: where one-line messages go (rank 0 only).
        optimizer: an optimizer over ``model``'s parameters (e.g. one of :mod:`deepnotes.optim`);
            default None builds SGD or AdamW from ``cfg`` (:func:`make_optimizer`).
        lr_schedule: ``lr_schedule(step, total_steps) -> lr`` set before every update; default None
            uses ``cfg.schedule`` through :func:`deepnotes.train.schedule.lr_at`. A parameter group with
            an ``"lr_scale"`` entry gets ``lr * lr_scale`` (e.g. airbench's 64x rate for batch-norm shifts).
        steps_per_epoch: updates per epoch; default None = one pass, ``ceil(N / batch_size)``. A
            smaller number makes an epoch a fixed number of updates on batches drawn without
            replacement from a seeded permutation (a language model's "evaluation interval" over
            millions of possible windows); a larger one chains several permutations.
        sample_weights: (N,) non-negative weights; default None draws each epoch's batches from a
            permutation (every example once). Given, each epoch draws ``steps_per_epoch * batch_size``
            indices with replacement, example i with probability ``w_i / sum(w)`` (seeded by seed
            and epoch, so a resumed run draws the same): re-balances groups of unequal size.

        eval_batch_size: examples per forward pass in :meth:`evaluate` (default 1000).

    Sequence models: logits ``(B, T, V)`` with targets ``(B, T)`` are flattened to ``B*T`` tokens for
    the loss and the accuracy (mean per token); targets equal to :data:`IGNORE_INDEX` (-100, padding)
    count in neither. Inputs may be a tuple of tensors (e.g. source and shifted target of a
    translation model): ``model(inputs)`` receives the tuple as its one argument.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        run_dir: Path,
        train: tuple[torch.Tensor, torch.Tensor],
        prepare_batch: PrepareBatch,
        eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
        device: torch.device,
        info: distr.DistInfo = distr.DistInfo(),
        log: Callable[[str], None] = print,
        optimizer: torch.optim.Optimizer | None = None,
        lr_schedule: Callable[[int, int], float] | None = None,
        steps_per_epoch: int | None = None,
        eval_batch_size: int = 1000,
        sample_weights: torch.Tensor | None = None,
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = device
        self.info = info
        self.model = model.to(device)
        self.train_x, self.train_y = train
        self.prepare_batch = prepare_batch
        self.eval_sets = eval_sets
        self.log = log if info.is_main else (lambda _msg: None)
        self.optimizer = optimizer if optimizer is not None else make_optimizer(self.model, cfg)
        self._lr_schedule = lr_schedule
        self.ddp: nn.Module = self.model
        if info.enabled:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.eval_batch_size = eval_batch_size
        if sample_weights is not None:
            sample_weights = torch.as_tensor(sample_weights, dtype=torch.float64).flatten()
            if len(sample_weights) != len(self.train_y):
                raise ValueError(f"sample_weights has {len(sample_weights)} entries for {len(self.train_y)} examples")
            if not bool(torch.isfinite(sample_weights).all()) or bool((sample_weights < 0).any()) \
                    or float(sample_weights.sum()) <= 0:
                raise ValueError("sample_weights must be finite, >= 0 and not all 0")
        self.sample_weights = sample_weights
        self.steps_per_epoch = steps_per_epoch or math.ceil(len(self.train_y) / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.use_amp = cfg.amp and device.type == "cuda"
        self.amp_dtype = (
            torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.use_cpu_bf16 = use_cpu_bf16(cfg, device)
        # theta_ema <- d theta_ema + (1 - d) theta after each update; buffers (batch-norm statistics) too
        self.ema: AveragedModel | None = None
        if cfg.ema_decay > 0:
            self.ema = AveragedModel(self.model, multi_avg_fn=ema_with_warmup(cfg.ema_decay), use_buffers=True)
            self.ema.eval()
        # Lookahead's slow weights phi (and batch-norm statistics), a copy of the model that is never trained
        self.slow: nn.Module | None = None
        if cfg.lookahead_steps > 0:
            self.slow = copy.deepcopy(self.model).requires_grad_(False)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.step = 0
        self.tb = None

    # ----------------------------------------------------------------------------------- helpers
    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=self.amp_dtype)
        if self.use_cpu_bf16:
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def lr_schedule(self) -> list[float]:
        """The learning rate of every update of the run (for the report's plot)."""
        return [self.lr_for(s) for s in range(self.total_steps)]

    def lr_for(self, step: int) -> float:
        """The learning rate of update ``step`` (0-based)."""
        if self._lr_schedule is not None:
            return float(self._lr_schedule(step, self.total_steps))
        c = self.cfg
        return lr_at(step, self.total_steps, c.lr, c.schedule, c.warmup)

    def _open_tensorboard(self) -> None:
        if not self.info.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=self.step or None)

    def _write_metrics(self, rewrite: bool) -> None:
        path = self.run_dir / "metrics.csv"
        if rewrite:
            path.unlink(missing_ok=True)
            for row in self.history:
                append_metrics_row(path, row)
        else:
            append_metrics_row(path, self.history[-1])

    def _check_finite(self, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).float()
        if self.info.enabled:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() < 1.0:
            last = list_checkpoints(self.run_dir)
            kept = f"the last good checkpoint is {last[-1]}" if last else "no epoch had finished, so no checkpoint was written"
            raise TrainingDiverged(
                f"the training loss became {float(loss.detach()):.4g} at epoch {self.epoch + 1}, update {self.step + 1}; "
                f"training stopped and {kept}. Lower --lr (now {self.cfg.lr:g}) or set --grad-clip (e.g. 1.0)"
            )

    # ----------------------------------------------------------------------------------- public
    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated: the moving average of the weights when ``cfg.ema_decay > 0``, else the model."""
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> dict[str, float]:
        """Mean cross-entropy and accuracy of :attr:`eval_model` on ``(x, y)`` in eval mode, sharded over processes."""
        batch_size = batch_size or self.eval_batch_size
        model = self.eval_model
        model.eval()
        if self.info.enabled:  # every process evaluates with rank 0's batch-norm running statistics
            for buf in model.buffers():
                torch.distributed.broadcast(buf, src=0)
        stats = EpochStats()
        idx_all = torch.arange(len(y))[self.info.rank :: self.info.world_size]
        for start in range(0, len(idx_all), batch_size):
            idx = idx_all[start : start + batch_size]
            xb, yb = self.prepare_batch(x[idx], y[idx], False, None)
            with self._autocast():
                logits = model(xb)
            logits, yb = _flatten_tokens(logits, yb)
            stats.add(F.cross_entropy(logits.float(), yb, ignore_index=IGNORE_INDEX), logits, yb)
        loss, acc = stats.reduced(self.info, self.device)
        return {"loss": loss, "acc": acc}

    def resume(self) -> None:
        """Continue from the newest complete checkpoint in ``run_dir``.

        Raises:
            UserError: the run folder has no checkpoint.
        """
        checkpoints = list_checkpoints(self.run_dir)
        if not checkpoints:
            raise UserError(f"{self.run_dir} has no checkpoint to resume from (no finished epoch); start a new run")
        state = load_checkpoint(checkpoints[-1], self.model, self.optimizer, self.device, self._extra_modules())
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state["history"])
        if self.info.is_main:
            self._write_metrics(rewrite=True)
        self.log(f"resumed from {checkpoints[-1]} (epoch {self.epoch}/{self.cfg.epochs}, update {self.step})")

    def _extra_modules(self) -> dict[str, nn.Module]:
        extra: dict[str, nn.Module] = {"ema": self.ema} if self.ema is not None else {}
        if self.slow is not None:
            extra["lookahead"] = self.slow
        return extra

    @torch.no_grad()
    def _lookahead_sync(self, alpha: float) -> None:
        """phi <- phi + alpha (theta - phi); theta <- phi, over every float tensor of the state (weights and
        batch-norm statistics; the optimizer's momentum is kept)."""
        for slow, fast in zip(self.slow.state_dict().values(), self.model.state_dict().values()):
            if slow.is_floating_point():
                slow.lerp_(fast, alpha)
                fast.copy_(slow)

    def fit(self) -> list[dict[str, Any]]:
        """Train from ``self.epoch`` to ``cfg.epochs``; return the metrics history (one dict per epoch).

        With ``cfg.ema_decay > 0`` the moving average is copied into ``self.model`` at the end, so the
        saved model.safetensors and whatever the lab evaluates afterwards are the averaged weights; with
        ``cfg.lookahead_steps > 0`` the slow weights are (updates since the last synchronization are dropped).
        """
        cfg, info = self.cfg, self.info
        self._open_tensorboard()
        try:
            while self.epoch < cfg.epochs:
                self._train_one_epoch()
        finally:
            if self.tb is not None:
                self.tb.close()
        if self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())
        if self.slow is not None:  # Lookahead ends on the slow weights
            self.model.load_state_dict(self.slow.state_dict())
        if info.is_main:
            from safetensors.torch import save_file

            with atomic_path(self.run_dir / "model.safetensors") as tmp:
                save_file(cpu_state_dict(self.model), str(tmp))
        distr.barrier(info)
        return self.history

    def _batches(self, epoch: int) -> Iterable[torch.Tensor]:
        """Indices of this process's share of each batch; the order depends only on (seed, epoch)."""
        B, N = self.cfg.batch_size, len(self.train_y)
        need = self.steps_per_epoch * B
        if self.sample_weights is not None:
            g = torch.Generator().manual_seed(_seed_for(self.cfg.seed, epoch))
            drawn = torch.multinomial(self.sample_weights, need, replacement=True, generator=g)
            for b in range(self.steps_per_epoch):
                yield drawn[b * B : (b + 1) * B][self.info.rank :: self.info.world_size]
            return
        perms = [torch.randperm(N, generator=torch.Generator().manual_seed(_seed_for(self.cfg.seed, epoch)))]
        while sum(len(p) for p in perms) < need:  # steps_per_epoch beyond one pass: chain more permutations
            perms.append(torch.randperm(N, generator=torch.Generator().manual_seed(_seed_for(self.cfg.seed, epoch, len(perms)))))
        perm = torch.cat(perms) if len(perms) > 1 else perms[0]
        for b in range(self.steps_per_epoch):
            yield perm[b * B : min((b + 1) * B, need)][self.info.rank :: self.info.world_size]

    def _train_one_epoch(self) -> None:
        cfg, info = self.cfg, self.info
        epoch = self.epoch
        aug_gen = torch.Generator().manual_seed(_seed_for(cfg.seed, epoch, info.rank, 1))
        self.ddp.train()
        stats = EpochStats()
        show = cfg.progress and info.is_main and sys.stderr.isatty()
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show, leave=False)
        t0 = time.perf_counter()
        for idx in self._batches(epoch):
            lr = self.lr_for(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)  # a group may carry its own multiplier
            x, y = self.prepare_batch(self.train_x[idx], self.train_y[idx], True, aug_gen)
            with self._autocast():
                logits = self.ddp(x)  # (B, K), or (B, T, V) for sequences
                logits, y = _flatten_tokens(logits, y)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing,
                                       ignore_index=IGNORE_INDEX)
            self._check_finite(loss)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.step += 1
            if self.slow is not None and self.step % cfg.lookahead_steps == 0:
                self._lookahead_sync(lookahead_alpha_at(cfg.lookahead_alpha, cfg.lookahead_ramp, self.step,
                                                        self.total_steps))
            stats.add(loss.detach(), logits.detach(), y)
            if show:
                elapsed = time.perf_counter() - t0
                bar.set_postfix(
                    loss=f"{stats.loss_sum / stats.count:.4f}",
                    acc=f"{100 * stats.correct / stats.count:.2f}%",
                    per_s=f"{stats.count * info.world_size / elapsed:.0f}",
                    lr=f"{lr:.3g}",
                )
            bar.update(1)
        bar.close()
        train_time = time.perf_counter() - t0
        train_loss, train_acc = stats.reduced(info, self.device)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.step,
            "lr": lr,
            "train_loss": train_loss,
            "train_acc": train_acc,
        }
        for name, (x, y) in self.eval_sets.items():
            for key, value in self.evaluate(x, y).items():
                row[f"{name}_{key}"] = value
        row["epoch_time_s"] = time.perf_counter() - t0
        row["throughput"] = stats.count * info.world_size / train_time  # examples (or tokens)/s, all processes
        self.epoch += 1
        self.history.append(row)
        if info.is_main:
            self._write_metrics(rewrite=False)
            save_checkpoint(
                self.run_dir, self.model, self.optimizer, {"epoch": self.epoch, "step": self.step, "history": self.history,
                                                             "schedule": {"name": cfg.schedule, "step": self.step,
                                                                          "total_steps": self.total_steps}},
                extra_modules=self._extra_modules(),
            )
            if self.tb is not None:
                for key, value in row.items():
                    if key not in ("epoch", "step"):
                        self.tb.add_scalar(key, value, self.step)
                self.tb.flush()
            evals = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith(tuple(self.eval_sets)))
            self.log(
                f"epoch {self.epoch}/{cfg.epochs}  train_loss {train_loss:.4f}  train_acc {train_acc:.4f}  {evals}"
                f"  {row['throughput']:.0f} ex/s  {row['epoch_time_s']:.1f}s"
            )
        distr.barrier(info)


def _flatten_tokens(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, V), (B, T)`` -> ``(B*T, V), (B*T,)``; classification shapes pass through."""
    if logits.ndim == 3:
        return logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    return logits, y


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as a JSON-serializable dict (tuples become lists)."""
    return asdict(cfg)
