"""CBOW + negative sampling from the equations: loss vs BCE-with-logits, gradcheck, noise and subsampling formulas,
windows within segments, neighbours/analogies, a tiny corpus where two interchangeable words end up nearest, the
training task, and the word2vec training pattern resumed after a kill equal to an uninterrupted run.

The fast path (word2vec's SGD, :func:`cbow_sgd_step`): its loss equals CBOW's forward pass, its step with the exact
gradient equals ``torch.optim.SGD`` on CBOW's summed loss through autograd, its default (the C code's) context update
equals a per-example reference, shared noise words equal the same rows given to every example; the alias sampler's
implied distribution equals its input; the batch source's random window and shared noise words."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from deepnotes.train import TrainConfig, Trainer
from deepnotes.train.batches import ChunkedBatches
from deepnotes.train.task import Step
from deepnotes.train.checkpoint import list_checkpoints
from deepnotes.data.text import CBOWBatches
from deepnotes.metrics.curves import LossCurve
from deepnotes.models.registry import create_model
from deepnotes.nn.word2vec import (
    CBOW,
    NegativeSamplingTask,
    alias_table,
    analogy,
    cbow_hogwild_steps,
    cbow_loss,
    cbow_sgd_step,
    cbow_windows,
    cosine_neighbours,
    negative_sampling_loss,
    noise_distribution,
    sample_alias,
    sample_negatives,
    subsample_keep_prob,
    word2vec_lr,
)


def _batch(g, B=6, C=2, Q=3, W=11):
    context = torch.randint(W, (B, 2 * C), generator=g)
    mask = torch.rand(B, 2 * C, generator=g) < 0.7
    mask[:, 0] = True  # every example has at least one neighbour
    target = torch.randint(W, (B,), generator=g)
    negatives = torch.randint(W, (B, Q), generator=g)
    return context, mask, target, negatives


def test_loss_equals_binary_cross_entropy_with_logits():
    g = torch.Generator().manual_seed(0)
    B, D, Q = 7, 5, 4
    h, m_pos, m_neg = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g), torch.randn(B, Q, D, generator=g)
    # reference: labels 1 for the true word, 0 for each noise word, BCE summed over the Q + 1 logits
    logits = torch.cat([(m_pos * h).sum(-1, keepdim=True), torch.einsum("bqd,bd->bq", m_neg, h)], 1)  # (B, 1 + Q)
    labels = torch.cat([torch.ones(B, 1), torch.zeros(B, Q)], 1)
    ref = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(1)  # (B,)
    torch.testing.assert_close(negative_sampling_loss(h, m_pos, m_neg, reduction="none"), ref)
    torch.testing.assert_close(negative_sampling_loss(h, m_pos, m_neg), ref.mean())
    torch.testing.assert_close(negative_sampling_loss(h, m_pos, m_neg, reduction="sum"), ref.sum())


def test_loss_hand_computed_case():
    h = torch.tensor([[1.0, 2.0]])
    m_pos = torch.tensor([[0.5, 0.0]])  # score 0.5
    m_neg = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])  # scores 2, -1
    expected = math.log(1 + math.exp(-0.5)) + math.log(1 + math.exp(2.0)) + math.log(1 + math.exp(-1.0))
    assert negative_sampling_loss(h, m_pos, m_neg).item() == pytest.approx(expected, rel=1e-6)


def test_cbow_forward_matches_independent_computation():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = CBOW(11, 4)
    with torch.no_grad():
        model.M.weight.normal_(generator=g)  # M starts at 0: give it values so the test can fail
    context, mask, target, negatives = _batch(g)
    E, M = model.E.weight.detach(), model.M.weight.detach()
    expected = []
    for b in range(len(target)):  # one example at a time, from the lecture's formula
        h = torch.stack([E[int(k)] for k, m in zip(context[b], mask[b]) if m]).mean(0)
        loss = -F.logsigmoid(M[target[b]] @ h) - sum(F.logsigmoid(-(M[n] @ h)) for n in negatives[b])
        expected.append(loss)
    torch.testing.assert_close(model(context, target, negatives, mask, reduction="none"), torch.stack(expected))
    # no mask: the plain average over all 2C neighbours
    h_all = E[context].mean(1)
    torch.testing.assert_close(model.context_vector(context), h_all)
    torch.testing.assert_close(model.scores(context, negatives, mask),
                               torch.einsum("bqd,bd->bq", M[negatives], model.context_vector(context, mask)))


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    context, mask, target, negatives = _batch(g, B=4, C=2, Q=2)
    E0, M0 = torch.randn(11, 3, generator=g).double(), torch.randn(11, 3, generator=g).double()

    def loss_of(E, M):
        h = (F.embedding(context, E) * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        return negative_sampling_loss(h, F.embedding(target, M), F.embedding(negatives, M))

    assert torch.autograd.gradcheck(loss_of, (E0.requires_grad_(), M0.requires_grad_()))
    # the module's own gradients equal those of the functional form
    fresh = CBOW(11, 3).double()
    fresh.load_state_dict({"E.weight": E0.detach(), "M.weight": M0.detach()})
    fresh(context, target, negatives, mask).backward()
    E1, M1 = E0.detach().clone().requires_grad_(), M0.detach().clone().requires_grad_()
    loss_of(E1, M1).backward()
    torch.testing.assert_close(fresh.E.weight.grad, E1.grad)
    torch.testing.assert_close(fresh.M.weight.grad, M1.grad)


def test_sparse_gradients_equal_dense():
    g = torch.Generator().manual_seed(3)
    context, mask, target, negatives = _batch(g)
    dense, sparse = CBOW(11, 4), CBOW(11, 4, sparse=True)
    with torch.no_grad():
        dense.M.weight.normal_(generator=g)
    sparse.load_state_dict(dense.state_dict())
    dense(context, target, negatives, mask).backward()
    sparse(context, target, negatives, mask).backward()
    assert sparse.E.weight.grad.is_sparse
    torch.testing.assert_close(sparse.E.weight.grad.to_dense(), dense.E.weight.grad)
    torch.testing.assert_close(sparse.M.weight.grad.to_dense(), dense.M.weight.grad)


def test_untrained_loss_is_one_plus_q_log_2():
    g = torch.Generator().manual_seed(4)
    context, mask, target, negatives = _batch(g, Q=5)
    model = CBOW(11, 8)
    assert model.M.weight.abs().max() == 0 and model.E.weight.abs().max() <= 0.5 / 8
    assert model(context, target, negatives, mask).item() == pytest.approx(6 * math.log(2))


def test_noise_distribution_is_normalised_counts_power():
    counts = torch.tensor([16, 81, 1, 0, 256])
    p = noise_distribution(counts)
    assert p.dtype == torch.float64
    assert p.sum().item() == pytest.approx(1.0)
    expected = torch.tensor([8.0, 27.0, 1.0, 0.0, 64.0])  # count^0.75
    torch.testing.assert_close(p, expected.double() / expected.sum())
    torch.testing.assert_close(noise_distribution(counts, power=1.0), counts.double() / counts.sum())
    torch.testing.assert_close(noise_distribution(counts, power=0.0), torch.tensor([.25, .25, .25, 0, .25]).double())
    with pytest.raises(ValueError, match="non-negative"):
        noise_distribution(torch.tensor([1, -1]))
    with pytest.raises(ValueError, match="power"):
        noise_distribution(counts, power=-1)
    with pytest.raises(ValueError, match="1-D"):
        noise_distribution(torch.ones(2, 2))


def test_sample_negatives_follows_the_distribution():
    noise = noise_distribution(torch.tensor([16, 81, 1, 0, 256]))
    draws = sample_negatives(noise, (400, 50), torch.Generator().manual_seed(0))
    assert draws.shape == (400, 50) and draws.dtype == torch.long
    freq = torch.bincount(draws.flatten(), minlength=5).double() / draws.numel()
    assert freq[3] == 0  # a word never seen is never drawn
    torch.testing.assert_close(freq, noise, atol=0.01, rtol=0)


def test_subsample_keep_prob_formula():
    counts = torch.tensor([500, 100, 1, 399])  # total 1000: f = 0.5, 0.1, 0.001, 0.399
    t = 1e-3
    keep = subsample_keep_prob(counts, t)
    for c, k in zip(counts.tolist(), keep.tolist()):
        f = c / 1000
        assert k == pytest.approx(min(1.0, (math.sqrt(f / t) + 1) * t / f))
    assert keep[2] == 1.0  # f = t: (1 + 1) t / f = 2, clipped
    assert keep[0] < keep[1] < keep[2]  # the more frequent, the more often dropped
    torch.testing.assert_close(subsample_keep_prob(counts, 0.0), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(subsample_keep_prob(torch.tensor([0, 5]), 1e-3)[0], torch.tensor(1.0).double())
    with pytest.raises(ValueError, match="t must be"):
        subsample_keep_prob(counts, -1.0)


def test_cbow_windows_stay_inside_segments():
    ids = torch.tensor([10, 11, 12, 13, 20, 30, 31])
    seg = torch.tensor([0, 0, 0, 0, 1, 2, 2])  # segment 1 has one word: no context, dropped
    ctx, mask, tgt = cbow_windows(ids, seg, window=2)
    assert tgt.tolist() == [10, 11, 12, 13, 30, 31]
    # columns: offsets -2, -1, +1, +2
    assert ctx.tolist() == [[0, 0, 11, 12], [0, 10, 12, 13], [10, 11, 13, 0], [11, 12, 0, 0],
                            [0, 0, 31, 0], [0, 30, 0, 0]]
    assert mask.tolist() == [[False, False, True, True], [False, True, True, True], [True, True, True, False],
                             [True, True, False, False], [False, False, True, False], [False, True, False, False]]
    with pytest.raises(ValueError, match="window"):
        cbow_windows(ids, seg, 0)


def test_cosine_neighbours_and_analogy():
    E = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [0.1, 0.9]])
    ids, sims = cosine_neighbours(E, torch.tensor([0, 2]), k=2)
    assert ids.tolist() == [[1, 4], [4, 1]]  # the word itself is excluded
    torch.testing.assert_close(sims[0, 0], F.cosine_similarity(E[0], E[1], dim=0).double())
    ref = F.cosine_similarity(E[2].unsqueeze(0), E, dim=1).double()
    torch.testing.assert_close(sims[1], ref[[4, 1]])
    # a : b :: c : ?   with the relation "rotate by 90 degrees": e0 -> e2, so e3 -> -e2 (none), nearest of b-a+c
    W = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    got = analogy(W, torch.tensor([0]), torch.tensor([1]), torch.tensor([2]), k=2)
    assert got[0, 0].item() == 3  # (0,1,0) - (1,0,0) + (1,0,1)/sqrt2 is nearest to (0,1,1)
    assert 0 not in got[0].tolist() and 1 not in got[0].tolist() and 2 not in got[0].tolist()
    with pytest.raises(ValueError, match="k must be"):
        cosine_neighbours(E, torch.tensor([0]), k=5)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="vocab_size"):
        CBOW(0, 4)
    with pytest.raises(ValueError, match="embedding_dim"):
        CBOW(4, 0)
    model = CBOW(5, 2)
    with pytest.raises(ValueError, match="at least one True"):
        model.context_vector(torch.zeros(2, 2, dtype=torch.long), torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="m_neg"):
        negative_sampling_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="reduction"):
        negative_sampling_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4, 3), reduction="avg")


def test_interchangeable_words_become_nearest_neighbours():
    # A synthetic corpus: words 0 and 1 ("cat", "tiger") appear in exactly the same contexts (words 2-5);
    # words 6-11 form their own contexts among themselves. After training, 1 is 0's nearest neighbour.
    g = torch.Generator().manual_seed(0)
    sentences = []
    for _ in range(300):
        pet = int(torch.randint(2, (1,), generator=g))
        a, b = torch.randint(2, 6, (2,), generator=g).tolist()
        sentences.append([a, pet, b])
        x, y, z = torch.randint(6, 12, (3,), generator=g).tolist()
        sentences.append([x, y, z])
    ids = torch.tensor([w for s in sentences for w in s])
    seg = torch.tensor([i for i, s in enumerate(sentences) for _ in s])
    ctx, mask, tgt = cbow_windows(ids, seg, window=1)
    counts = torch.bincount(ids, minlength=12)
    noise = noise_distribution(counts)
    torch.manual_seed(0)
    model = CBOW(12, 8)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for step in range(150):
        idx = torch.randint(len(tgt), (128,), generator=g)
        loss = model(ctx[idx], tgt[idx], sample_negatives(noise, (128, 4), g), mask[idx])
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first
    nb, _ = cosine_neighbours(model.E.weight.detach(), torch.tensor([0, 1]), k=1)
    assert nb.flatten().tolist() == [1, 0]


def test_task_steps_and_mean_loss():
    g = torch.Generator().manual_seed(5)
    batch = _batch(g, B=6, Q=3)
    context, mask, target, negatives = batch
    model = CBOW(11, 4)
    with torch.no_grad():
        model.M.weight.normal_(generator=g)
    task = NegativeSamplingTask(model)
    out = task.training_step(model, batch, None)
    mean = model(context, target, negatives, mask)
    assert torch.equal(out.loss, mean) and out.count == 6 and out.sums["loss"] == float(mean.detach()) * 6
    ev = task.evaluation_step(model, batch)
    assert ev.sums["loss"] == pytest.approx(float(mean.detach()) * 6, rel=1e-6) and ev.count == 6
    per_example = model(context, target, negatives, mask, reduction="none")
    two = [tuple(t[:2] for t in batch), tuple(t[2:] for t in batch)]
    assert task.mean_loss(two) == pytest.approx(float(per_example.detach().mean()), rel=1e-6)
    assert math.isnan(task.mean_loss([]))
    assert isinstance(task.configure_optimizers(TrainConfig(lr=0.01)), torch.optim.Adam)
    sparse = NegativeSamplingTask(CBOW(11, 4, sparse=True)).configure_optimizers(TrainConfig(lr=0.01))
    assert isinstance(sparse, torch.optim.SparseAdam)
    with pytest.raises(ValueError, match="update"):
        NegativeSamplingTask(model, update="adam")


def test_task_sgd_path_updates_as_cbow_sgd_step_and_evaluates_the_same_loss():
    g = torch.Generator().manual_seed(6)
    context, mask, target, negatives = _batch(g, B=8, Q=3)
    negatives = negatives[::4].repeat_interleave(4, 0)  # groups of 4 examples share their noise words
    model, copy = CBOW(11, 4), CBOW(11, 4)
    with torch.no_grad():
        model.M.weight.normal_(generator=g)
    copy.load_state_dict(model.state_dict())
    task = NegativeSamplingTask(model, update="sgd", shared_negatives=4)
    assert task.manual_optimization and not NegativeSamplingTask(copy).manual_optimization
    opt = task.configure_optimizers(TrainConfig(lr=0.01))
    assert isinstance(opt, torch.optim.SGD) and opt.state_dict()["state"] == {}
    readable = NegativeSamplingTask(copy).evaluation_step(copy, (context, mask, target, negatives))
    ev = task.evaluation_step(model, (context, mask, target, negatives))
    assert ev.count == 8 and ev.sums["loss"] == pytest.approx(readable.sums["loss"], rel=1e-5)
    out = task.training_step(model, (context, mask, target, negatives), Step(epoch=0, step=0, total_steps=1, lr=0.5))
    assert out.sums["loss"] == pytest.approx(readable.sums["loss"], rel=1e-5) and out.count == 8
    assert float(out.loss) == pytest.approx(out.sums["loss"] / 8)
    with torch.no_grad():
        cbow_sgd_step(copy.E.weight, copy.M.weight, context, mask, target, negatives[::4], 0.5, 4)
    assert torch.equal(model.E.weight, copy.E.weight) and torch.equal(model.M.weight, copy.M.weight)


# ----------------------------------------------------------------------------------- the fast path
def test_alias_table_implies_exactly_the_distribution():
    accept, alias = alias_table(torch.tensor([0.5, 0.25, 0.25]))
    assert accept.tolist() == [1.0, 0.75, 0.75] and alias.tolist() == [0, 0, 0]  # the docstring's example
    noise = noise_distribution(torch.tensor([16, 81, 1, 0, 256, 3, 3, 7000]))
    accept, alias = alias_table(noise)
    W = len(noise)
    # P(i) = (accept_i + sum over columns j aliased to i of (1 - accept_j)) / W
    implied = (accept + torch.zeros(W, dtype=torch.float64).index_add_(0, alias, 1 - accept)) / W
    torch.testing.assert_close(implied, noise, rtol=0, atol=1e-12)
    draws = sample_alias(accept, alias, (200, 100), torch.Generator().manual_seed(0))
    assert draws.shape == (200, 100) and draws.dtype == torch.long
    freq = torch.bincount(draws.flatten(), minlength=W).double() / draws.numel()
    assert freq[3] == 0  # a word never seen is never drawn
    torch.testing.assert_close(freq, noise, atol=0.005, rtol=0)
    again = sample_alias(accept, alias, (200, 100), torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)
    with pytest.raises(ValueError, match="sum to 1"):
        alias_table(torch.tensor([0.5, 0.6]))


def test_word2vec_lr_decays_linearly_to_a_floor():
    assert word2vec_lr(0, 100, 0.05) == 0.05
    assert word2vec_lr(50, 100, 0.05) == pytest.approx(0.025)
    assert word2vec_lr(99, 100, 0.05) == pytest.approx(0.0005)
    assert word2vec_lr(100, 100, 0.05) == pytest.approx(0.05 * 1e-4)  # the C code's floor
    with pytest.raises(ValueError, match="total_steps"):
        word2vec_lr(0, 0, 0.05)


def _trained_like(g, W=11, D=4):
    """A CBOW model whose M is not zero (the initial M = 0 would hide mistakes in the M-side formulas)."""
    model = CBOW(W, D)
    with torch.no_grad():
        model.E.weight.normal_(generator=g)
        model.M.weight.normal_(generator=g)
    return model.double()


@pytest.mark.parametrize("group", [1, 3, 6])
def test_cbow_loss_equals_the_readable_forward(group):
    g = torch.Generator().manual_seed(10)
    context, mask, target, negatives = _batch(g, B=7, Q=4)
    shared = negatives[::group]  # one row per group; the readable path gets it for every example of the group
    per_example = shared.repeat_interleave(group, 0)[:7]
    model = _trained_like(g)
    E, M = model.E.weight.detach(), model.M.weight.detach()
    torch.testing.assert_close(cbow_loss(E, M, context, mask, target, shared, group),
                               model(context, target, per_example, mask, reduction="none").detach())


@pytest.mark.parametrize("group", [1, 4])
def test_sgd_step_with_the_exact_gradient_equals_torch_sgd_on_the_summed_loss(group):
    g = torch.Generator().manual_seed(11)
    context, mask, target, negatives = _batch(g, B=9, Q=3)
    shared = negatives[::group]
    per_example = shared.repeat_interleave(group, 0)[:9]
    ref = _trained_like(g)
    fast = _trained_like(g)
    fast.load_state_dict(ref.state_dict())
    lr = 0.3
    opt = torch.optim.SGD(ref.parameters(), lr=lr)  # the readable path: autograd, then the optimizer's step
    loss = ref(context, target, per_example, mask, reduction="sum")
    loss.backward()
    opt.step()
    with torch.no_grad():
        E, M = fast.E.weight, fast.M.weight
        before = cbow_sgd_step(E, M, context, mask, target, shared, lr, group, context_update="gradient")
    torch.testing.assert_close(before.sum(), loss.detach())
    torch.testing.assert_close(fast.E.weight, ref.E.weight)
    torch.testing.assert_close(fast.M.weight, ref.M.weight)
    assert not torch.equal(fast.M.weight, _trained_like(torch.Generator().manual_seed(11)).M.weight)


def test_sgd_step_word2vec_rule_adds_the_error_vector_undivided():
    """The C code's update: each context word gets -lr dL/dh, i.e. n_b times its exact gradient; M as SGD."""
    g = torch.Generator().manual_seed(12)
    context, mask, target, negatives = _batch(g, B=6, Q=2)
    model = _trained_like(g)
    E0, M0 = model.E.weight.detach().clone(), model.M.weight.detach().clone()
    lr = 0.2
    E_ref, M_ref = E0.clone(), M0.clone()
    for b in range(6):  # one example at a time, all from the values before the step
        E1, M1 = E0.clone().requires_grad_(), M0.clone().requires_grad_()
        n_b = int(mask[b].sum())
        h = E1[context[b][mask[b]]].mean(0)
        loss = -F.logsigmoid(M1[target[b]] @ h) - F.logsigmoid(-(M1[negatives[b]] @ h)).sum()
        gE, gM = torch.autograd.grad(loss, (E1, M1))
        E_ref -= lr * n_b * gE
        M_ref -= lr * gM
    E, M = E0.clone(), M0.clone()
    cbow_sgd_step(E, M, context, mask, target, negatives, lr)
    torch.testing.assert_close(E, E_ref)
    torch.testing.assert_close(M, M_ref)


