"""The auto-encoder family (deepnotes.nn.autoencoder, .vae, .vq, .gumbel) against references and hand cases:
the closed-form KL against torch.distributions, reparameterization's moments and gradients, the nearest code against
a brute-force search, the straight-through gradient, the commitment loss and an EMA step by hand, perplexity,
Gumbel-softmax in distribution against torch's and against the softmax probabilities, the straight-through sample,
and the relaxed gradient against a REINFORCE estimate."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from deepnotes.nn.autoencoder import Autoencoder, ConvDecoder, ConvEncoder, bernoulli_nll, corrupt, squared_error
from deepnotes.nn.gumbel import GumbelVAE, categorical_kl_uniform, gumbel_softmax, tau_schedule
from deepnotes.nn.vae import VAE, gaussian_kl, reparameterize
from deepnotes.nn.vq import VQVAE, VectorQuantizer, nearest_code, perplexity


# ------------------------------------------------------------------------------------------- conv nets, AE, DAE
def test_encoder_decoder_shapes_and_errors():
    x = torch.rand(3, 1, 28, 28)
    assert ConvEncoder(7, width=4, hidden=8)(x).shape == (3, 7)
    assert ConvDecoder(7, width=4, hidden=8)(torch.randn(3, 7)).shape == (3, 1, 28, 28)
    assert Autoencoder(5, width=4, hidden=8)(x).shape == (3, 1, 28, 28)
    assert ConvEncoder(2, in_channels=3, image_size=32, width=4, hidden=8)(torch.rand(2, 3, 32, 32)).shape == (2, 2)
    with pytest.raises(ValueError, match="image_size must be a positive multiple of 4"):
        ConvEncoder(4, image_size=30)
    with pytest.raises(ValueError, match="width must be >= 1"):
        Autoencoder(4, width=0)


def test_bernoulli_nll_and_squared_error_match_torch():
    logits, x = torch.randn(4, 1, 5, 5), torch.rand(4, 1, 5, 5)
    ref = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(bernoulli_nll(logits, x), ref, atol=1e-4)
    assert torch.allclose(squared_error(logits, x), ((torch.sigmoid(logits) - x) ** 2).mean((1, 2, 3)))
    with pytest.raises(ValueError, match="same shape"):
        bernoulli_nll(logits, x[:, :, :4])


def test_masking_noise_rate_seeded_and_gaussian_clipped():
    x = torch.ones(20, 1, 28, 28)
    a = corrupt(x, "mask", 0.25, torch.Generator().manual_seed(0))
    b = corrupt(x, "mask", 0.25, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)  # the same generator state, the same noise (exact resumption)
    assert abs(float((a == 0).float().mean()) - 0.25) < 0.01
    g = corrupt(torch.full((1000,), 0.5), "gaussian", 0.1, torch.Generator().manual_seed(1))
    assert g.min() >= 0 and g.max() <= 1 and abs(float(g.std()) - 0.1) < 0.01
    with pytest.raises(ValueError, match="kind must be"):
        corrupt(x, "salt")
    with pytest.raises(ValueError, match="level must be in"):
        corrupt(x, "mask", 1.5)


# ------------------------------------------------------------------------------------------------- VAE
def test_gaussian_kl_equals_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(gaussian_kl(mu, logvar), ref, atol=1e-5)
    assert torch.equal(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        gaussian_kl(mu, logvar[:, :4])


def test_reparameterize_moments_and_gradients():
    mu = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(4.0), math.log(0.25)], requires_grad=True)
    n = 40000
    z = reparameterize(mu.expand(n, 3), logvar.expand(n, 3), torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), mu.detach(), atol=0.03)
    assert torch.allclose(z.var(0), torch.tensor([1.0, 4.0, 0.25]), rtol=0.03)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.full((3,), float(n)))  # dz/dmu = 1 per draw
    eps = (z.detach() - mu.detach()) / torch.exp(0.5 * logvar.detach())
    assert torch.allclose(logvar.grad, (0.5 * eps * torch.exp(0.5 * logvar.detach())).sum(0), rtol=1e-4)
    again = reparameterize(mu.detach(), logvar.detach(), torch.Generator().manual_seed(3))
    assert torch.equal(again, reparameterize(mu.detach(), logvar.detach(), torch.Generator().manual_seed(3)))


def test_vae_loss_terms_are_the_negative_elbo():
    torch.manual_seed(0)
    vae = VAE(latent_dim=3, width=4, hidden=8)
    x = torch.rand(5, 1, 28, 28)
    t = vae.loss_terms(x, generator=torch.Generator().manual_seed(1))
    mu, logvar = vae.encode(x)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    assert torch.allclose(t["nll"], bernoulli_nll(vae.decode(z), x), atol=1e-4)
    assert torch.allclose(t["loss"], t["nll"] + gaussian_kl(mu, logvar), atol=1e-4)
    neg = vae.negative_elbo(x, torch.Generator().manual_seed(1))
    assert torch.allclose(neg, t["loss"], atol=1e-4)  # one sample, the same draw
    with pytest.raises(ValueError, match="beta must be >= 0"):
        VAE(beta=-1)
    with pytest.raises(ValueError, match="samples must be >= 1"):
        vae.negative_elbo(x, samples=0)


# ------------------------------------------------------------------------------------------------- VQ
def test_nearest_code_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(4, 7, 5, generator=g), torch.randn(11, 5, generator=g)
    brute = torch.tensor([[min(range(11), key=lambda k: float(((v - codebook[k]) ** 2).sum())) for v in row]
                          for row in z])
    assert torch.equal(nearest_code(z, codebook), brute)
    with pytest.raises(ValueError, match="code_dim"):
        nearest_code(z, codebook[:, :4])


def test_quantizer_forward_is_the_code_and_gradient_is_identity():
    vq = VectorQuantizer(num_codes=8, code_dim=3, commitment_cost=0.25)
    z_e = torch.randn(2, 4, 3, requires_grad=True)
    out = vq(z_e)
    assert torch.allclose(out.quantized, vq.codebook[out.codes])  # forward: z_q
    w = torch.randn(2, 4, 3)
    (out.quantized * w).sum().backward()
    assert torch.allclose(z_e.grad, w)  # straight-through: d quantized / d z_e = I


def test_commitment_and_codebook_loss_hand_case():
    vq = VectorQuantizer(num_codes=2, code_dim=2, commitment_cost=0.5)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    z_e = torch.tensor([[0.2, -0.1], [0.7, 1.4]], requires_grad=True)
    out = vq(z_e)
    assert out.codes.tolist() == [0, 1]
    expected = torch.tensor([0.2 ** 2 + 0.1 ** 2, 0.3 ** 2 + 0.4 ** 2])
    assert torch.allclose(out.commitment_loss, expected) and torch.allclose(out.codebook_loss, expected)
    assert torch.allclose(out.loss, expected * 1.5)
    out.loss.sum().backward()
    # the commitment term pulls z_e to its code (0.5 * 2 (z_e - e)); the codebook term pulls the code to z_e
    assert torch.allclose(z_e.grad, 0.5 * 2 * (z_e.detach() - torch.tensor([[0.0, 0.0], [1.0, 1.0]])))
    assert torch.allclose(vq.codebook.grad, -2 * (z_e.detach() - vq.codebook.detach()))


def test_ema_update_against_a_hand_computation():
    vq = VectorQuantizer(num_codes=3, code_dim=2, ema=True, decay=0.9, eps=1e-5)
    e0 = torch.tensor([[0.0, 0.0], [4.0, 4.0], [-5.0, 5.0]])
    vq.codebook.copy_(e0)
    vq.ema_sum.copy_(e0)
    z = torch.tensor([[0.5, 0.1], [-0.3, 0.3], [3.0, 5.0]])  # codes 0, 0, 1; code 2 unused
    vq.train()
    out = vq(z)
    assert out.codes.tolist() == [0, 0, 1]
    N = 0.9 * torch.ones(3) + 0.1 * torch.tensor([2.0, 1.0, 0.0])
    m = 0.9 * e0 + 0.1 * torch.stack([z[0] + z[1], z[2], torch.zeros(2)])
    n = N.sum()
    smoothed = (N + 1e-5) / (n + 3 * 1e-5) * n
    assert torch.allclose(vq.ema_cluster_size, N)
    assert torch.allclose(vq.codebook, m / smoothed[:, None], atol=1e-6)
    assert torch.allclose(out.loss, 0.25 * out.commitment_loss)  # no codebook term in EMA mode
    assert not isinstance(vq.codebook, torch.nn.Parameter)
    vq.eval()
    before = vq.codebook.clone()
    vq(z)
    assert torch.equal(vq.codebook, before)  # evaluation leaves the codebook alone


def test_perplexity_hand_cases():
    assert float(perplexity(torch.arange(8).repeat(3), 8)) == pytest.approx(8.0)
    assert float(perplexity(torch.full((10,), 2), 5)) == pytest.approx(1.0)
    assert float(perplexity(torch.tensor([0, 0, 1, 1]), 4)) == pytest.approx(2.0)
    assert float(perplexity(torch.tensor([0, 0, 0, 1]), 2)) == pytest.approx(math.exp(-(0.75 * math.log(0.75)
                                                                                          + 0.25 * math.log(0.25))))
    with pytest.raises(ValueError, match="at least one code"):
        perplexity(torch.tensor([], dtype=torch.long), 4)


def test_quantizer_errors():
    with pytest.raises(ValueError, match="decay must be in"):
        VectorQuantizer(decay=1.0)
    with pytest.raises(ValueError, match="commitment_cost"):
        VectorQuantizer(commitment_cost=-1)
    with pytest.raises(ValueError, match="eps must be > 0"):
        VectorQuantizer(eps=0)
    with pytest.raises(ValueError, match="must equal code_dim"):
        VectorQuantizer(4, 3)(torch.randn(2, 5))


def test_vqvae_terms_and_ema_training_moves_codes_not_by_gradient():
    torch.manual_seed(0)
    model = VQVAE(num_latents=4, num_codes=8, code_dim=3, width=4, hidden=8, ema=True)
    x = torch.rand(6, 1, 28, 28)
    t = model.loss_terms(x)
    assert t["codes"].shape == (6, 4) and t["loss"].shape == (6,)
    assert torch.allclose(t["negative_elbo"], t["nll"] + 4 * math.log(8))
    assert torch.allclose(t["loss"], t["nll"] + 0.25 * t["commitment"])
    assert "quantizer.codebook" not in dict(model.named_parameters())


# ------------------------------------------------------------------------------------------- Gumbel-softmax
def test_hard_gumbel_softmax_frequencies_match_the_softmax_probabilities():
    logits = torch.tensor([1.0, 0.0, -1.0, 0.5])
    p = torch.softmax(logits, -1)
    n = 20000
    y = gumbel_softmax(logits.expand(n, 4), tau=0.7, hard=True, generator=torch.Generator().manual_seed(0))
    assert torch.all(y.sum(-1) == 1) and torch.all((y == 0) | (y == 1))
    counts = y.sum(0)
    chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert chi2 < 16.27  # chi-square, 3 degrees of freedom, p = 0.001


def test_soft_gumbel_softmax_matches_torch_in_distribution():
    logits = torch.tensor([0.3, -1.2, 2.0])
    n = 20000
    ours = gumbel_softmax(logits.expand(n, 3), tau=0.5, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    ref = F.gumbel_softmax(logits.expand(n, 3), tau=0.5)
    assert torch.allclose(ours.sum(-1), torch.ones(n), atol=1e-5)
    assert torch.allclose(ours.mean(0), ref.mean(0), atol=0.015)  # the same law: equal means
    assert torch.allclose(ours.pow(2).mean(0), ref.pow(2).mean(0), atol=0.015)  # and second moments
    # and not the law of another temperature (the check can fail)
    torch.manual_seed(2)
    hot = F.gumbel_softmax(logits.expand(n, 3), tau=5.0)
    assert (ours.pow(2).mean(0) - hot.pow(2).mean(0)).abs().max() > 0.1


def test_straight_through_forward_is_one_hot_and_gradient_is_the_soft_one():
    logits = torch.randn(5, 6, requires_grad=True)
    w = torch.randn(5, 6)
    hard = gumbel_softmax(logits, tau=0.8, hard=True, generator=torch.Generator().manual_seed(4))
    (hard * w).sum().backward()
    grad_hard = logits.grad.clone()
    logits.grad = None
    soft = gumbel_softmax(logits, tau=0.8, hard=False, generator=torch.Generator().manual_seed(4))
    (soft * w).sum().backward()
    assert torch.equal(hard.detach(), F.one_hot(soft.detach().argmax(-1), 6).float())
    assert torch.allclose(grad_hard, logits.grad)
    with pytest.raises(ValueError, match="tau must be > 0"):
        gumbel_softmax(logits, tau=0.0)


def test_relaxed_gradient_agrees_with_reinforce_at_low_temperature():
    """d/dtheta E_{z ~ Cat(softmax theta)}[f(z)] for f(z) = c . z: the exact value, REINFORCE's unbiased estimate,
    and the Gumbel-softmax pathwise estimate E[d/dtheta c . y_tau].

    The relaxed estimate is the gradient of E[c . y_tau], which is not E[c . z]: at a high temperature y_tau is
    pulled towards the simplex's centre (at tau -> inf every y is uniform and the gradient vanishes), so its
    gradient is biased; as tau -> 0, y_tau -> the one-hot z and the bias vanishes (at the cost of variance ~ 1/tau).
    """
    theta = torch.tensor([0.5, -0.3, 0.1])
    c = torch.tensor([1.0, 3.0, -2.0])
    p = torch.softmax(theta, -1)
    exact = p * (c - (p * c).sum())  # d/dtheta sum_k p_k c_k
    n = 200000
    g = torch.Generator().manual_seed(0)
    # REINFORCE: f(z) d/dtheta log p(z), with z the Gumbel-max sample, averaged
    z = gumbel_softmax(theta.expand(n, 3), hard=True, generator=g).detach()
    score = z - p  # d/dtheta log softmax(theta)_k = onehot(k) - p
    reinforce = ((z @ c)[:, None] * score).mean(0)
    assert torch.allclose(reinforce, exact, atol=0.03)

    def relaxed(tau: float) -> torch.Tensor:
        th = theta.clone().requires_grad_(True)
        y = gumbel_softmax(th.expand(n, 3), tau=tau, generator=torch.Generator().manual_seed(1))
        (y @ c).mean().backward()
        return th.grad

    low, high = relaxed(0.1), relaxed(2.0)
    assert torch.allclose(low, reinforce, atol=0.02) and torch.allclose(low, exact, atol=0.02)
    assert (high - exact).abs().max() > 3 * (low - exact).abs().max()  # the bias at a high temperature


def test_categorical_kl_to_uniform():
    logits = torch.randn(4, 7)
    q = torch.softmax(logits, -1)
    ref = kl_divergence(torch.distributions.Categorical(probs=q),
                        torch.distributions.Categorical(probs=torch.full((7,), 1 / 7)))
    assert torch.allclose(categorical_kl_uniform(logits), ref, atol=1e-5)
    assert torch.allclose(categorical_kl_uniform(torch.zeros(2, 5)), torch.zeros(2), atol=1e-6)


def test_tau_schedule_anneals_from_tau0_to_tau_min():
    taus = [tau_schedule(t, 100, 1.0, 0.5) for t in range(100)]
    assert taus[0] == 1.0 and taus[-1] == pytest.approx(0.5) and all(a > b for a, b in zip(taus, taus[1:]))
    with pytest.raises(ValueError, match="tau_min"):
        tau_schedule(0, 10, 0.5, 1.0)
    with pytest.raises(ValueError, match="total_steps"):
        tau_schedule(0, 0)


def test_gumbel_vae_terms_and_discrete_bound():
    torch.manual_seed(0)
    model = GumbelVAE(num_latents=3, categories=4, width=4, hidden=8, hard=True)
    x = torch.rand(5, 1, 28, 28)
    t = model.loss_terms(x, tau=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(t["loss"], t["nll"] + t["kl"])
    assert torch.all(t["kl"] >= 0) and torch.all(t["kl"] <= 3 * math.log(4) + 1e-5)
    assert model.code(x).shape == (5, 12)
    assert model.negative_elbo(x, torch.Generator().manual_seed(0), samples=2).shape == (5,)
    with pytest.raises(ValueError, match="categories >= 2"):
        GumbelVAE(categories=1)


def test_bernoulli_nll_reductions_keep_float64_and_read_uint8_targets():
    torch.manual_seed(0)
    logits = torch.randn(5, 1, 4, 4, dtype=torch.float64) * 3
    x = (torch.rand(5, 1, 4, 4) < 0.4).to(torch.float64)
    ref = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 5
    torch.testing.assert_close(bernoulli_nll(logits, x, "mean"), ref)
    log_p = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)  # (B,)
    torch.testing.assert_close(bernoulli_nll(logits, x, "none"), -log_p)
    torch.testing.assert_close(bernoulli_nll(logits, x, "sum"), -log_p.sum())
    assert bernoulli_nll(logits, x.to(torch.uint8), "mean").item() == pytest.approx(ref.item())
    with pytest.raises(ValueError, match="reduction must be"):
        bernoulli_nll(logits, x, "avg")
