"""Adversarial attacks and passive defenses, each written from its paper (ML2021 "Adversarial Attack", HW10).

Source: ML2021 (Hung-yi Lee) "來自人類的惡意攻擊 (Adversarial Attack) (上) – 基本概念" and "(下) – 類神經網路能否躲過
人類深不見底的惡意?", and HW10 (attacking CIFAR-10 classifiers in a white-box and a transfer setting). Images are
(B, C, H, W) in [0, 1]; a model maps them to logits with its normalization inside, so eps is in pixel units.

* :mod:`~deepnotes.attacks.gradient`: white-box attacks that ascend the cross-entropy (or descend it towards a
  target), checked against torchattacks 3.5.1:
  :func:`fgsm` (Goodfellow et al. 2015), :func:`ifgsm` (Kurakin et al. 2017), :func:`pgd` in L-inf and L2
  (Madry et al. 2018), :func:`mifgsm` with momentum (Dong et al. 2018), input diversity
  (:func:`input_diversity`, Xie et al. 2019), translation invariance (``ti_kernel``, :func:`gaussian_kernel`, Dong
  et al. 2019), variance tuning (``variance_samples``, Wang & He 2021) and Nesterov look-ahead with scale invariance
  (``nesterov``, ``scales``, Lin et al. 2020), Expectation over Transformation (``eot_samples``, Athalye et al.
  2018) through :func:`loss_gradient`, :func:`deepfool` (Moosavi-Dezfooli et al. 2016), and the
  :class:`Ensemble` of HW10 whose examples transfer to unseen models.
* :mod:`~deepnotes.attacks.one_pixel`: the black-box :func:`one_pixel` attack by differential evolution
  (Su et al. 2019).
* :mod:`~deepnotes.attacks.universal`: :func:`universal_perturbation`, one perturbation for all images
  (Moosavi-Dezfooli et al. 2017), and its :func:`fooling_rate`.
* :mod:`~deepnotes.attacks.defenses`: passive defenses in front of the model, :func:`gaussian_blur`,
  :func:`median_filter` (Xu et al. 2018), :func:`jpeg_compress` (Das et al. 2017), randomized
  :func:`random_resize_pad` (Xie et al. 2018), and :class:`Defended` = model after transform.
"""

from deepnotes.attacks.defenses import Defended, gaussian_blur, jpeg_compress, median_filter, random_resize_pad
from deepnotes.attacks.gradient import (Ensemble, deepfool, fgsm, gaussian_kernel, ifgsm, input_diversity,
                                        loss_gradient, mifgsm, pgd)
from deepnotes.attacks.one_pixel import one_pixel, one_pixel_fitness, perturb_pixels
from deepnotes.attacks.universal import fooling_rate, project_perturbation, universal_perturbation

__all__ = [
    "Defended", "Ensemble", "deepfool", "fgsm", "fooling_rate", "gaussian_blur", "gaussian_kernel", "ifgsm",
    "input_diversity",
    "jpeg_compress", "loss_gradient", "median_filter", "mifgsm", "one_pixel", "one_pixel_fitness", "perturb_pixels",
    "pgd", "project_perturbation", "random_resize_pad", "universal_perturbation",
]
