"""The experiment kit every lab is written on: config, registry, run folders, reports.

* :mod:`~deepnotes.experiment.config`: :class:`RunConfig` (seed, device, progress, threads), the base of every
  lab's config, validated from each field's declared range and choices; :func:`option` declares a field.
* :mod:`~deepnotes.experiment.registry`: :class:`Lab`, :class:`RunContext`, :func:`get_lab`, :func:`all_labs`.
* :mod:`~deepnotes.experiment.run`: :class:`Run`, a run folder (config, JSON files, weights, eval results).
* :mod:`~deepnotes.experiment.report`: :class:`Report`, the builder of ``report.md``.

The training loop and its contract (a task owns its loss and optimizers; the Trainer owns the loop) are in
:mod:`deepnotes.train`. See ``docs/adding-a-lab.md`` for a worked skeleton.
"""

from deepnotes.experiment.config import RunConfig, flag, make_config, option
from deepnotes.experiment.registry import Lab, RunContext, all_labs, get_lab
from deepnotes.experiment.report import Report
from deepnotes.experiment.run import Run

__all__ = ["Lab", "Report", "Run", "RunConfig", "RunContext", "all_labs", "flag", "get_lab", "make_config",
           "option"]
