"""The training loop: epochs, batches, updates, train and eval modes, written out in full.

Source: ML2021 lecture 1-2 (the three steps of training: a function with unknown parameters, a loss,
optimization by gradient descent over mini-batches; an *epoch* is one pass over the shuffled
training set, an *update* is one gradient step on one batch) and EE-559 (train/eval modes of
dropout and batch normalization, gradient clipping).

One update::

    batch  = next(train_batches.epoch(e))       # the lab's batch source: order from (seed, epoch) only
    out    = task.training_step(model, batch, step)   # the task's loss (autocast inside, via step.autocast)
    out.loss.backward()                         # gradients (averaged over processes by DDP)
    clip_grad_norm_(params, cfg.grad_clip)      # optional
    optimizer.step()                            # theta <- theta - lr * update(grad)

The Trainer knows nothing of what a batch holds or what is minimized (:mod:`deepnotes.train.task`: the task owns
its loss and optimizers). What it adds around the update: a learning rate set from the schedule before every
update, an optional exponential moving average of the weights (``cfg.ema_decay``; torch's ``AveragedModel``,
which then stands in for the weights at every evaluation and in the saved model), optional Lookahead
(``cfg.lookahead_steps``, Zhang et al. 2019: slow weights phi, every k updates phi <- phi + alpha (theta - phi),
theta <- phi), callbacks after every update and epoch, a progress bar, a metrics row per epoch (``metrics.csv``
and TensorBoard when installed), an atomic checkpoint per epoch, exact resumption, a stop on a non-finite loss
that keeps the last good checkpoint, and data parallelism across processes (launched by torchrun).

Resumption is exact because nothing random depends on history: the batches of epoch ``e`` come from the source's
generators seeded with ``(seed, e)``, augmentation from a generator seeded with ``(seed, e, rank)``, and the
global RNG (dropout) is saved in each checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from deepnotes.errors import UserError
from deepnotes.io import atomic_path
from deepnotes.report import append_metrics_row
from deepnotes.train import distributed as distr
from deepnotes.train.batches import BatchSource, EvalBatches, TensorBatches, seed_for
from deepnotes.train.checkpoint import cpu_state_dict, list_checkpoints, load_checkpoint, save_checkpoint
from deepnotes.train.config import TrainConfig
from deepnotes.train.schedule import lr_at
from deepnotes.train.task import (
    IGNORE_INDEX,
    ClassificationTask,
    PrepareBatch,
    Step,
    StepOutput,
    Task,
)

__all__ = ["IGNORE_INDEX", "Callback", "EpochScores", "Trainer", "TrainingDiverged", "make_optimizer", "optimizer_impl_kwargs",
           "supervised_trainer"]


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the message says which update and where the last good checkpoint is."""


class Callback:
    """Per-step and per-epoch hooks; override what you need (e.g. record a loss curve, log samples)."""

    def on_step_end(self, trainer: "Trainer", step: Step, out: StepOutput) -> None:
        """After update ``step.step`` (``trainer.step`` already counts it)."""

    def on_epoch_end(self, trainer: "Trainer", row: dict[str, Any]) -> None:
        """After the epoch's evaluation, before its checkpoint (``row`` is the metrics row; add keys to it). Set
        ``trainer.should_stop = True`` to end training after this epoch (early stopping)."""


class EpochScores(Callback):
    """After every epoch, the keys of ``score(trainer.model)`` added to the metrics row (e.g. a validation FID or
    SSIM that the task's own evaluation does not compute).

    Args:
        score: model -> ``{column: value}``; called with ``trainer.model`` after each epoch's evaluation.
    """

    def __init__(self, score: Callable[[nn.Module], dict[str, Any]]):
        self.score = score

    def on_epoch_end(self, trainer: "Trainer", row: dict[str, Any]) -> None:
        row.update(self.score(trainer.model))


