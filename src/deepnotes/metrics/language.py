"""How well a language model predicts text: cross-entropy per token, bits per character, perplexity, and
the count baselines a neural model should beat.

Source: ML2021/2022 (language models: the cross-entropy of the next token; perplexity ``exp(loss)``);
Shannon 1951 for bits per character (``loss / ln 2``); the unigram and add-one (Laplace) bigram
character models of Jurafsky & Martin, "Speech and Language Processing", ch. 3.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LN2 = math.log(2.0)


@torch.no_grad()
def text_loss(model: nn.Module, windows: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device
              ) -> dict[str, float]:
    """Mean next-token cross-entropy (nats) of ``model`` over every target of ``windows``, in eval mode.

    Args:
        model: ``(B, T) ids -> (B, T, V) logits``.
        windows: batches ``(x, y)``, both (B, T) int64 (e.g. :class:`deepnotes.data.text.EvalWindows`).

    Returns:
        ``loss``, ``bpc`` (``loss / ln 2``), ``perplexity`` (``exp(loss)``) and ``n_chars`` (targets counted).
    """
    model.eval()
    total, count = 0.0, 0
    for x, y in windows:
        logits = model(x.to(device))
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.to(device).reshape(-1),
                                       reduction="sum"))
        count += y.numel()
    loss = total / count
    return {"loss": loss, "bpc": loss / LN2, "perplexity": math.exp(loss), "n_chars": count}


def count_baselines(train: np.ndarray, val: np.ndarray, V: int) -> dict[str, float]:
    """Validation cross-entropy (nats/token) of unigram and add-one bigram models fitted on ``train``.

    Shapes: train (N,), val (M,) int ids in [0, V).
    """
    uni = (np.bincount(train, minlength=V) + 1.0) / (len(train) + V)
    big = np.ones((V, V))
    np.add.at(big, (train[:-1], train[1:]), 1.0)
    big /= big.sum(axis=1, keepdims=True)
    return {"unigram": float(-np.log(uni[val]).mean()), "bigram": float(-np.log(big[val[:-1], val[1:]]).mean())}