def test_sgd_step_errors_name_the_argument():
    g = torch.Generator().manual_seed(13)
    context, mask, target, negatives = _batch(g, B=4, Q=2)
    E, M = torch.zeros(11, 3), torch.zeros(11, 3)
    with pytest.raises(ValueError, match="context_update"):
        cbow_sgd_step(E, M, context, mask, target, negatives, 0.1, context_update="mean")
    with pytest.raises(ValueError, match="group"):
        cbow_sgd_step(E, M, context, mask, target, negatives, 0.1, group=0)
    with pytest.raises(ValueError, match=r"negatives must be \(ceil\(B / group\), Q\) = \(2, Q\)"):
        cbow_sgd_step(E, M, context, mask, target, negatives, 0.1, group=2)
    with pytest.raises(ValueError, match="target"):
        cbow_sgd_step(E, M, context, mask, target[:3], negatives, 0.1)
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(ValueError, match="at least one True"):
        cbow_sgd_step(E, M, context, empty, target, negatives, 0.1)


def test_interchangeable_words_become_nearest_neighbours_with_word2vec_sgd():
    """The tiny corpus of the test above, trained by the fast path: word2vec's SGD, linear decay, shared noise."""
    g = torch.Generator().manual_seed(0)
    sentences = []
    for _ in range(300):
        pet = int(torch.randint(2, (1,), generator=g))
        a, b = torch.randint(2, 6, (2,), generator=g).tolist()
        sentences.append([a, pet, b])
        x, y, z = torch.randint(6, 12, (3,), generator=g).tolist()
        sentences.append([x, y, z])
    ids = torch.tensor([w for s in sentences for w in s])
    seg = torch.tensor([i for i, s in enumerate(sentences) for _ in s])
    counts = torch.bincount(ids, minlength=12)
    batches = CBOWBatches(ids, seg, torch.ones(12, dtype=torch.float64), noise_distribution(counts), 1, 4, 64,
                          seed=0, shrink=True, share_negatives=4)
    model = create_model("cbow", vocab_size=12, embedding_dim=8, init_seed=0)
    total, k, losses = len(batches) * 15, 0, []
    for epoch in range(15):
        for context, mask, target, negatives in batches.epoch(epoch):
            loss = cbow_sgd_step(model.E.weight.data, model.M.weight.data, context, mask, target, negatives[::4],
                                 word2vec_lr(k, total, 0.05), group=4)
            losses.append(float(loss.mean()))
            k += 1
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10])
    nb, _ = cosine_neighbours(model.E.weight.detach(), torch.tensor([0, 1]), k=1)
    assert nb.flatten().tolist() == [1, 0]


