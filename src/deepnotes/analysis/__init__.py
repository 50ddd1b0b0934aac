"""Analysis tools: measurements of trained models and of learning itself, one technique per module.

Import each module by its path (``from deepnotes.analysis.sharpness import perturbation_sharpness``);
this package exports nothing itself, so adding a module never changes what the others import.

* :mod:`~deepnotes.analysis.hessian`: the Hessian of a loss, its spectrum, and what it says about a point.
* :mod:`~deepnotes.analysis.critical_points`: reaching critical points, minimum ratio, escaping saddles.
* :mod:`~deepnotes.analysis.sharpness`: flat vs sharp minima, the training-loss increase under
  random weight perturbations of fixed norm (ML2021, batch and momentum).
* :mod:`~deepnotes.analysis.generalization`: the share of "bad" training sets of a finite
  hypothesis class against the Hoeffding + union bound (ML2022, why more parameters overfit).
* :mod:`~deepnotes.analysis.model_selection`: candidates and baselines, cross-validation, the capacity ladder.
* :mod:`~deepnotes.analysis.receptive_field`: the receptive field of every layer by the recursion (seed 004), and
  measured from the input gradient of one unit.
* :mod:`~deepnotes.analysis.probing`: linear probes on each layer's activations (ML2021, Explainable ML).
"""
