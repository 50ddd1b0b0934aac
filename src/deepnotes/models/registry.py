"""Models created by name (timm's registry pattern): ``create_model("resnet", num_classes=10, ...)``.

A model module registers a builder with :func:`register_model`; a lab picks its network with
:func:`create_model` instead of an if/elif chain. Builders take keyword arguments with the project's constructor
convention: ``in_channels``, ``num_classes``, ``num_layers``, ``d_model``, ``n_heads`` (and the model's own).

Example::

    @register_model("lenet5")
    def lenet5(in_channels=1, num_classes=10, dropout=0.0):
        return LeNet5(in_channels, num_classes, dropout=dropout)

    model = create_model("lenet5", num_classes=10)
"""

from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

from deepnotes.errors import UserError

# Modules whose import registers their models (imported on the first create_model / list_models).
MODEL_MODULES = ("deepnotes.models.autoencoder", "deepnotes.models.bert", "deepnotes.models.cnn",
                 "deepnotes.models.framewise", "deepnotes.models.gan", "deepnotes.models.kws",
                 "deepnotes.models.image_translation",
                 "deepnotes.models.language", "deepnotes.models.mobilenet", "deepnotes.models.pixelcnn",
                 "deepnotes.models.regression", "deepnotes.models.seq2seq", "deepnotes.models.stn",
                 "deepnotes.models.vit")

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder`` under ``name`` (returns it unchanged).

    Raises:
        ValueError: ``name`` is already taken by another builder.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model name {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def _load_all() -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    _load_all()
    return sorted(_BUILDERS)


def create_model(name: str, **kwargs) -> nn.Module:
    """The model registered as ``name``, built with ``kwargs``.

    Raises:
        UserError: unknown ``name`` (the message lists the models), or the builder rejects the arguments
            (its ``ValueError`` message, which names the argument).
    """
    _load_all()
    if name not in _BUILDERS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_BUILDERS))}")
    try:
        return _BUILDERS[name](**kwargs)
    except ValueError as e:
        raise UserError(f"model {name!r}: {e}") from e
