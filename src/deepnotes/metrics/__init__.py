"""Evaluation metrics: what a lab reports, tested against their library twins.

* :mod:`~deepnotes.metrics.classification`: :func:`confusion_matrix`, :func:`mistakes_first_order`.
"""

from deepnotes.metrics.classification import confusion_matrix, mistakes_first_order

__all__ = ["confusion_matrix", "mistakes_first_order"]
