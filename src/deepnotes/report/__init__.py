"""Run reports: the metrics CSV, PNG figures and Markdown snippets a lab's report is made of.

* :mod:`~deepnotes.report.metrics_csv`: :func:`append_metrics_row` (one row per epoch, atomic)
  and :func:`read_metrics_csv` (numbers parsed, empty cells ``None``).
* :mod:`~deepnotes.report.plots`: :func:`plot_learning_curves`, :func:`plot_confusion_matrix`,
  :func:`plot_image_grid`, :func:`plot_lr_schedule`; each writes one PNG atomically.
  A lab's own figures use :func:`new_figure` and :func:`save_figure` (atomic PNG).
* :mod:`~deepnotes.report.markdown`: :func:`markdown_table`, :func:`markdown_image`.

Every file goes through :func:`deepnotes.io.atomic_path`: it is either absent, the previous
version, or complete.
"""

from deepnotes.report.markdown import format_number, markdown_image, markdown_table
from deepnotes.report.metrics_csv import append_metrics_row, read_metrics_csv
from deepnotes.report.plots import (new_figure, plot_confusion_matrix, plot_image_grid, plot_learning_curves,
                                    plot_lr_schedule, save_figure)

__all__ = ["append_metrics_row", "format_number", "markdown_image", "markdown_table", "new_figure",
           "plot_confusion_matrix", "plot_image_grid", "plot_learning_curves", "plot_lr_schedule", "read_metrics_csv",
           "save_figure"]