def _disjoint_batches(n: int, W: int = 40, B: int = 32, C: int = 2, Q: int = 3) -> list[tuple]:
    """Batches whose words (context, target, noise) come from words 0..W/2-1 for even batches and W/2..W-1 for odd
    ones: with two workers (even and odd batches), no row is ever touched by both threads."""
    g, half, out = torch.Generator().manual_seed(21), W // 2, []
    for i in range(n):
        context, mask, target, negatives = _batch(g, B=B, C=C, Q=Q, W=half)
        shift = half * (i % 2)
        out.append((context + shift, mask, target + shift, negatives[::4].contiguous() + shift))
    return out


def test_hogwild_steps_one_worker_is_the_sequential_loop():
    batches = _disjoint_batches(5)
    E0 = torch.rand(40, 6, generator=torch.Generator().manual_seed(3)) - 0.5
    M0 = torch.rand(40, 6, generator=torch.Generator().manual_seed(4)) - 0.5
    E1, M1, E2, M2 = E0.clone(), M0.clone(), E0.clone(), M0.clone()
    expected = torch.cat([cbow_sgd_step(E1, M1, *b, 0.05, group=4) for b in batches])
    got = cbow_hogwild_steps(E2, M2, batches, 0.05, workers=1, group=4)
    assert torch.equal(got, expected) and torch.equal(E1, E2) and torch.equal(M1, M2)


