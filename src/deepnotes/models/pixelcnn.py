"""Autoregressive image models by name, and the maximum-likelihood task that trains them with the Trainer.

The networks are :mod:`deepnotes.nn.pixelcnn`'s (van den Oord et al. 2016a, b; Frey 1998; Larochelle & Murray 2011;
EE-559's autoregression lecture). :class:`LikelihoodTask` is their objective as a :class:`~deepnotes.train.task.Task`:
the Bernoulli negative log-likelihood ``-log p(x) = Σ_i BCE(ℓ_i, x_i)`` of a batch of binary images, in nats per
image, which the Trainer logs as ``loss`` (``train_loss``, ``val_loss``).
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from deepnotes.models.registry import register_model
from deepnotes.nn.autoencoder import bernoulli_nll
from deepnotes.nn.pixelcnn import FVSBN, NADE, GatedPixelCNN, IndependentBernoulli, PixelCNN
from deepnotes.train.task import Step, StepOutput, Task


@register_model("independent-bernoulli")
def independent_bernoulli(image_size: Sequence[int] = (28, 28)) -> IndependentBernoulli:
    """:class:`deepnotes.nn.pixelcnn.IndependentBernoulli` (fitted in closed form with its ``fit``)."""
    return IndependentBernoulli(image_size)


@register_model("fvsbn")
def fvsbn(image_size: Sequence[int] = (28, 28)) -> FVSBN:
    """:class:`deepnotes.nn.pixelcnn.FVSBN`: a logistic regression per pixel on the pixels before it."""
    return FVSBN(image_size)


@register_model("nade")
def nade(image_size: Sequence[int] = (28, 28), hidden: int = 500) -> NADE:
    """:class:`deepnotes.nn.pixelcnn.NADE` with ``hidden`` units."""
    return NADE(image_size, hidden)


@register_model("pixelcnn")
def pixelcnn(channels: int = 64, num_layers: int = 6, kernel_size: int = 7, hidden_kernel_size: int = 3,
             **kwargs: Any) -> PixelCNN:
    """:class:`deepnotes.nn.pixelcnn.PixelCNN` (masked convolutions, mask A then B). ``image_size`` is accepted and
    unused (convolutions take any size)."""
    kwargs.pop("image_size", None)
    return PixelCNN(channels, num_layers, kernel_size, hidden_kernel_size, **kwargs)


@register_model("gated-pixelcnn")
def gated_pixelcnn(channels: int = 64, num_layers: int = 6, kernel_size: int = 7, hidden_kernel_size: int = 3,
                   **kwargs: Any) -> GatedPixelCNN:
    """:class:`deepnotes.nn.pixelcnn.GatedPixelCNN` (vertical and horizontal stacks, gated). ``image_size`` is
    accepted and unused."""
    kwargs.pop("image_size", None)
    return GatedPixelCNN(channels, num_layers, kernel_size, hidden_kernel_size, **kwargs)


class LikelihoodTask(Task):
    """Maximum likelihood of binary images for an autoregressive model. Epoch metric: ``loss``, the negative
    log-likelihood in nats per image.

    A batch is ``(x, y)``: x (B, 1, H, W) binary images of any dtype (uint8 0/1 in memory), y unused. The forward
    pass runs under the Trainer's autocast; the likelihood is computed in float32.

    Args:
        model: maps x (B, 1, H, W) in {0, 1} to Bernoulli logits (B, 1, H, W).
        device: where batches go (default None: where the model's first parameter is).
    """

    def __init__(self, model: nn.Module, device: Any = None):
        super().__init__(model)
        self.device = device

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        device = self.device if self.device is not None else next(self.model.parameters()).device
        x = batch[0].to(device).float()  # (B, 1, H, W) in {0, 1}
        with step.autocast():
            logits = model(x)
        loss = bernoulli_nll(logits.float(), x, "mean")  # mean over the batch of nats per image
        n = len(x)
        return StepOutput(loss, {"loss": float(loss.detach()) * n}, n)
