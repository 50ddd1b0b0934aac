"""Explaining image classifiers (ML2021 "Explainable ML", HW9; EE-559 9-3 "Visualizing in input").

* :mod:`~deepnotes.explain.attribution`: local explanations, one map per input: saliency, SmoothGrad, integrated
  gradients, occlusion, guided backprop, Grad-CAM, LIME.
* :mod:`~deepnotes.explain.faithfulness`: are the maps faithful? Deletion/insertion curves (RISE) against random
  orders, and the cascading model-randomization sanity check (Adebayo et al. 2018).
* :mod:`~deepnotes.explain.maximize`: global explanations: the input a class or a filter likes most, under
  EE-559's multi-scale prior h(x); the first layer's filters.
"""

from deepnotes.explain.attribution import (LimeResult, grad_cam, guided_backprop, integrated_gradients, lime,
                                           occlusion, saliency, smoothgrad)
from deepnotes.explain.faithfulness import (Curve, deletion_curve, gaussian_blur, insertion_curve,
                                            model_randomization, random_order_auc)
from deepnotes.explain.maximize import (class_objective, filter_objective, first_layer_filters, maximize_activation,
                                        multiscale_edge_energy)

__all__ = ["Curve", "LimeResult", "class_objective", "deletion_curve", "filter_objective", "first_layer_filters",
           "gaussian_blur", "grad_cam", "guided_backprop", "insertion_curve", "integrated_gradients", "lime",
           "maximize_activation", "model_randomization", "multiscale_edge_energy", "occlusion", "random_order_auc",
           "saliency", "smoothgrad"]
