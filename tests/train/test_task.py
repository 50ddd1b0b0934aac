"""The training contract: a task owns its loss and optimizers; any batch source; callbacks; resume stays exact.

The GAN-shaped task (two named optimizers, the task doing its own backward and steps) is the pattern the generative
chapter builds on; its kill-and-resume must equal an uninterrupted run like the classification one.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepnotes.train import (Callback, EpochScores, RegressionTask, Step, StepOutput, Task, TensorBatches, TrainConfig,
                             Trainer)
from deepnotes.train.batches import EvalBatches, seed_for
from deepnotes.train.checkpoint import list_checkpoints


class ToyGAN(Task):
    """A 1-D GAN: G maps noise to numbers, D tells them from data ~ N(3, 0.5); non-saturating losses."""

    manual_optimization = True

    def __init__(self, fail_at: int | None = None):
        torch.manual_seed(0)
        super().__init__(nn.ModuleDict({"G": nn.Linear(2, 1), "D": nn.Sequential(nn.Linear(1, 8), nn.Tanh(),
                                                                                 nn.Linear(8, 1))}))
        self.fail_at, self.calls = fail_at, 0

    def configure_optimizers(self, cfg):
        return {"G": torch.optim.Adam(self.model["G"].parameters(), lr=cfg.lr, betas=(0.5, 0.999)),
                "D": torch.optim.Adam(self.model["D"].parameters(), lr=cfg.lr, betas=(0.5, 0.999))}

    def training_step(self, model, batch, step: Step) -> StepOutput:
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        (real,) = batch
        G, D = model["G"], model["D"]
        z = torch.randn(len(real), 2, generator=step.generator)
        bce = nn.functional.binary_cross_entropy_with_logits
        fake = G(z)
        d_loss = bce(D(real), torch.ones_like(real)) + bce(D(fake.detach()), torch.zeros_like(real))
        step.optimizers["D"].zero_grad()
        d_loss.backward()
        step.optimizers["D"].step()
        g_loss = bce(D(fake), torch.ones_like(real))
        step.optimizers["G"].zero_grad()
        g_loss.backward()
        step.optimizers["G"].step()
        n = len(real)
        return StepOutput(None, {"d_loss": d_loss.item() * n, "g_loss": g_loss.item() * n}, n)

    def evaluation_step(self, model, batch, step):
        (real,) = batch
        fake = model["G"](torch.randn(len(real), 2, generator=torch.Generator().manual_seed(1)))
        return StepOutput(None, {"mean_gap": float((fake.mean() - real.mean()).abs()) * len(real)}, len(real))


def _data(n=128):
    return 3 + 0.5 * torch.randn(n, 1, generator=torch.Generator().manual_seed(0))


CFG = TrainConfig(epochs=4, batch_size=16, lr=0.01, schedule="constant", progress=False)


def _gan_trainer(run_dir, fail_at=None):
    x = _data()
    return Trainer(CFG, ToyGAN(fail_at), run_dir, TensorBatches((x,), CFG.batch_size, CFG.seed),
                   {"val": EvalBatches((x,))}, torch.device("cpu"), log=lambda m: None)


def test_gan_with_two_optimizers_resumes_exactly(tmp_path):
    full = _gan_trainer(tmp_path / "full")
    hist_full = full.fit()
    assert set(hist_full[0]) >= {"train_d_loss", "train_g_loss", "val_mean_gap"}
    assert hist_full[-1]["val_mean_gap"] < hist_full[0]["val_mean_gap"]  # G moves toward the data

    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _gan_trainer(run, fail_at=8 * 2 + 3).fit()  # 8 updates an epoch: dies inside epoch 3
    last = list_checkpoints(run)[-1]
    assert {p.name for p in last.iterdir()} >= {"optimizer-G.safetensors", "optimizer-D.safetensors"}
    torch.manual_seed(999)
    resumed = _gan_trainer(run)
    resumed.resume()
    assert resumed.epoch == 2
    hist_resumed = resumed.fit()
    for a, b in zip(hist_full, hist_resumed):
        assert a["train_d_loss"] == b["train_d_loss"] and a["val_mean_gap"] == b["val_mean_gap"]
    for (k, v1), v2 in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v1, v2), k


class Windows:
    """A batch source that is not tensors in memory: (x, y) windows of a sequence, order from (seed, epoch)."""

    def __init__(self, seq, n_batches=5, batch=4):
        self.seq, self.n_batches, self.batch = seq, n_batches, batch

    def __len__(self):
        return self.n_batches

    def epoch(self, e):
        g = torch.Generator().manual_seed(seed_for(0, e))
        for _ in range(self.n_batches):
            starts = torch.randint(0, len(self.seq) - 3, (self.batch,), generator=g)
            w = self.seq[starts[:, None] + torch.arange(3)]
            yield w[:, :2], w[:, 2]


class Recorder(Callback):
    def __init__(self):
        self.steps, self.rows = [], []

    def on_step_end(self, trainer, step, out):
        self.steps.append((step.epoch, step.step, step.total_steps, out.count))

    def on_epoch_end(self, trainer, row):
        row["extra"] = len(self.steps)
        self.rows.append(row)


def test_any_batch_source_regression_task_and_callbacks(tmp_path):
    seq = torch.linspace(0, 1, 50)
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    rec = Recorder()
    cfg = TrainConfig(epochs=3, batch_size=4, lr=0.1, schedule="constant", progress=False)
    trainer = Trainer(cfg, RegressionTask(model), tmp_path, Windows(seq), {"val": list(Windows(seq).epoch(99))},
                      torch.device("cpu"), log=lambda m: None, callbacks=[rec])
    hist = trainer.fit()
    assert rec.steps[0] == (0, 0, 15, 4) and rec.steps[-1] == (2, 14, 15, 4)  # Step says where the loop stands
    assert [r["extra"] for r in hist] == [5, 10, 15]  # on_epoch_end may add columns to the row
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]  # MSE falls: y is linear in x
    assert (tmp_path / "model.safetensors").is_file()


def test_epoch_scores_add_the_model_s_scores_to_each_row(tmp_path):
    seq = torch.linspace(0, 1, 50)
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=0.1, schedule="constant", progress=False)
    scores = EpochScores(lambda m: {"bias": float(m.bias), "is_model": m is model})
    hist = Trainer(cfg, RegressionTask(model), tmp_path, Windows(seq), {}, torch.device("cpu"), log=lambda m: None,
                   callbacks=[scores]).fit()
    assert [r["is_model"] for r in hist] == [True, True]
    assert hist[-1]["bias"] == float(model.bias) and hist[0]["bias"] != hist[-1]["bias"]  # scored after each epoch


def test_a_task_without_training_step_says_so(tmp_path):
    trainer = Trainer(CFG, Task(nn.Linear(1, 1)), tmp_path, TensorBatches((_data(),), 16, 0), {},
                      torch.device("cpu"), log=lambda m: None)
    with pytest.raises(NotImplementedError, match="must define training_step"):
        trainer.fit()