@pytest.mark.parametrize("workers", [2, 3])
def test_hogwild_steps_without_shared_rows_equal_each_threads_sequence(workers):
    """When the threads' batches share no row there is no race: the result is each thread's batches applied in
    order, whatever the interleaving (the updates of different rows commute)."""
    batches = _disjoint_batches(8)
    E0 = torch.rand(40, 6, generator=torch.Generator().manual_seed(3)) - 0.5
    M0 = torch.rand(40, 6, generator=torch.Generator().manual_seed(4)) - 0.5
    E1, M1, E2, M2 = E0.clone(), M0.clone(), E0.clone(), M0.clone()
    if workers == 2:  # even batches and odd batches touch disjoint rows: compare with the sequential loop
        expected = torch.cat([cbow_sgd_step(E1, M1, *b, 0.05, group=4) for b in batches])
        got = cbow_hogwild_steps(E2, M2, batches, 0.05, workers=2, group=4)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        torch.testing.assert_close((E2, M2), (E1, M1), rtol=0, atol=0)
    else:  # three threads share rows: the losses still come back in batch order, and training moves the tables
        got = cbow_hogwild_steps(E2, M2, batches, 0.05, workers=3, group=4)
        assert got.shape == (sum(len(b[2]) for b in batches),) and torch.isfinite(got).all()
        assert not torch.equal(E2, E0) and not torch.equal(M2, M0)


