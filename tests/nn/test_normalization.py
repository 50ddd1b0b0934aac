"""BatchNorm1d/2d and LayerNorm from the equations against torch.nn: outputs, running stats, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepnotes.nn import BatchNorm1d, BatchNorm2d, LayerNorm

BN_CASES = [
    (BatchNorm1d, nn.BatchNorm1d, (16, 6)),
    (BatchNorm1d, nn.BatchNorm1d, (8, 6, 5)),
    (BatchNorm2d, nn.BatchNorm2d, (4, 6, 5, 3)),
]


def _pair(ours_cls, torch_cls, C, **kw):
    torch.manual_seed(0)
    a, b = ours_cls(C, **kw), torch_cls(C, **kw)
    if a.weight is not None:  # non-trivial affine parameters, the same in both
        with torch.no_grad():
            a.weight.copy_(torch.rand(C) + 0.5)
            a.bias.copy_(torch.randn(C))
        b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("ours_cls,torch_cls,shape", BN_CASES)
@pytest.mark.parametrize("kw", [{}, {"momentum": 0.3, "eps": 1e-3}, {"momentum": None}, {"affine": False}])
def test_batchnorm_train_then_eval_matches_torch(ours_cls, torch_cls, shape, kw):
    a, b = _pair(ours_cls, torch_cls, shape[1], **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # three training batches update the running estimates
        x = torch.randn(shape, generator=g) * 3 + 2
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = a(xa), b(xb)
        torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
        w = torch.randn(shape, generator=g)  # a random upstream gradient
        (ya * w).sum().backward()
        (yb * w).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
    if a.weight is not None:
        torch.testing.assert_close(a.weight.grad, b.weight.grad, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(a.bias.grad, b.bias.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(a.running_mean, b.running_mean)
    torch.testing.assert_close(a.running_var, b.running_var)  # unbiased variance in the running estimate
    assert int(a.num_batches_tracked) == int(b.num_batches_tracked) == 3
    a.eval(), b.eval()
    x = torch.randn(shape, generator=g)
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)


def test_batchnorm_hand_computed_case():
    bn = BatchNorm1d(1, eps=1e-12, momentum=0.5)
    x = torch.tensor([[1.0], [3.0]])  # mean 2, biased var 1, unbiased var 2
    torch.testing.assert_close(bn(x), torch.tensor([[-1.0], [1.0]]))
    torch.testing.assert_close(bn.running_mean, torch.tensor([1.0]))  # 0.5 * 0 + 0.5 * 2
    torch.testing.assert_close(bn.running_var, torch.tensor([1.5]))  # 0.5 * 1 + 0.5 * 2


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    a, b = _pair(BatchNorm2d, nn.BatchNorm2d, 3, track_running_stats=False)
    a.eval(), b.eval()
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)
    assert a.running_mean is None


def test_batchnorm_state_dict_is_interchangeable_with_torch():
    a, b = _pair(BatchNorm2d, nn.BatchNorm2d, 4)
    assert set(a.state_dict()) == set(b.state_dict())
    b.load_state_dict(a.state_dict())


def test_batchnorm_errors():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="channels"):
        BatchNorm2d(3)(torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match="4-D"):
        BatchNorm2d(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm1d(3, momentum=2.0)


@pytest.mark.parametrize("shape,norm", [((4, 7, 10), 10), ((3, 5, 4, 6), (4, 6))])
@pytest.mark.parametrize("kw", [{}, {"eps": 1e-3}, {"elementwise_affine": False}, {"bias": False}])
@pytest.mark.parametrize("use_fused", [False, True])
def test_layernorm_matches_torch(shape, norm, kw, use_fused):
    torch.manual_seed(0)
    a, b = LayerNorm(norm, **kw, use_fused=use_fused), nn.LayerNorm(norm, **kw)
    if a.weight is not None:
        with torch.no_grad():
            a.weight.copy_(torch.rand_like(a.weight) + 0.5)
            if a.bias is not None:
                a.bias.copy_(torch.randn_like(a.bias))
        b.load_state_dict(a.state_dict())
    x = torch.randn(shape) * 4 + 1
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = a(xa), b(xb)
    torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
    w = torch.randn(shape)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-4, rtol=1e-5)
    a.eval(), b.eval()  # no running statistics: eval equals train
    torch.testing.assert_close(a(x), ya.detach())


def test_layernorm_rejects_wrong_trailing_shape():
    with pytest.raises(ValueError, match="expects input ending in"):
        LayerNorm(8)(torch.randn(2, 7))
