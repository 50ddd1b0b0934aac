"""Layers and functions written from the lecture equations, each beside a test against its torch twin.

* :mod:`~deepnotes.nn.normalization`: :class:`BatchNorm1d`, :class:`BatchNorm2d`, :class:`LayerNorm`.
* :mod:`~deepnotes.nn.losses`: :func:`logsumexp`, :func:`log_softmax`, :func:`cross_entropy`,
  :func:`mse_one_hot`.
"""

from deepnotes.nn.losses import cross_entropy, log_softmax, logsumexp, mse_one_hot
from deepnotes.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "LayerNorm",
    "cross_entropy",
    "log_softmax",
    "logsumexp",
    "mse_one_hot",
]