def test_hogwild_steps_raise_a_workers_error_and_bad_worker_counts():
    batches = _disjoint_batches(4)
    E, M = torch.zeros(40, 6), torch.zeros(40, 6)
    bad = list(batches)
    bad[3] = (bad[3][0], bad[3][1], bad[3][2][:5], bad[3][3])  # a worker's batch with a wrong target length
    with pytest.raises(ValueError, match="target"):
        cbow_hogwild_steps(E, M, bad, 0.05, workers=2, group=4)
    with pytest.raises(ValueError, match="workers"):
        cbow_hogwild_steps(E, M, batches, 0.05, workers=0, group=4)
    with pytest.raises(ValueError, match="workers"):
        NegativeSamplingTask(create_model("cbow", vocab_size=40, embedding_dim=6), update="autograd", workers=2)


def test_chunked_batches_group_consecutive_batches():
    class Source:
        def __len__(self):
            return 7

        def epoch(self, epoch):
            return iter(range(10 * epoch, 10 * epoch + 7))

    chunks = ChunkedBatches(Source(), 3)
    assert len(chunks) == 3 and list(chunks.epoch(1)) == [[10, 11, 12], [13, 14, 15], [16]]
    with pytest.raises(ValueError, match="size"):
        ChunkedBatches(Source(), 0)


