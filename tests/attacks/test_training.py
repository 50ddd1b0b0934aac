"""PGD adversarial training (Madry et al. 2018): the task trains on PGD examples drawn from the Trainer's generator,
so a killed and resumed run ends equal to an uninterrupted one; it reduces to plain cross-entropy at eps 0, and it
buys robustness that plain training does not."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from deepnotes.attacks import pgd
from deepnotes.attacks.training import AdversarialTrainingTask
from deepnotes.metrics.robustness import accuracy, attack_images
from deepnotes.train import ClassificationTask, Step, TensorBatches, TrainConfig, Trainer
from deepnotes.train.batches import EvalBatches
from deepnotes.train.checkpoint import list_checkpoints

CFG = TrainConfig(epochs=3, batch_size=32, lr=0.01, optimizer="adamw", schedule="constant", progress=False)


def _data(n=256, seed=0):
    """Two classes of 1x6x6 'images' told apart by the mean of the left half (margin 0.3 around 0.5)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.5 + 0.1 * torch.randn(n, 1, 6, 6, generator=g)
    x[:, :, :, :3] += (0.3 * (2 * y - 1).float())[:, None, None, None]
    return x.clamp(0, 1), y


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 2))


class Killer(AdversarialTrainingTask):
    def __init__(self, *args, fail_at=None, **kw):
        super().__init__(*args, **kw)
        self.fail_at, self.calls = fail_at, 0

    def training_step(self, model, batch, step):
        self.calls += step.train
        if step.train and self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        return super().training_step(model, batch, step)


def _trainer(run_dir, fail_at=None):
    x, y = _data()
    task = Killer(_model(), eps=0.2, alpha=0.08, steps=3, fail_at=fail_at)
    return Trainer(CFG, task, run_dir, TensorBatches((x, y), CFG.batch_size, CFG.seed), {"val": EvalBatches((x, y))},
                   torch.device("cpu"), log=lambda m: None)


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    full = _trainer(tmp_path / "full")
    hist_full = full.fit()
    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _trainer(run, fail_at=8 + 3).fit()  # 8 updates an epoch: dies inside epoch 2
    assert len(list_checkpoints(run)) == 1
    torch.manual_seed(123)  # the global RNG must not matter: the PGD starts come from the Trainer's generator
    resumed = _trainer(run)
    resumed.resume()
    hist_resumed = resumed.fit()
    assert [r["train_loss"] for r in hist_full] == [r["train_loss"] for r in hist_resumed]
    for (k, v1), v2 in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v1, v2), k


def test_eps_zero_is_plain_cross_entropy_and_mode_is_restored():
    x, y = _data(32)
    model = _model().train()
    step = Step(epoch=0, step=0, total_steps=1, generator=torch.Generator().manual_seed(0))
    out = AdversarialTrainingTask(model, eps=0.0, alpha=0.1, steps=2).training_step(model, (x, y), step)
    plain = ClassificationTask(model).training_step(model, (x, y), step)
    torch.testing.assert_close(out.loss, plain.loss)
    assert model.training
    adv = AdversarialTrainingTask(model, eps=0.2, alpha=0.08, steps=3).training_step(model, (x, y), step)
    assert adv.loss.item() > plain.loss.item()  # the loss is taken at PGD's (worse) points
    with pytest.raises(ValueError):
        AdversarialTrainingTask(model, eps=-0.1, alpha=0.1, steps=1)


def test_adversarial_training_buys_robustness(tmp_path):
    x, y = _data(512, seed=1)
    attack = functools.partial(pgd, eps=0.2, alpha=0.05, steps=10, generator=torch.Generator().manual_seed(0))
    robust = {}
    for name, task in (("plain", ClassificationTask(_model())),
                       ("pgd-at", AdversarialTrainingTask(_model(), eps=0.2, alpha=0.08, steps=3)),
                       ("pgd-at eps 0", AdversarialTrainingTask(_model(), eps=0.0, alpha=0.08, steps=3))):
        cfg = TrainConfig(epochs=6, batch_size=32, lr=0.01, optimizer="adamw", schedule="constant", progress=False)
        Trainer(cfg, task, tmp_path / name, TensorBatches(_data()[0:2], 32, 0), {}, torch.device("cpu"),
                log=lambda m: None).fit()
        model = task.model.eval()
        assert accuracy(model, x, y) > 0.95, name
        robust[name] = accuracy(model, attack_images(attack, model, x, y), y)
    assert robust["pgd-at"] > robust["plain"] + 0.2, robust
    assert robust["pgd-at eps 0"] < robust["pgd-at"] - 0.2, robust  # the ball, not the extra passes, does it
