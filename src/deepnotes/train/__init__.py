"""Training: the loop (:class:`Trainer`), checkpoints, LR schedules, devices and data parallelism."""

from deepnotes.train.config import TrainConfig, option, validate_train_config
from deepnotes.train.engine import Trainer, TrainingDiverged

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "option", "validate_train_config"]