def test_cbow_batches_random_window_and_shared_noise_words():
    g = torch.Generator().manual_seed(14)
    ids = torch.randint(0, 30, (2000,), generator=g)
    seg = torch.arange(2000) // 25
    counts = torch.bincount(ids, minlength=30)
    keep, noise = subsample_keep_prob(counts, 0.01), noise_distribution(counts)
    full = CBOWBatches(ids, seg, keep, noise, 4, 5, 100, seed=2)
    shrunk = CBOWBatches(ids, seg, keep, noise, 4, 5, 100, seed=2, shrink=True, share_negatives=8)
    for (c0, m0, t0, n0), (c1, m1, t1, n1) in zip(full.epoch(1), shrunk.epoch(1), strict=True):
        assert torch.equal(t0, t1)  # the same targets in the same order (the same subsampling and shuffle)
        assert bool((m1 <= m0).all()) and bool(m1.any(1).all())  # a subset of the full window, never empty
        assert torch.equal(c1, c0 * m1)
        # the window is symmetric: the neighbours kept are those within a reach drawn in 1..C
        reach = torch.where(m1, (torch.arange(8) - 4 + (torch.arange(8) >= 4).long()).abs(), 0).amax(1)
        within = (torch.arange(8) - 4 + (torch.arange(8) >= 4).long()).abs() <= reach.unsqueeze(1)
        assert torch.equal(m1, m0 & within)
        groups = n1.split(8)  # every run of 8 examples of a batch shares its noise words
        assert all(bool((grp == grp[0]).all()) for grp in groups)
        assert len(t1) < 100 or not all(torch.equal(groups[0][0], grp[0]) for grp in groups[1:])  # groups differ
    reaches = torch.cat([torch.where(m, (torch.arange(8) - 4 + (torch.arange(8) >= 4).long()).abs(), 0).amax(1)
                         for _, m, _, _ in shrunk.epoch(0)])
    assert set(reaches.tolist()) == {1, 2, 3, 4}  # (a reach beyond the verse shows as the verse's edge)
    val = CBOWBatches(ids, seg, keep, noise, 4, 5, 100, seed=2, train=False, shrink=True, share_negatives=8)
    assert torch.equal(torch.cat([b[1] for b in val]), val.windows(0)[1])  # evaluation: the full window
    with pytest.raises(ValueError, match="share_negatives"):
        CBOWBatches(ids, seg, keep, noise, 4, 5, 100, seed=2, share_negatives=0)


