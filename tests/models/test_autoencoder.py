"""The auto-encoder tasks (deepnotes.models.autoencoder): each loss against its definition, the denoising target,
the annealed temperature, exact resumption of a killed run (noise, samples and EMA codebooks from the Trainer's
generator and the checkpoint), and the scoring, walking and sampling helpers."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.models.autoencoder import (AUTOENCODERS, DenoisingTask, GumbelVAETask, autoencoder_task, interpolate,
                                          latent_codes, sample_prior, score_images)
from deepnotes.models.registry import create_model
from deepnotes.nn.autoencoder import bernoulli_nll, corrupt
from deepnotes.nn.gumbel import tau_schedule
from deepnotes.train import Callback, EvalBatches, TensorBatches, TrainConfig, Trainer
from deepnotes.train.checkpoint import list_checkpoints
from deepnotes.train.task import Step

SIZES = dict(width=4, hidden=16)
KW = {"ae": {}, "dae": {}, "vae": {"latent_dim": 4}, "vq-vae": {"num_latents": 3, "num_codes": 8, "code_dim": 2},
      "gumbel-vae": {"num_latents": 3, "categories": 4}}


def _model(name):
    torch.manual_seed(0)
    return create_model(name, **SIZES, **KW[name])


def _images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8), torch.arange(n) % 3


def prep(x, y, train, generator):
    return x.float() / 255, y


def test_every_name_builds_and_reconstructs():
    x = torch.rand(2, 1, 28, 28)
    for name in AUTOENCODERS:
        model = _model(name)
        assert model.reconstruct(x).shape == (2, 1, 28, 28), name
        assert latent_codes(model, x).ndim == 2
    with pytest.raises(ValueError, match="name must be one of"):
        autoencoder_task("gan", _model("ae"), prep)


def test_denoising_loss_is_the_clean_target_from_the_corrupted_input():
    model = _model("dae")
    task = DenoisingTask(model, prep, noise="mask", noise_level=0.5)
    x8, y = _images(8)
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    out = task.training_step(model, (x8, y), Step(0, 0, 1, generator=torch.Generator().manual_seed(7)))
    x = x8.float() / 255
    noisy = corrupt(x, "mask", 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(seen[0], noisy) and 0.4 < float((noisy == 0).float().mean()) < 0.6  # the input: corrupted
    assert torch.allclose(out.loss, bernoulli_nll(model(noisy), x).mean())  # the target: clean
    with pytest.raises(ValueError, match="level must be in"):
        DenoisingTask(model, prep, noise_level=2.0)


def test_gumbel_task_anneals_tau_and_evaluates_the_discrete_bound():
    model = _model("gumbel-vae")
    task = GumbelVAETask(model, prep, tau0=1.0, tau_min=0.5)
    x8, y = _images(8)
    out = task.training_step(model, (x8, y), Step(0, 99, 100, generator=torch.Generator().manual_seed(0)))
    assert out.sums["tau"] / out.count == pytest.approx(tau_schedule(99, 100)) == pytest.approx(0.5)
    ev1 = task.evaluation_step(model, (x8, y), Step(0, 0, 100, train=False))
    ev2 = task.evaluation_step(model, (x8, y), Step(3, 50, 100, train=False))
    assert ev1.sums["loss"] == ev2.sums["loss"]  # evaluation draws are seeded by the batch
    with pytest.raises(ValueError, match="tau_min"):
        GumbelVAETask(model, prep, tau0=0.5, tau_min=1.0)


class Kill(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, step, out):
        if trainer.step == self.at:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.parametrize("name", ["dae", "vae", "vq-vae", "gumbel-vae"])
def test_resume_after_kill_equals_uninterrupted(tmp_path, name):
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-3, optimizer="adamw", schedule="cosine", progress=False)
    x, y = _images(48)
    xv, yv = _images(16, seed=1)

    def trainer(folder, callbacks=()):
        model = _model(name)
        return Trainer(cfg, autoencoder_task(name, model, prep, seed=0), folder, TensorBatches((x, y), 16, 0),
                       {"val": EvalBatches((xv, yv))}, torch.device("cpu"), log=lambda m: None,
                       callbacks=callbacks)

    full = trainer(tmp_path / "full")
    hist_full = full.fit()
    killed = trainer(tmp_path / "killed", [Kill(3 + 2)])  # 3 updates per epoch: dies inside epoch 2
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["epoch-0001"]
    torch.manual_seed(12345)  # another global RNG state in the resumed process
    resumed = trainer(tmp_path / "killed")
    resumed.resume()
    hist_resumed = resumed.fit()
    for a, b in zip(hist_full, hist_resumed):
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    for (k, v1), v2 in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v1, v2), k  # weights, and the EMA codebook's buffers


def test_scores_walks_and_prior_samples():
    x = torch.rand(10, 1, 28, 28)
    ae, vae, vq = _model("ae"), _model("vae"), _model("vq-vae")
    s = score_images(ae, x, batch_size=4)
    assert set(s) == {"mse", "bce"} and s["bce"].shape == (10,)
    assert torch.allclose(s["bce"], bernoulli_nll(ae.reconstruct(x), x).detach(), atol=1e-4)
    sn = score_images(ae, x, seed=5, batch_size=20, noise=("mask", 0.5))
    noisy = corrupt(x, "mask", 0.5, torch.Generator().manual_seed(5))
    assert torch.allclose(sn["denoise_bce"], bernoulli_nll(ae.reconstruct(noisy), x).detach(), atol=1e-4)
    sv = score_images(vae, x, seed=3)
    assert torch.allclose(sv["negative_elbo"], vae.negative_elbo(x, torch.Generator().manual_seed(3)).detach(),
                          atol=1e-3)
    sq = score_images(vq, x)
    assert sq["codes"].shape == (10, 3)
    assert torch.allclose(sq["negative_elbo"], sq["bce"] + 3 * math.log(8), atol=1e-3)
    walk = interpolate(vae, x[0], x[1], steps=5)
    assert walk.shape == (5, 1, 28, 28) and walk.min() >= 0 and walk.max() <= 1
    assert torch.allclose(walk[0], torch.sigmoid(vae.reconstruct(x[:1]))[0].detach(), atol=1e-5)  # ends at x0's
    assert sample_prior(vq, 3, torch.Generator().manual_seed(0)).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="no prior"):
        sample_prior(ae, 2)
    with pytest.raises(ValueError, match="steps must be >= 2"):
        interpolate(ae, x[0], x[1], steps=1)
