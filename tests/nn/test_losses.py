"""logsumexp, cross_entropy and mse_one_hot against torch: values, gradients, huge logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepnotes.nn import cross_entropy, log_softmax, logsumexp, mse_one_hot


def test_logsumexp_matches_torch_and_stays_finite():
    x = torch.randn(5, 7, dtype=torch.float64) * 10
    torch.testing.assert_close(logsumexp(x), torch.logsumexp(x, -1))
    torch.testing.assert_close(logsumexp(x, dim=0, keepdim=True), torch.logsumexp(x, 0, keepdim=True))
    big = torch.tensor([1e4, 1e4, -1e4])
    assert torch.log(torch.exp(big).sum()).isinf()  # the naive formula overflows
    torch.testing.assert_close(logsumexp(big), torch.tensor(1e4 + torch.log(torch.tensor(2.0)).item()))
    assert logsumexp(torch.full((3,), -float("inf"))).item() == -float("inf")


def test_logsumexp_gradient_is_softmax():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    logsumexp(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.softmax(x.detach(), -1))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_matches_torch_with_gradients(reduction, label_smoothing):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (8,), generator=g)
    za, zb = z.clone().requires_grad_(), z.clone().requires_grad_()
    la = cross_entropy(za, y, reduction=reduction, label_smoothing=label_smoothing)
    lb = F.cross_entropy(zb, y, reduction=reduction, label_smoothing=label_smoothing)
    torch.testing.assert_close(la, lb)
    w = torch.rand(lb.shape, generator=g, dtype=torch.float64)
    (la * w).sum().backward()
    (lb * w).sum().backward()
    torch.testing.assert_close(za.grad, zb.grad)


def test_cross_entropy_with_extra_dims_like_torch():
    z = torch.randn(2, 4, 3, 5)
    y = torch.randint(0, 4, (2, 3, 5))
    torch.testing.assert_close(cross_entropy(z, y, label_smoothing=0.2), F.cross_entropy(z, y, label_smoothing=0.2))


def test_cross_entropy_huge_logits_stay_finite():
    z = torch.tensor([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], requires_grad=True)
    y = torch.tensor([2, 0])
    loss = cross_entropy(z, y)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, F.cross_entropy(z.detach(), y))
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # the naive log(softmax) is -inf here
    assert torch.isinf(torch.log(torch.softmax(z.detach(), -1))).any()
    torch.testing.assert_close(log_softmax(z.detach()), F.log_softmax(z.detach(), -1))


def test_cross_entropy_hand_computed():
    z = torch.tensor([[0.0, 0.0]])
    torch.testing.assert_close(cross_entropy(z, torch.tensor([1])), torch.log(torch.tensor(2.0)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_one_hot_matches_mse_loss(reduction):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    za, zb = z.clone().requires_grad_(), z.clone().requires_grad_()
    la = mse_one_hot(za, y, 4, reduction=reduction)
    lb = F.mse_loss(torch.softmax(zb, -1), F.one_hot(y, 4).double(), reduction=reduction)
    torch.testing.assert_close(la, lb)
    la.sum().backward(), lb.sum().backward()
    torch.testing.assert_close(za.grad, zb.grad)
    p = torch.softmax(z, -1)
    torch.testing.assert_close(mse_one_hot(p, y, 4, from_logits=False, reduction=reduction),
                               F.mse_loss(p, F.one_hot(y, 4).double(), reduction=reduction))


def test_mse_gradient_vanishes_where_cross_entropy_does_not():
    """The lecture's point: confidently wrong -> MSE's gradient ~0, cross-entropy's ~1."""
    z1 = torch.tensor([[10.0, -10.0]], requires_grad=True)
    z2 = z1.detach().clone().requires_grad_()
    y = torch.tensor([1])
    mse_one_hot(z1, y, 2).backward()
    cross_entropy(z2, y).backward()
    assert z1.grad.abs().max() < 1e-6 < 0.9 < z2.grad.abs().max()


def test_bad_inputs():
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), reduction="avg")
    with pytest.raises(ValueError, match="class indices"):
        cross_entropy(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="do not fit"):
        cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), label_smoothing=1.5)
    with pytest.raises(ValueError, match="expected logits"):
        mse_one_hot(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 4)


def test_reduce_loss_is_the_one_reduction_of_every_loss():
    from deepnotes.nn.losses import reduce_loss
    from deepnotes.nn.word2vec import reduce_loss as used_by_word2vec

    loss = torch.tensor([1.0, 2.0, 6.0])
    assert reduce_loss(loss, "mean") == 3.0 and reduce_loss(loss, "sum") == 9.0 and reduce_loss(loss, "none") is loss
    assert used_by_word2vec is reduce_loss
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        reduce_loss(loss, "avg")
