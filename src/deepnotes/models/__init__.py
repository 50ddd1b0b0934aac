"""Whole models assembled from layers, each with its config dataclass."""

from deepnotes.models.cnn import LeNet5, ResNet, ResNetConfig

__all__ = ["LeNet5", "ResNet", "ResNetConfig"]
