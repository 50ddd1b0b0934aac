"""Explaining image classifiers (ML2021 "Explainable ML", HW9; EE-559 9-3 "Visualizing in input").

* :mod:`~deepnotes.explain.attribution`: local explanations, one map per input: saliency, SmoothGrad, integrated
  gradients, occlusion, guided backprop, Grad-CAM, LIME.
* :mod:`~deepnotes.explain.faithfulness`: are the maps faithful? Deletion/insertion curves (RISE) against random
  orders, and the cascading model-randomization sanity check (Adebayo et al. 2018).
"""

from deepnotes.explain.attribution import (LimeResult, grad_cam, guided_backprop, integrated_gradients, lime,
                                           occlusion, saliency, smoothgrad)
from deepnotes.explain.faithfulness import (Curve, deletion_curve, gaussian_blur, insertion_curve,
                                            model_randomization, random_order_auc)

__all__ = ["Curve", "LimeResult", "deletion_curve", "gaussian_blur", "grad_cam", "guided_backprop", "insertion_curve",
           "integrated_gradients", "lime", "model_randomization", "occlusion", "random_order_auc", "saliency",
           "smoothgrad"]
