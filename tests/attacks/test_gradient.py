"""Gradient attacks against torchattacks 3.5.1 with identical settings and starts (images compared numerically).

Tolerance: atol 1e-6. Our gradient is that of the summed per-image loss, torchattacks' that of the batch mean;
every update uses the sign or a normalized gradient, so only float rounding (one ulp of a pixel) may differ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchattacks
from scipy import ndimage, stats
from torch import nn

from deepnotes.attacks.gradient import (Ensemble, deepfool, fgsm, gaussian_kernel, ifgsm, input_diversity,
                                        loss_gradient, mifgsm, pgd)

ATOL = 1e-6


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=atol)


def _targeted(attack: torchattacks.attack.Attack, targeted: bool) -> torchattacks.attack.Attack:
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)  # the labels passed are the targets
    return attack


def test_loss_gradient_is_each_images_own_cross_entropy_gradient(tiny_cnn, batch):
    x, y = batch
    grad, loss = loss_gradient(tiny_cnn, x, y)
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        li = nn.functional.cross_entropy(tiny_cnn(xi), y[i:i + 1])
        (gi,) = torch.autograd.grad(li, xi)
        _close(grad[i:i + 1], gi, atol=1e-6)
        assert loss[i].item() == pytest.approx(li.item(), rel=1e-5)
    grad_t, loss_t = loss_gradient(tiny_cnn, x, y, targeted=True)
    _close(grad_t, -grad, atol=0)
    _close(loss_t, -loss, atol=0)


def test_loss_gradient_leaves_the_model_as_it_was(tiny_cnn, batch):
    x, y = batch
    tiny_cnn.net[0].weight.requires_grad_(False)
    tiny_cnn.train()
    loss_gradient(tiny_cnn, x, y, eot_samples=2)
    pgd(tiny_cnn, x, y, 0.1, 0.02, 2, generator=torch.Generator().manual_seed(0))
    deepfool(tiny_cnn.eval(), x, steps=2)
    assert [p.requires_grad for p in tiny_cnn.parameters()] == [False] + [True] * 5
    assert all(p.grad is None for p in tiny_cnn.parameters())
    tiny_cnn.train()
    fgsm(tiny_cnn, x, y, 0.1)
    assert tiny_cnn.training


def test_eot_gradient_is_the_mean_over_passes():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(10, 16, generator=g)

    class Noisy(nn.Module):  # a randomized model: fresh noise on the input at every forward pass
        def forward(self, x):
            return (x.flatten(1) + 0.3 * torch.randn(x.shape[0], 16, generator=g)) ** 2 @ w.T

    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
    g.manual_seed(5)
    grad, loss = loss_gradient(Noisy(), x, y, eot_samples=3)
    g.manual_seed(5)
    singles = [loss_gradient(Noisy(), x, y) for _ in range(3)]
    _close(grad, sum(s[0] for s in singles) / 3, atol=1e-5)
    _close(loss, sum(s[1] for s in singles) / 3, atol=1e-5)
    assert not torch.allclose(singles[0][0], singles[1][0])  # the passes do differ


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_matches_torchattacks(tiny_cnn, batch, targeted):
    x, y = batch
    ours = fgsm(tiny_cnn, x, y, 0.05, targeted=targeted)
    theirs = _targeted(torchattacks.FGSM(tiny_cnn, eps=0.05), targeted)(x, y)
    _close(ours, theirs)
    assert (ours - x).abs().max() == pytest.approx(0.05, abs=1e-6)  # a full step somewhere
    assert not ours.requires_grad


@pytest.mark.parametrize("targeted", [False, True])
def test_ifgsm_matches_torchattacks_bim(tiny_cnn, batch, targeted):
    x, y = batch
    ours = ifgsm(tiny_cnn, x, y, 0.06, 0.01, 8, targeted=targeted)
    theirs = _targeted(torchattacks.BIM(tiny_cnn, eps=0.06, alpha=0.01, steps=8), targeted)(x, y)
    _close(ours, theirs)


@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_linf_matches_torchattacks(tiny_cnn, batch, random_start, targeted):
    x, y = batch
    ours = pgd(tiny_cnn, x, y, 0.05, 0.01, 7, random_start=random_start, targeted=targeted,
               generator=torch.Generator().manual_seed(3))
    torch.manual_seed(3)  # a CPU Generator seeded alike draws the same numbers as the global one
    theirs = _targeted(torchattacks.PGD(tiny_cnn, eps=0.05, alpha=0.01, steps=7, random_start=random_start),
                       targeted)(x, y)
    _close(ours, theirs)
    assert (ours - x).abs().max() <= 0.05 + 1e-6


@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_l2_matches_torchattacks_pgdl2(tiny_cnn, batch, random_start, targeted):
    x, y = batch
    ours = pgd(tiny_cnn, x, y, 0.5, 0.1, 7, norm="l2", random_start=random_start, targeted=targeted,
               generator=torch.Generator().manual_seed(4))
    torch.manual_seed(4)
    theirs = _targeted(torchattacks.PGDL2(tiny_cnn, eps=0.5, alpha=0.1, steps=7, random_start=random_start),
                       targeted)(x, y)
    _close(ours, theirs)
    norms = (ours - x).flatten(1).norm(dim=1)
    assert norms.max() <= 0.5 + 1e-5 and norms.max() > 0.45


def test_pgd_random_start_draws_from_the_generator(tiny_cnn, batch):
    x, y = batch
    a = pgd(tiny_cnn, x, y, 0.05, 0.01, 2, generator=torch.Generator().manual_seed(0))
    b = pgd(tiny_cnn, x, y, 0.05, 0.01, 2, generator=torch.Generator().manual_seed(0))
    c = pgd(tiny_cnn, x, y, 0.05, 0.01, 2, generator=torch.Generator().manual_seed(1))
    _close(a, b, atol=0)
    assert not torch.allclose(a, c)


def test_pgd_with_eot_matches_torchattacks_eotpgd(batch):
    x, y = batch
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(144, 32), nn.ReLU(), nn.Linear(32, 10))

    class Noisy(nn.Module):  # random through the global RNG, as torchattacks expects
        def forward(self, images):
            return base(images + 0.2 * torch.randn_like(images))

    model = Noisy()
    torch.manual_seed(9)
    ours = pgd(model, x, y, 0.05, 0.01, 5, random_start=False, eot_samples=3)
    torch.manual_seed(9)
    theirs = torchattacks.EOTPGD(model, eps=0.05, alpha=0.01, steps=5, eot_iter=3, random_start=False)(x, y)
    _close(ours, theirs)
    torch.manual_seed(9)
    assert not torch.allclose(ours, pgd(model, x, y, 0.05, 0.01, 5, random_start=False, eot_samples=1))


@pytest.mark.parametrize("targeted", [False, True])
def test_mifgsm_matches_torchattacks(tiny_cnn, batch, targeted):
    x, y = batch
    ours = mifgsm(tiny_cnn, x, y, 0.06, 0.01, 8, decay=0.9, targeted=targeted)
    theirs = _targeted(torchattacks.MIFGSM(tiny_cnn, eps=0.06, alpha=0.01, steps=8, decay=0.9), targeted)(x, y)
    _close(ours, theirs)
    assert not torch.allclose(ours, ifgsm(tiny_cnn, x, y, 0.06, 0.01, 8, targeted=targeted))  # momentum matters


@pytest.mark.parametrize("resize_rate", [0.8, 1.25])
def test_di_mifgsm_matches_torchattacks_difgsm(model_factory, batch, resize_rate):
    x, y = batch
    model = model_factory(2)  # adaptive pooling: accepts the 15x15 inputs of resize_rate 1.25
    ours = mifgsm(model, x, y, 0.06, 0.01, 8, decay=1.0, diversity_prob=0.7, resize_rate=resize_rate,
                  generator=torch.Generator().manual_seed(11))
    torch.manual_seed(11)
    theirs = torchattacks.DIFGSM(model, eps=0.06, alpha=0.01, steps=8, decay=1.0, resize_rate=resize_rate,
                                 diversity_prob=0.7, random_start=False)(x, y)
    _close(ours, theirs)
    assert not torch.allclose(ours, mifgsm(model, x, y, 0.06, 0.01, 8, decay=1.0))  # the transform matters


@pytest.mark.parametrize("resize_rate", [0.75, 1.3])
def test_input_diversity_matches_torchattacks(resize_rate):
    x = torch.rand(3, 2, 16, 16)
    attack = torchattacks.DIFGSM(nn.Linear(1, 1), resize_rate=resize_rate, diversity_prob=0.6)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    transformed = 0
    for _ in range(20):
        ours = input_diversity(x, resize_rate=resize_rate, diversity_prob=0.6, generator=g)
        theirs = attack.input_diversity(x)
        _close(ours, theirs, atol=0)
        transformed += ours.shape != x.shape or not torch.equal(ours, x)
    assert 5 <= transformed <= 19


def test_gaussian_kernel_matches_scipy_and_torchattacks():
    ours = gaussian_kernel(7, 1.5, channels=2, dtype=torch.float64)
    line = stats.norm.pdf(np.arange(7) - 3, scale=1.5)
    expected = torch.from_numpy(np.outer(line, line) / np.outer(line, line).sum())
    assert ours.shape == (2, 1, 7, 7)
    _close(ours[1, 0], expected, atol=1e-12)
    theirs = torchattacks.TIFGSM(nn.Linear(1, 1), len_kernel=7, nsig=2).stacked_kernel  # sigma = 6 / (2 * 2)
    _close(ours[:1].float(), theirs[:1], atol=1e-7)


@pytest.mark.parametrize(("size", "nsig", "sigma", "targeted"), [(5, 3, None, False), (7, 2, 1.5, False),
                                                                  (5, 3, None, True)])
def test_ti_mifgsm_matches_torchattacks_tifgsm(model_factory, size, nsig, sigma, targeted):
    model = model_factory(3, in_channels=3)  # torchattacks' depthwise convolution takes 3 channels only
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(6, 3, 12, 12, generator=g), torch.randint(0, 10, (6,), generator=g)
    ours = mifgsm(model, x, y, 0.06, 0.01, 6, decay=1.0, diversity_prob=0.7, ti_kernel=size, ti_sigma=sigma,
                  targeted=targeted, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(5)
    theirs = _targeted(torchattacks.TIFGSM(model, eps=0.06, alpha=0.01, steps=6, decay=1.0, len_kernel=size, nsig=nsig,
                                           diversity_prob=0.7), targeted)(x, y)
    _close(ours, theirs)
    plain = mifgsm(model, x, y, 0.06, 0.01, 6, decay=1.0, diversity_prob=0.7, targeted=targeted,
                   generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(ours, plain)  # the kernel matters


def test_ti_smooths_each_channels_gradient_with_the_kernel():
    # A linear two-class model, y = 0: grad J = p_1 (w_1 - w_0), so one step is alpha * sign(W * (w_1 - w_0)).
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2 * 144, 2))
    x, y = 0.3 + 0.4 * torch.rand(3, 2, 12, 12), torch.zeros(3, dtype=torch.int64)
    ours = mifgsm(lin, x, y, 0.05, 0.05, 1, ti_kernel=5, ti_sigma=1.0)
    u = (lin[1].weight[1] - lin[1].weight[0]).detach().view(2, 12, 12).double().numpy()
    line = stats.norm.pdf(np.arange(5) - 2)
    kernel = np.outer(line, line) / np.outer(line, line).sum()
    smoothed = torch.from_numpy(np.stack([ndimage.convolve(u[c], kernel, mode="constant") for c in range(2)]))
    _close(ours, x + 0.05 * smoothed.float().sign())
    assert not torch.equal(smoothed.sign(), torch.from_numpy(u).sign())  # the smoothing changes signs


@pytest.mark.parametrize(("nesterov", "targeted"), [(False, False), (True, False), (False, True)])
def test_vmifgsm_matches_torchattacks_given_the_same_draws(tiny_cnn, batch, nesterov, targeted, monkeypatch):
    x, y = batch
    ours = mifgsm(tiny_cnn, x, y, 0.06, 0.01, 5, variance_samples=3, variance_bound=1.5, nesterov=nesterov,
                  targeted=targeted, generator=torch.Generator().manual_seed(7))
    # torchattacks draws randn_like(x).uniform_(-beta eps, beta eps): a normal draw it overwrites at once; without
    # that wasted draw it uses the very uniforms that our generator, seeded alike, gives.
    monkeypatch.setattr(torch, "randn_like", torch.empty_like)
    torch.manual_seed(7)
    attack = torchattacks.VNIFGSM if nesterov else torchattacks.VMIFGSM
    theirs = _targeted(attack(tiny_cnn, eps=0.06, alpha=0.01, steps=5, decay=1.0, N=3, beta=1.5), targeted)(x, y)
    monkeypatch.undo()
    _close(ours, theirs)
    plain = mifgsm(tiny_cnn, x, y, 0.06, 0.01, 5, nesterov=nesterov, targeted=targeted)
    assert not torch.allclose(ours, plain)  # the variance matters


def test_vmi_neighbours_are_uniform_in_the_beta_eps_box(batch):
    seen = []

    class Recorder(nn.Module):  # logs every input it is given
        def __init__(self):
            super().__init__()
            self.lin = nn.Sequential(nn.Flatten(), nn.Linear(144, 10))

        def forward(self, images):
            seen.append(images.detach().clone())
            return self.lin(images)

    x, y = batch
    torch.manual_seed(0)
    mifgsm(Recorder(), x, y, 0.04, 0.01, 1, variance_samples=20, variance_bound=1.5,
           generator=torch.Generator().manual_seed(0))
    assert len(seen) == 21 and torch.equal(seen[0], x)  # the gradient at x_t, then N neighbours
    offsets = torch.cat([s - x for s in seen[1:]]).flatten()  # 20 x 1,152 draws
    assert offsets.abs().max() <= 0.06 + 1e-7 and offsets.abs().max() > 0.0599
    assert abs(offsets.mean()) < 3 * 0.06 / 3 ** 0.5 / len(offsets) ** 0.5  # U(-b, b): mean 0, sd b / sqrt(3)
    assert offsets.var().item() == pytest.approx(0.06 ** 2 / 3, rel=0.03)


@pytest.mark.parametrize(("scales", "targeted"), [(1, False), (4, False), (4, True)])
def test_sinifgsm_matches_torchattacks(tiny_cnn, batch, scales, targeted):
    x, y = batch
    ours = mifgsm(tiny_cnn, x, y, 0.06, 0.01, 6, decay=0.9, nesterov=True, scales=scales, targeted=targeted)
    attack = (torchattacks.SINIFGSM(tiny_cnn, eps=0.06, alpha=0.01, steps=6, decay=0.9, m=scales) if scales > 1 else
              torchattacks.NIFGSM(tiny_cnn, eps=0.06, alpha=0.01, steps=6, decay=0.9))
    _close(ours, _targeted(attack, targeted)(x, y))
    plain = mifgsm(tiny_cnn, x, y, 0.06, 0.01, 6, decay=0.9, scales=scales, targeted=targeted)
    assert not torch.allclose(ours, plain)  # the look-ahead matters


def test_deepfool_matches_torchattacks(tiny_cnn, batch):
    x, _ = batch
    pred = tiny_cnn(x).argmax(1)
    ours = deepfool(tiny_cnn, x, steps=20, overshoot=0.02)
    theirs = torchattacks.DeepFool(tiny_cnn, steps=20, overshoot=0.02)(x, pred)
    _close(ours, theirs, atol=1e-5)  # batched vs per-image convolutions: a few ulps per step
    assert (tiny_cnn(ours).argmax(1) != pred).all()


def test_deepfool_on_a_linear_model_is_the_closed_form_projection():
    # Two classes, f1 - f0 = w.x + b: one step lands at x - (1 + eta) (w.x + b) w / ||w||^2 (paper, eq. 3).
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    x = 0.4 + 0.2 * torch.rand(5, 1, 4, 4)
    with torch.no_grad():
        lin[1].bias.copy_(-lin(x).mean(0) + lin[1].bias)  # boundary through the middle of the data
    w = (lin[1].weight[1] - lin[1].weight[0]).detach()
    b = (lin[1].bias[1] - lin[1].bias[0]).detach()
    margin = x.flatten(1) @ w + b
    expected = x.flatten(1) - 1.02 * margin[:, None] * w / w.dot(w)
    ours = deepfool(lin, x, steps=5, overshoot=0.02)
    _close(ours.flatten(1), expected.clamp(0, 1), atol=1e-6)


def test_deepfool_num_classes_restricts_the_candidates(tiny_cnn, batch):
    x, _ = batch
    logits = tiny_cnn(x)
    second = logits.argsort(1, descending=True)[:, 1]
    out = deepfool(tiny_cnn, x, num_classes=2, steps=30)
    assert torch.equal(tiny_cnn(out).argmax(1), second)  # with two classes, it can only go to the runner-up


def test_ensemble_averages_logits(model_factory, batch):
    x, y = batch
    models = [model_factory(s) for s in range(3)]
    ensemble = Ensemble(models)
    _close(ensemble(x), sum(m(x) for m in models) / 3, atol=1e-6)
    theirs = torchattacks.PGD(ensemble, eps=0.05, alpha=0.01, steps=3, random_start=False)(x, y)
    _close(pgd(ensemble, x, y, 0.05, 0.01, 3, random_start=False), theirs)
    with pytest.raises(ValueError, match="models"):
        Ensemble([])


def test_attacks_reject_bad_arguments(tiny_cnn, batch):
    x, y = batch
    with pytest.raises(ValueError, match="x must"):
        fgsm(tiny_cnn, x * 2, y, 0.1)
    with pytest.raises(ValueError, match="x must"):
        fgsm(tiny_cnn, x[0], y, 0.1)
    with pytest.raises(ValueError, match="y must"):
        fgsm(tiny_cnn, x, y[:3], 0.1)
    with pytest.raises(ValueError, match="eps"):
        pgd(tiny_cnn, x, y, -0.1, 0.01, 3)
    with pytest.raises(ValueError, match="alpha"):
        ifgsm(tiny_cnn, x, y, 0.1, 0.0, 3)
    with pytest.raises(ValueError, match="steps"):
        mifgsm(tiny_cnn, x, y, 0.1, 0.01, 0)
    with pytest.raises(ValueError, match="norm"):
        pgd(tiny_cnn, x, y, 0.1, 0.01, 3, norm="l1")
    with pytest.raises(ValueError, match="eot_samples"):
        loss_gradient(tiny_cnn, x, y, eot_samples=0)
    with pytest.raises(ValueError, match="diversity_prob"):
        mifgsm(tiny_cnn, x, y, 0.1, 0.01, 3, diversity_prob=1.5)
    with pytest.raises(ValueError, match="resize_rate"):
        input_diversity(torch.rand(1, 1, 4, 4), resize_rate=1.1)
    with pytest.raises(ValueError, match="num_classes"):
        deepfool(tiny_cnn, x, num_classes=1)
    for bad in (-1, 1, 4):
        with pytest.raises(ValueError, match="ti_kernel"):
            mifgsm(tiny_cnn, x, y, 0.1, 0.01, 3, ti_kernel=bad)
    with pytest.raises(ValueError, match="ti_sigma"):
        mifgsm(tiny_cnn, x, y, 0.1, 0.01, 3, ti_kernel=3, ti_sigma=0.0)
    with pytest.raises(ValueError, match="variance_samples"):
        mifgsm(tiny_cnn, x, y, 0.1, 0.01, 3, variance_samples=-1)
    with pytest.raises(ValueError, match="variance_bound"):
        mifgsm(tiny_cnn, x, y, 0.1, 0.01, 3, variance_samples=2, variance_bound=0.0)
    with pytest.raises(ValueError, match="scales"):
        mifgsm(tiny_cnn, x, y, 0.1, 0.01, 3, scales=0)
    with pytest.raises(ValueError, match="size must be odd"):
        gaussian_kernel(4, 1.0)
