"""Optimizers and learning-rate schedules written from their equations (ML2021/2022 lecture 2).

* :mod:`~deepnotes.optim.optimizers`: :class:`SGD` (momentum, Nesterov), :class:`Adagrad`,
  :class:`RMSprop`, :class:`Adam`, :class:`AdamW`: ``torch.optim.Optimizer`` subclasses that match
  ``torch.optim``'s semantics for the options they expose.
* :mod:`~deepnotes.optim.schedules`: :class:`ConstantLR`, :class:`StepDecay`, :class:`CosineDecay`,
  :class:`WarmupDecay`, :class:`NoamSchedule`: callables ``(step, total_steps) -> lr`` for the
  Trainer's ``lr_schedule=``; :func:`named_schedule` builds one by name; :func:`lr_curve` draws one.
"""

from deepnotes.optim.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop
from deepnotes.optim.schedules import (SCHEDULE_NAMES, ConstantLR, CosineDecay, NoamSchedule, StepDecay, WarmupDecay,
                                       lr_curve, named_schedule)

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "RMSprop", "ConstantLR", "CosineDecay", "NoamSchedule", "StepDecay",
           "WarmupDecay", "lr_curve", "SCHEDULE_NAMES", "named_schedule"]