class _Sums:
    """Running sums of a step's metrics over an epoch, reduced over processes at the end."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0.0

    def add(self, out: StepOutput) -> None:
        for key, value in out.sums.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += float(out.count)

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1.0) for k, v in self.sums.items()}

    def reduced(self, info: distr.DistInfo, device: torch.device) -> dict[str, float]:
        keys = list(self.sums)  # the same order on every process: the task's keys
        values = distr.all_reduce_sum([self.sums[k] for k in keys] + [self.count], info, device)
        return {k: v / max(values[-1], 1.0) for k, v in zip(keys, values[:-1])}


def optimizer_impl_kwargs(impl: str) -> dict[str, bool]:
    """torch.optim's keyword for ``cfg.optimizer_impl``: "fused" -> ``fused=True`` (one kernel over every tensor),
    "foreach" -> ``foreach=True`` (one call per operation over every tensor), "for-loop" -> ``foreach=False``
    (torch's readable loop over the tensors). The three take the same steps up to rounding."""
    return {"fused": {"fused": True}, "foreach": {"foreach": True}}.get(impl, {"foreach": False})


def make_optimizer(model: nn.Module, cfg: TrainConfig, scaled: Iterable[nn.Parameter] = (),
                   lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """SGD or AdamW with weight decay on weight matrices/kernels only (not biases, not norm scales).

    ``cfg.optimizer_impl`` picks torch's foreach path (default), its fused kernel or its for-loop; ``cfg.beta2`` is
    AdamW's second beta (``cfg.momentum`` the first).

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
    kw = optimizer_impl_kwargs(getattr(cfg, "optimizer_impl", "foreach"))
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0, **kw
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, getattr(cfg, "beta2", 0.999)), **kw)
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




def compiler_available(device: torch.device) -> bool:
    """Whether ``torch.compile``'s inductor can build kernels for ``device``: a C++ compiler (``$CXX``, g++, clang++)
    on the CPU; Triton on CUDA."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    cxx = os.environ.get("CXX")
    return bool((cxx and shutil.which(cxx)) or shutil.which("g++") or shutil.which("clang++"))


def maybe_compile(module: nn.Module, setting: str, device: torch.device,
                  log: Callable[[str], None] = print) -> nn.Module:
    """``torch.compile(module)`` when ``setting`` is "on", or "auto" and :func:`compiler_available`; else ``module``.

    "on" without a compiler, or "auto" without one, logs one line and trains eagerly (the results are the same up to
    rounding; compiled kernels are only faster). The compiled module shares the parameters of ``module``; save and
    evaluate ``module`` itself.

    Compiling turns on ``torch.use_deterministic_algorithms(True, warn_only=True)`` for the process: without it,
    compiled CPU training on two threads was not reproducible (char-gpt: two runs of the same seed differed from the
    first epoch, so a killed and resumed run could not end bit-equal; on one thread they were equal), most likely
    inductor's atomic additions for scatter-adds such as an embedding's gradient. With it, runs are equal and no
    slower (benchmarks/char_gpt.py: 1.60-1.65x nanoGPT's tokens/s).
    """
    if setting == "off":
        return module
    if not compiler_available(device):
        log(f"--compile {setting}: no compiler for {device.type} kernels here (a C++ compiler such as g++ on the CPU); "
            "training without torch.compile")
        return module
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.compile(module)


class Trainer:
    """The loop over epochs and updates for any :class:`~deepnotes.train.task.Task`.

    Args:
        cfg: the lab's config (a :class:`TrainConfig` subclass): epochs, lr, schedule, clipping, EMA,
            Lookahead, precision, seed, progress.
        task: owns the model, its loss (``training_step`` / ``evaluation_step``) and its optimizers.
        run_dir: the run folder (rank 0 writes metrics.csv, checkpoints/, model.safetensors, tb/).
        train_batches: a :class:`~deepnotes.train.batches.BatchSource` (``len`` = updates per epoch,
            ``epoch(e)`` = this process's batches of epoch e, a function of (seed, e) only).
        eval_sets: name -> an iterable of batches evaluated after every epoch (e.g. ``{"val": EvalBatches(...)}``),
            giving the row's ``<name>_<metric>`` columns.
        device: from :func:`deepnotes.train.distributed.resolve_device`.
        info: this process's rank and the world size.
        log: where one-line messages go (rank 0 only).
        lr_schedule: ``lr_schedule(step, total_steps) -> lr`` set before every update; default None uses
            ``cfg.schedule`` through :func:`deepnotes.train.schedule.lr_at`. A parameter group with an
            ``"lr_scale"`` entry gets ``lr * lr_scale`` (e.g. airbench's 64x rate for batch-norm shifts).
        callbacks: :class:`Callback` objects called after every update and every epoch.

    Example::

        task = ClassificationTask(model, prepare_batch, label_smoothing=cfg.label_smoothing)
        trainer = Trainer(cfg, task, run_dir, TensorBatches((x, y), cfg.batch_size, cfg.seed),
                          {"val": EvalBatches((x_val, y_val))}, device)
        history = trainer.fit()   # one dict per epoch: train_loss, train_acc, val_loss, val_acc, lr, ...
    """

    def __init__(
        self,
        cfg: TrainConfig,
        task: Task,
        run_dir: Path,
        train_batches: BatchSource,
        eval_sets: Mapping[str, Iterable[Any]],
        device: torch.device,
        info: distr.DistInfo = distr.DistInfo(),
        log: Callable[[str], None] = print,
        lr_schedule: Callable[[int, int], float] | None = None,
        callbacks: Sequence[Callback] = (),
    ):
        self.cfg = cfg
        self.task = task
        self.run_dir = Path(run_dir)
        self.device = device
        self.info = info
        self.model = task.model.to(device)
        self.train_batches = train_batches
        self.eval_sets = dict(eval_sets)
        self.log = log if info.is_main else (lambda _msg: None)
        self.callbacks = list(callbacks)
        optimizers = task.configure_optimizers(cfg)
        self.optimizers: dict[str, torch.optim.Optimizer] = (
            dict(optimizers) if isinstance(optimizers, Mapping) else {"": optimizers})
        self._lr_schedule = lr_schedule
        self.ddp: nn.Module = self.model
        if info.enabled:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.ddp = maybe_compile(self.ddp, getattr(cfg, "compile", "off"), device, self.log)
        self.steps_per_epoch = len(train_batches)
        if self.steps_per_epoch < 1:
            raise ValueError("the training batch source has no batches (len(train_batches) == 0)")
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
        self.should_stop = False  # a callback sets it to end training after this epoch (early stopping)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The task's optimizer (the first, when it has several)."""
        return next(iter(self.optimizers.values()))

    # ----------------------------------------------------------------------------------- helpers
    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context of the forward pass: CUDA autocast with ``cfg.amp``, CPU bfloat16 with
        ``cfg.cpu_bf16``, else nothing."""
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
        return lr_at(step, self.total_steps, c.lr, c.schedule, c.warmup, getattr(c, "min_lr", 0.0))

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

    def _step_info(self, train: bool, lr: float = 0.0, generator: torch.Generator | None = None) -> Step:
        return Step(epoch=self.epoch, step=self.step, total_steps=self.total_steps, lr=lr, train=train,
                    generator=generator, autocast=self.autocast, optimizers=self.optimizers)

    # ----------------------------------------------------------------------------------- public
    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated: the moving average of the weights when ``cfg.ema_decay > 0``, else the model."""
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Any]) -> dict[str, float]:
        """The task's evaluation metrics (e.g. ``loss``, ``acc``) of :attr:`eval_model` over ``batches`` in eval
        mode, averaged over every process's share."""
        model = self.eval_model
        model.eval()
        if self.info.enabled:  # every process evaluates with rank 0's batch-norm running statistics
            for buf in model.buffers():
                torch.distributed.broadcast(buf, src=0)
        sums = _Sums()
        step = self._step_info(train=False)
        for batch in batches:
            sums.add(self.task.evaluation_step(model, batch, step))
        return sums.reduced(self.info, self.device)

    def resume(self) -> None:
        """Continue from the newest complete checkpoint in ``run_dir``.

        Raises:
            UserError: the run folder has no checkpoint, or it cannot be read.
        """
        checkpoints = list_checkpoints(self.run_dir)
        if not checkpoints:
            raise UserError(f"{self.run_dir} has no checkpoint to resume from (no finished epoch); start a new run")
        state = load_checkpoint(checkpoints[-1], self.model, self.optimizers, self.device, self._extra_modules())
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state["history"])
        if self.info.is_main:
            self._write_metrics(rewrite=True)
        self.log(f"resumed from {checkpoints[-1]} (epoch {self.epoch}/{self.cfg.epochs}, update {self.step})")

    def fit_or_load(self, resume: bool) -> float:
        """What a lab training several models in their own folders does with each: with ``resume`` and a finished
        ``model.safetensors`` in ``run_dir``, load it into the model (no training); with ``resume`` and checkpoints,
        continue from the newest; else train from scratch. Returns the training time in seconds (of every epoch,
        read from metrics.csv for a finished model).

        Raises:
            UserError: the finished weights cannot be read or do not fit the model (another model or config).
        """
        path = self.run_dir / "model.safetensors"
        if resume and path.is_file():  # finished in an earlier session: its time is on file
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            from deepnotes.report import read_metrics_csv

            try:
                self.model.load_state_dict(load_file(str(path)))
            except (OSError, RuntimeError, SafetensorError) as e:
                raise UserError(f"cannot load {path}: {e}; the file is damaged or from another model") from e
            return sum(float(r["epoch_time_s"]) for r in read_metrics_csv(self.run_dir / "metrics.csv"))
        if resume and list_checkpoints(self.run_dir):
            self.resume()
        self.fit()
        return sum(float(row["epoch_time_s"]) for row in self.history)

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
            while self.epoch < cfg.epochs and not self.should_stop:
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

    def _update(self, out: StepOutput) -> None:
        """backward, clipping, optimizer step (automatic optimization)."""
        cfg = self.cfg
        self._check_finite(out.loss)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        if cfg.grad_clip > 0:
            for opt in self.optimizers.values():
                self.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()

    def _train_one_epoch(self) -> None:
        cfg, info = self.cfg, self.info
        epoch = self.epoch
        aug_gen = torch.Generator().manual_seed(seed_for(cfg.seed, epoch, info.rank, 1))
        self.ddp.train()
        sums = _Sums()
        show = cfg.progress and info.is_main and sys.stderr.isatty()
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show, leave=False)
        t0 = time.perf_counter()
        lr = self.lr_for(self.step)
        for batch in self.train_batches.epoch(epoch):
            lr = self.lr_for(self.step)
            for opt in self.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)  # a group may carry its own multiplier
            step = self._step_info(train=True, lr=lr, generator=aug_gen)
            out = self.task.training_step(self.ddp, batch, step)
            if self.task.manual_optimization:
                if out.loss is not None:
                    self._check_finite(out.loss)
            else:
                self._update(out)
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.step += 1
            if self.slow is not None and self.step % cfg.lookahead_steps == 0:
                self._lookahead_sync(lookahead_alpha_at(cfg.lookahead_alpha, cfg.lookahead_ramp, self.step,
                                                        self.total_steps))
            sums.add(out)
            for cb in self.callbacks:
                cb.on_step_end(self, step, out)
            if show:
                elapsed = time.perf_counter() - t0
                bar.set_postfix({**{k: f"{v:.4f}" for k, v in sums.means().items()},
                                 "per_s": f"{sums.count * info.world_size / elapsed:.0f}", "lr": f"{lr:.3g}"})
            bar.update(1)
        bar.close()
        train_time = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch + 1, "step": self.step, "lr": lr}
        row.update({f"train_{k}": v for k, v in sums.reduced(info, self.device).items()})
        for name, batches in self.eval_sets.items():
            for key, value in self.evaluate(batches).items():
                row[f"{name}_{key}"] = value
        row["epoch_time_s"] = time.perf_counter() - t0
        row["throughput"] = sums.count * info.world_size / train_time  # examples (or tokens)/s, all processes
        for cb in self.callbacks:
            cb.on_epoch_end(self, row)
        self.epoch += 1
        self.history.append(row)
        if info.is_main:
            self._write_metrics(rewrite=False)
            save_checkpoint(
                self.run_dir, self.model, self.optimizers,
                {"epoch": self.epoch, "step": self.step, "history": self.history,
                 "schedule": {"name": getattr(cfg, "schedule", None), "step": self.step, "total_steps": self.total_steps}},
                extra_modules=self._extra_modules(),
            )
            if self.tb is not None:
                for key, value in row.items():
                    if key not in ("epoch", "step") and isinstance(value, (int, float)):
                        self.tb.add_scalar(key, value, self.step)
                self.tb.flush()
            shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                              if k.startswith(("train_", *(f"{n}_" for n in self.eval_sets))) and isinstance(v, float))
            self.log(f"epoch {self.epoch}/{cfg.epochs}  {shown}  {row['throughput']:.0f} ex/s  {row['epoch_time_s']:.1f}s")
        distr.barrier(info)


