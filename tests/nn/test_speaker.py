"""Speaker modules: pooling invariances, AM-softmax against its equation in numpy, the x-vector TDNN's context
and padding invariance, and the HW4 classifier's configurations (float64, seeded, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepnotes.nn.attention import padding_mask
from deepnotes.nn.speaker import (
    TDNN,
    AMSoftmax,
    MeanPooling,
    SelfAttentionPooling,
    SpeakerClassifier,
    masked_mean,
    statistics_pooling,
)

DT = torch.float64


def _x(N=2, T=6, C=4, seed=0):
    return torch.randn(N, T, C, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _perturb(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return module


def _pad_with_garbage(x, extra, value=1e3):
    return torch.cat([x, value * torch.ones(x.shape[0], extra, x.shape[2], dtype=x.dtype)], dim=1)


# ------------------------------------------------------------------------------------------- pooling
def test_mean_pooling_ignores_padding():
    x = _x(1, 5, 3)
    out = MeanPooling()(_pad_with_garbage(x, 4), key_padding_mask=padding_mask([5], 9))
    torch.testing.assert_close(out, x.mean(dim=1))
    assert masked_mean(torch.ones(1, 2, 3, dtype=DT), padding_mask([0], 2)).abs().sum() == 0  # no frame: zeros


def test_self_attention_pooling_equation_and_padding():
    pool = _perturb(SelfAttentionPooling(3).to(DT))
    x = _x(1, 5, 3)
    e = (x[0] @ pool.score.weight[0] + pool.score.bias).detach().numpy()  # (T,) v^T x_t + b
    w = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
    torch.testing.assert_close(pool(x)[0], torch.from_numpy(w @ x[0].numpy()))
    padded = pool(_pad_with_garbage(x, 3), key_padding_mask=padding_mask([5], 8))
    torch.testing.assert_close(padded, pool(x))
    w_pad = pool.weights(_pad_with_garbage(x, 3), key_padding_mask=padding_mask([5], 8))
    assert torch.all(w_pad[0, 5:] == 0)
    torch.testing.assert_close(w_pad.sum(-1), torch.ones(1, dtype=DT))


def test_self_attention_pooling_with_equal_scores_is_the_mean():
    pool = SelfAttentionPooling(3).to(DT)
    with torch.no_grad():
        pool.score.weight.zero_()
        pool.score.bias.fill_(0.7)
    x = _x(2, 6, 3)
    kpm = padding_mask([6, 2])
    torch.testing.assert_close(pool(x, kpm), MeanPooling()(x, kpm))
    assert not torch.allclose(pool(x, kpm)[1], x[1].mean(0))  # the padded row is not the plain mean
    empty = pool(x, padding_mask([6, 0], 6))
    assert torch.isfinite(empty).all() and empty[1].abs().sum() == 0


def test_pooling_rejects_bad_masks():
    with pytest.raises(ValueError, match="key_padding_mask"):
        MeanPooling()(_x(2, 5, 3), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(N, T, 3\)"):
        SelfAttentionPooling(3)(_x(2, 5, 4))


def test_statistics_pooling_against_numpy():
    x = _x(2, 7, 3)
    out = statistics_pooling(x, padding_mask([7, 4]))
    for n, L in enumerate((7, 4)):
        a = x[n, :L].numpy()
        expected = np.concatenate([a.mean(0), a.std(0)])  # numpy std: biased (ddof=0)
        np.testing.assert_allclose(out[n].numpy(), expected, rtol=1e-12)
    const = statistics_pooling(torch.ones(1, 4, 2, dtype=DT, requires_grad=True))
    assert const[0, 2:].tolist() == pytest.approx([1e-5 ** 0.5] * 2)  # the variance floor


# ------------------------------------------------------------------------------------------ AM-softmax
def test_am_softmax_against_the_equation():
    torch.manual_seed(0)
    head = AMSoftmax(4, 5, margin=0.3, scale=10.0).to(DT)
    emb = _x(1, 6, 4)[0]  # (6, 4)
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    E, W = emb.numpy(), head.weight.detach().numpy()
    cos = (E / np.linalg.norm(E, axis=1, keepdims=True)) @ (W / np.linalg.norm(W, axis=1, keepdims=True)).T
    expected = 10.0 * cos
    expected[np.arange(6), labels.numpy()] -= 10.0 * 0.3  # s (cos θ_y - m)
    torch.testing.assert_close(head(emb, labels), torch.from_numpy(expected))
    torch.testing.assert_close(head(emb), torch.from_numpy(10.0 * cos))  # no labels: no margin
    loss = F.cross_entropy(head(emb, labels), labels)
    assert loss > F.cross_entropy(head(emb), labels)  # the margin makes the true class harder


def test_am_softmax_without_margin_is_a_scaled_cosine_classifier():
    head = AMSoftmax(4, 3, margin=0.0, scale=7.0).to(DT)
    emb, labels = _x(1, 5, 4)[0], torch.tensor([0, 1, 2, 1, 0])
    cosine = F.normalize(emb, dim=-1) @ F.normalize(head.weight, dim=-1).T
    torch.testing.assert_close(head(emb, labels), 7.0 * cosine)
    torch.testing.assert_close(head(3.0 * emb), head(emb))  # only the direction of an embedding matters


def test_am_softmax_errors():
    with pytest.raises(ValueError, match="margin"):
        AMSoftmax(4, 3, margin=-0.1)
    with pytest.raises(ValueError, match="scale"):
        AMSoftmax(4, 3, scale=0.0)
    head = AMSoftmax(4, 3)
    with pytest.raises(ValueError, match="labels"):
        head(torch.randn(2, 4), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        head(torch.randn(2, 5))


# ------------------------------------------------------------------------------------------------ TDNN
def _tdnn():
    return _perturb(TDNN(n_mels=3, num_classes=4, channels=6, stats_channels=8, embed_dim=5).to(DT)).eval()


def test_tdnn_shapes():
    model = _tdnn()
    x = _x(2, 20, 3)
    assert model.embed(x).shape == (2, 5)
    assert model(x).shape == (2, 4)
    torch.testing.assert_close(model(x), model.output(model.segment7(model.embed(x))))
    with pytest.raises(ValueError, match=r"\(N, T, 3\)"):
        model(_x(2, 20, 4))
    with pytest.raises(ValueError, match=">= 1"):
        TDNN(channels=0)


def test_tdnn_frame_context_is_plus_minus_seven():
    """Frame layers 1-3 see t-2..t+2, then ±2, then ±3: frame 5 of layer 5 depends on inputs 5-7 .. 5+7 only."""
    model = _tdnn()
    frames = []

    def keep(module, args, out):
        frames.append(out)

    handle = model.frame_norms[-1].register_forward_hook(keep)
    x = _x(1, 30, 3)
    x2 = x.clone()
    x2[:, 22] += torch.tensor([1.0, -1.0, 2.0], dtype=DT)
    model.embed(x), model.embed(x2)
    handle.remove()
    changed = ((frames[1] - frames[0]).abs().sum(dim=(0, 1)) > 1e-12).nonzero().flatten().tolist()
    assert changed == list(range(15, 30))  # 22 - 7 .. 22 + 7 (clipped at T - 1 = 29)


def test_tdnn_padding_invariance():
    model = _tdnn()
    a, b = _x(1, 9, 3, seed=1), _x(1, 14, 3, seed=2)
    batch = torch.cat([_pad_with_garbage(a, 5), b])
    out = model.embed(batch, padding_mask([9, 14]))
    torch.testing.assert_close(out[0], model.embed(a)[0])
    torch.testing.assert_close(out[1], model.embed(b)[0])


# --------------------------------------------------------------------------------- SpeakerClassifier
CONFIGS = [(enc, pool, head) for enc in ("transformer", "conformer") for pool in ("mean", "attention")
           for head in ("linear", "mlp", "am-softmax")]


@pytest.mark.parametrize("encoder, pooling, head", CONFIGS)
def test_speaker_classifier_configs(encoder, pooling, head):
    torch.manual_seed(0)
    model = SpeakerClassifier(7, n_mels=5, d_model=8, encoder=encoder, num_layers=2, n_heads=2, dim_feedforward=16,
                              ff_mult=2, kernel_size=3, pooling=pooling, head=head).to(DT)
    x, labels, kpm = _x(3, 10, 5), torch.tensor([0, 6, 3]), padding_mask([10, 6, 8])
    model.train()
    logits = model(x, kpm, labels=labels)
    assert logits.shape == (3, 7)
    F.cross_entropy(logits, labels).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model.embed(x, kpm).shape == (3, 8)
        # padding invariance through the whole model: utterance 1 alone equals utterance 1 in the batch
        torch.testing.assert_close(model(x[1:2, :6]), model(x, kpm)[1:2])
        if head == "am-softmax":
            assert not torch.allclose(model(x, kpm, labels=labels), model(x, kpm))  # the margin is applied


def test_speaker_classifier_rejects_unknown_choices():
    with pytest.raises(ValueError, match="encoder must be one of 'transformer', 'conformer'"):
        SpeakerClassifier(3, encoder="lstm")
    with pytest.raises(ValueError, match="pooling"):
        SpeakerClassifier(3, pooling="max")
    with pytest.raises(ValueError, match="head"):
        SpeakerClassifier(3, head="arcface")
    with pytest.raises(ValueError, match=r"\(N, T, 40\)"):
        SpeakerClassifier(3)(torch.randn(2, 10, 80))
