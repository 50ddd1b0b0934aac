"""Whole models assembled from layers, each with its config dataclass."""

from deepnotes.models.cnn import AirbenchConfig, AirbenchNet, LeNet5, ResNet, ResNetConfig

__all__ = ["AirbenchConfig", "AirbenchNet", "LeNet5", "ResNet", "ResNetConfig"]