def supervised_trainer(
    cfg: TrainConfig,
    model: nn.Module,
    run_dir: Path,
    train: tuple[Any, torch.Tensor],
    prepare_batch: PrepareBatch | None,
    eval_sets: Mapping[str, tuple[Any, torch.Tensor]],
    device: torch.device,
    info: distr.DistInfo = distr.DistInfo(),
    log: Callable[[str], None] = print,
    optimizer: torch.optim.Optimizer | None = None,
    lr_schedule: Callable[[int, int], float] | None = None,
    steps_per_epoch: int | None = None,
    eval_batch_size: int = 1000,
    sample_weights: torch.Tensor | None = None,
    callbacks: Sequence[Callback] = (),
) -> Trainer:
    """The common case in one call: a :class:`ClassificationTask` over ``(x, y)`` tensors held in memory.

    Args:
        train: ``(x, y)``: x (N, ...) any dtype, y (N,) class indices or (N, T) token targets.
        prepare_batch: ``prepare_batch(x, y, train, generator) -> (inputs, targets)`` on the device (augmentation
            in training with the seeded generator; normalization); None passes batches through.
        eval_sets: name -> ``(x, y)``, evaluated after every epoch ``eval_batch_size`` rows at a time.
        optimizer, lr_schedule, callbacks: as for :class:`Trainer` and :class:`ClassificationTask`.
        steps_per_epoch, sample_weights: as for :class:`~deepnotes.train.batches.TensorBatches`.

    Raises:
        ValueError: see :class:`~deepnotes.train.batches.TensorBatches`.
    """
    task = ClassificationTask(model, prepare_batch, label_smoothing=cfg.label_smoothing, optimizer=optimizer)
    batches = TensorBatches(train, cfg.batch_size, cfg.seed, info, steps_per_epoch, sample_weights)
    evals = {name: EvalBatches(t, eval_batch_size, info) for name, t in eval_sets.items()}
    return Trainer(cfg, task, run_dir, batches, evals, device, info, log, lr_schedule=lr_schedule, callbacks=callbacks)