class KilledTask(NegativeSamplingTask):
    kill_at = None

    def training_step(self, model, batch, step):
        if step.step + 1 == self.kill_at:
            raise KeyboardInterrupt("simulated kill")
        return super().training_step(model, batch, step)


def _w2v_trainer(run_dir, kill_at=None, update="autograd"):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (600,), generator=g)
    seg = torch.arange(600) // 12
    counts = torch.bincount(ids, minlength=20)
    keep, noise = subsample_keep_prob(counts, 0.005), noise_distribution(counts)
    fast = update == "sgd"  # the fast path with the lab's defaults: random window, shared noise words, linear lr
    train = CBOWBatches(ids[:480], seg[:480], keep, noise, 2, 3, batch_size=16, seed=3, shrink=fast,
                        share_negatives=4 if fast else 1)
    val = CBOWBatches(ids[480:], seg[480:], keep, noise, 2, 3, batch_size=50, seed=3, train=False)
    task = KilledTask(create_model("cbow", vocab_size=20, embedding_dim=6, init_seed=1), update=update,
                      shared_negatives=4 if fast else 1)
    task.kill_at = kill_at
    cfg = TrainConfig(epochs=3, lr=0.05, schedule="cosine", warmup=0.0, amp=False, progress=False)
    curve = LossCurve(run_dir / "curve.json", 3)
    return Trainer(cfg, task, run_dir, train, {"val": val}, torch.device("cpu"), log=lambda m: None,
                   lr_schedule=(lambda step, total: word2vec_lr(step, total, 0.05)) if fast else None,
                   callbacks=[curve]), curve


