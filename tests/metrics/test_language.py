"""Language-model metrics: text_loss against a direct computation, and the count baselines against hand counts."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepnotes.data.text import EvalWindows
from deepnotes.metrics.language import LN2, count_baselines, text_loss
from deepnotes.models.registry import create_model


def test_text_loss_is_the_mean_cross_entropy_of_every_target():
    torch.manual_seed(0)
    model = create_model("lstm-lm", vocab_size=5, embedding_dim=3, hidden_size=4, num_layers=1)
    ids = torch.randint(0, 5, (83,))
    got = text_loss(model, EvalWindows(ids, 8, batch_size=3), torch.device("cpu"))
    x = ids[:80].view(10, 8)
    y = ids[1:81].view(10, 8)
    with torch.no_grad():
        want = float(F.cross_entropy(model(x).reshape(-1, 5), y.reshape(-1)))
    assert got["n_chars"] == 80 and got["loss"] == pytest.approx(want, rel=1e-6)
    assert got["bpc"] == pytest.approx(want / math.log(2)) and got["perplexity"] == pytest.approx(math.exp(want))
    assert LN2 == math.log(2) and not model.training


def test_count_baselines_by_hand():
    train = np.array([0, 1, 0, 1, 0])  # unigram with add-one: p(0) = 4/8, p(1) = 3/8, p(2) = 1/8
    val = np.array([0, 1, 2])
    b = count_baselines(train, val, 3)
    assert b["unigram"] == pytest.approx(-(math.log(4 / 8) + math.log(3 / 8) + math.log(1 / 8)) / 3)
    # bigram rows with add-one: from 0: counts (1, 2+1, 1) / 5; from 1: (1+2, 1, 1) / 5
    assert b["bigram"] == pytest.approx(-(math.log(3 / 5) + math.log(1 / 5)) / 2)
