"""Training: the loop (:class:`Trainer`) and its contract (:class:`Task`), batch sources, checkpoints, LR
schedules, devices and data parallelism."""

from deepnotes.train.batches import EvalBatches, TensorBatches
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.engine import Callback, EpochScores, Trainer, TrainingDiverged, supervised_trainer
from deepnotes.train.task import ClassificationTask, RegressionTask, Step, StepOutput, Task

__all__ = ["Callback", "ClassificationTask", "EpochScores", "EvalBatches", "RegressionTask", "Step", "StepOutput",
           "Task", "TensorBatches", "TrainConfig", "Trainer", "TrainingDiverged", "option", "supervised_trainer"]