@pytest.mark.parametrize("update", ["autograd", "sgd"])
def test_word2vec_resumed_after_a_kill_equals_uninterrupted(tmp_path, update):
    """The word2vec pattern: CBOWBatches (a fresh subsampling, order and noise words per epoch, so epochs differ
    in length), NegativeSamplingTask (Adam through autograd, or word2vec's SGD), and the LossCurve callback, whose
    points survive the resume."""
    full, full_curve = _w2v_trainer(tmp_path / "full", update=update)
    hist_full = full.fit()
    steps = [row["step"] for row in hist_full]
    assert len(set(b - a for a, b in zip([0] + steps, steps))) > 1  # the epochs' lengths differ
    killed, _ = _w2v_trainer(tmp_path / "killed", kill_at=steps[1] + 2, update=update)  # dies inside epoch 3
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["epoch-0001", "epoch-0002"]
    saved = json.loads((tmp_path / "killed" / "curve.json").read_text())
    # a point after the checkpoint, which the resume drops
    json.dump(saved + [[steps[1] + 1, 99.0]], open(tmp_path / "killed" / "curve.json", "w"))
    resumed, curve = _w2v_trainer(tmp_path / "killed", update=update)
    resumed.resume()
    assert (resumed.epoch, resumed.step) == (2, steps[1])
    hist_resumed = resumed.fit()
    for a, b in zip(hist_full, hist_resumed, strict=True):
        for key in ("train_loss", "val_loss", "lr", "step", "examples"):
            assert a[key] == b[key], key
    for (k, v1), v2 in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v1, v2), k
    assert curve.points(resumed.step) == full_curve.points(full.step) and len(full_curve.points(full.step)) >= 9
    assert json.loads((tmp_path / "killed" / "curve.json").read_text()) == full_curve.points(full.step)
