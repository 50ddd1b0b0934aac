"""Autoregressive models by name, and the likelihood task: its loss is the Bernoulli NLL in nats per image, it
lowers that NLL, and a run killed mid-epoch and resumed ends equal to an uninterrupted one."""

from __future__ import annotations

import pytest
import torch

from deepnotes.errors import UserError
from deepnotes.models.pixelcnn import LikelihoodTask
from deepnotes.models.registry import create_model
from deepnotes.nn.autoencoder import bernoulli_nll
from deepnotes.nn.pixelcnn import FVSBN, NADE, GatedPixelCNN, IndependentBernoulli, PixelCNN
from deepnotes.train import Callback, EvalBatches, TensorBatches, TrainConfig, Trainer
from deepnotes.train.checkpoint import list_checkpoints
from deepnotes.train.task import Step


def _images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = torch.linspace(0.05, 0.6, 8 * 8).view(1, 1, 8, 8)
    return (torch.rand(n, 1, 8, 8, generator=g) < p).to(torch.uint8), torch.zeros(n, dtype=torch.long)


def test_models_by_name():
    assert isinstance(create_model("independent-bernoulli", image_size=(8, 8)), IndependentBernoulli)
    assert isinstance(create_model("fvsbn", image_size=(8, 8)), FVSBN)
    assert isinstance(create_model("nade", image_size=(8, 8), hidden=4), NADE)
    assert isinstance(create_model("pixelcnn", channels=4, num_layers=1, image_size=(8, 8)), PixelCNN)
    assert isinstance(create_model("gated-pixelcnn", channels=4, num_layers=1), GatedPixelCNN)
    with pytest.raises(UserError, match="kernel_size must be odd"):
        create_model("gated-pixelcnn", kernel_size=4)


def test_task_loss_is_the_nll_in_nats_per_image():
    torch.manual_seed(0)
    model = GatedPixelCNN(channels=4, num_layers=1, kernel_size=3)
    x, y = _images(6)
    out = LikelihoodTask(model).training_step(model, (x, y), Step(epoch=0, step=0, total_steps=1))
    expected = bernoulli_nll(model(x.float()), x.float(), "mean").detach()
    torch.testing.assert_close(out.loss.detach(), expected)
    assert out.count == 6 and out.sums["loss"] == pytest.approx(6 * float(expected))


class Kill(Callback):
    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, trainer, step, out):
        if trainer.step == self.at:
            raise KeyboardInterrupt("simulated kill")


def test_training_lowers_the_nll_and_resumes_exactly_after_a_kill(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=16, lr=3e-3, optimizer="adamw", schedule="cosine", progress=False)
    x, y = _images(48)
    xv, yv = _images(32, seed=1)

    def trainer(folder, callbacks=()):
        torch.manual_seed(0)
        model = GatedPixelCNN(channels=4, num_layers=1, kernel_size=3)
        return Trainer(cfg, LikelihoodTask(model), folder, TensorBatches((x, y), 16, 0),
                       {"val": EvalBatches((xv, yv))}, torch.device("cpu"), log=lambda m: None, callbacks=callbacks)

    full = trainer(tmp_path / "full")
    hist_full = full.fit()
    assert hist_full[-1]["val_loss"] < hist_full[0]["val_loss"]  # it learns the pixel probabilities
    killed = trainer(tmp_path / "killed", [Kill(3 + 2)])  # 3 updates per epoch: dies inside epoch 2
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["epoch-0001"]
    torch.manual_seed(12345)
    resumed = trainer(tmp_path / "killed")
    resumed.resume()
    hist_resumed = resumed.fit()
    for a, b in zip(hist_full, hist_resumed):
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    for (k, v1), v2 in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v1, v2), k
