"""BERT's self-supervised pre-training objectives: masked language modelling and next-sentence prediction.

Sources: ML2021 "Self-supervised learning" (BERT slides, digested in seed 004): "Masking Input" (some input
tokens are replaced by a special [MASK] token or by a random token; BERT must output the original token at
those positions, a classification over the vocabulary, trained with cross-entropy) and "Next Sentence
Prediction" ([CLS] sentence1 [SEP] sentence2 [SEP]; a linear layer on the [CLS] output answers yes/no: is
sentence2 the next one? "not helpful", says the lecture, citing RoBERTa; SOP of ALBERT is its harder
variant). Paper: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", §3.1 and Appendix A.1; Google's reference code ``create_pretraining_data.py`` and
``run_pretraining.py`` for the details written below.

Masked LM (:func:`mask_tokens`, :func:`mlm_loss`, :class:`MLMHead`)::

    M = a random 15% of the eligible positions of each sequence (not special, not padding)
    x̃_i = [MASK] with probability 0.8, a uniform random token with 0.1, x_i with 0.1      (i in M)
    L_MLM = -(1/|M|) Σ_{i in M} log softmax(W_e · LN(GELU(W_t h_i + b_t)) + b)[x_i]

with W_e the word-embedding matrix (the decoder is tied to it). Next-sentence prediction
(:func:`nsp_pairs`, :class:`NSPHead`, :func:`nsp_loss`): ``L_NSP = CE(W_nsp pooler(h_[CLS]) + b, y)`` with
y = 0 when B is the true next sentence ("IsNext") and 1 when it is random ("NotNext"), Hugging Face's
convention. The pre-training loss is ``L_MLM + L_NSP``.

Deliberate choices, where the sources differ:

* The number of chosen positions is exact, ``max(1, round(0.15 n))`` of the n eligible positions of each
  sequence, as the paper's reference code (``create_pretraining_data.py``); Hugging Face's
  ``DataCollatorForLanguageModeling`` instead draws each position independently with p = 0.15.
  ``max_predictions`` caps the count as the reference code does (it has 20 for 128 tokens); default no cap.
* The random replacement token is uniform over the whole vocabulary (special tokens included), as both the
  reference code and Hugging Face do.
* Labels are -100 (``ignore_index`` of ``F.cross_entropy``) at every position outside M.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.nn.normalization import LayerNorm

__all__ = ["IGNORE_INDEX", "MLMHead", "NSPHead", "mask_tokens", "mlm_loss", "nsp_loss", "nsp_pairs"]

IGNORE_INDEX = -100  # the label of positions that carry no MLM loss (F.cross_entropy's default ignore_index)

_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}

T = TypeVar("T")


# ------------------------------------------------------------------------------------ masked LM: data
def mask_tokens(input_ids: Tensor, mask_token_id: int, vocab_size: int, special_ids: Sequence[int] = (),
                attention_mask: Tensor | None = None, probability: float = 0.15, mask_ratio: float = 0.8,
                random_ratio: float = 0.1, max_predictions: int | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Choose the masked-LM positions and corrupt them: BERT's 15% / 80-10-10 rule (Devlin et al. 2019, §3.1).

    In each sequence, ``k = max(1, round(probability * n))`` positions (capped by ``max_predictions``) are
    chosen uniformly among its n eligible positions: not in ``special_ids`` and not padding (where
    ``attention_mask`` is 0). A chosen token becomes ``mask_token_id`` with probability ``mask_ratio``, a
    uniform random id in [0, vocab_size) with probability ``random_ratio``, and stays itself otherwise (the
    model must still predict it, so it cannot trust an unmasked input). A sequence with no eligible position
    gets no prediction.

    Args:
        input_ids: (B, T) int64 token ids.
        mask_token_id: id of [MASK].
        vocab_size: V, for the random replacements.
        special_ids: ids never chosen ([CLS], [SEP], [PAD], ...).
        attention_mask: (B, T), 1/True = real token, 0/False = padding (never chosen). Default all real.
        probability: share of eligible positions chosen, in (0, 1]. Default 0.15.
        mask_ratio: share of chosen positions replaced by [MASK]. Default 0.8.
        random_ratio: share replaced by a random token (mask_ratio + random_ratio <= 1). Default 0.1.
        max_predictions: at most this many chosen positions per sequence. Default None (no cap).
        generator: the source of randomness (reproducible runs). Default None: torch's global generator.

    Returns:
        ``(corrupted_ids, labels)``, both (B, T) int64: the input with the chosen positions replaced, and the
        original ids at the chosen positions with :data:`IGNORE_INDEX` (-100) everywhere else.

    Raises:
        ValueError: input_ids not a 2-D integer tensor, attention_mask of another shape, ratios out of range,
            vocab_size < 1, mask_token_id outside the vocabulary, max_predictions < 1.

    Example::

        ids, labels = mask_tokens(batch["input_ids"], tok.mask_token_id, tok.vocab_size,
                                  special_ids=tok.special_ids, attention_mask=batch["attention_mask"],
                                  generator=torch.Generator().manual_seed(0))
    """
    if input_ids.dim() != 2 or input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must be a (B, T) integer tensor, got {input_ids.dtype} {tuple(input_ids.shape)}")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                         f"got {tuple(attention_mask.shape)}")
    if not 0.0 < probability <= 1.0:
        raise ValueError(f"probability must be in (0, 1], got {probability}")
    if mask_ratio < 0 or random_ratio < 0 or mask_ratio + random_ratio > 1.0:
        raise ValueError(f"mask_ratio and random_ratio must be >= 0 with a sum <= 1, got {mask_ratio}, {random_ratio}")
    if vocab_size < 1 or not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"need vocab_size >= 1 and 0 <= mask_token_id < vocab_size, got {vocab_size}, {mask_token_id}")
    if max_predictions is not None and max_predictions < 1:
        raise ValueError(f"max_predictions must be >= 1 or None, got {max_predictions}")
    device = input_ids.device
    eligible = ~torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=input_ids.dtype, device=device))
    if attention_mask is not None:
        eligible &= attention_mask.bool()
    n = eligible.sum(dim=1)  # (B,) eligible positions per sequence
    k = torch.clamp(torch.round(n.double() * probability).long(), min=1)  # (B,) round half to even, as Python's
    k = torch.minimum(k, n)
    if max_predictions is not None:
        k = k.clamp(max=max_predictions)

    # A uniform random subset of k eligible positions: the k smallest of i.i.d. uniform scores.
    scores = torch.rand(input_ids.shape, generator=generator, device=device).masked_fill(~eligible, 2.0)  # (B, T)
    rank = scores.argsort(dim=1).argsort(dim=1)  # (B, T) rank of each position's score in its row
    chosen = rank < k[:, None]  # (B, T)

    u = torch.rand(input_ids.shape, generator=generator, device=device)  # (B, T) which corruption
    random_ids = torch.randint(0, vocab_size, input_ids.shape, generator=generator, device=device,
                               dtype=input_ids.dtype)  # (B, T)
    to_mask = chosen & (u < mask_ratio)
    to_random = chosen & (u >= mask_ratio) & (u < mask_ratio + random_ratio)
    corrupted = input_ids.masked_fill(to_mask, mask_token_id)
    corrupted = torch.where(to_random, random_ids, corrupted)
    labels = input_ids.masked_fill(~chosen, IGNORE_INDEX)
    return corrupted, labels


# ----------------------------------------------------------------------------------- masked LM: model
class MLMHead(nn.Module):
    """BERT's masked-LM head: ``logits = LN(act(W_t h + b_t)) W_eᵀ + b``, its decoder tied to the word embeddings.

    Hugging Face's ``BertLMPredictionHead`` (``cls.predictions``): ``transform`` (dense), the activation,
    ``norm`` (LayerNorm), then ``decoder``, an ``nn.Linear`` whose weight **is** the embedding matrix
    (the same Parameter: updated once, by the gradients of both uses) with its own bias.

    Args:
        hidden_size: C.
        embedding: the model's ``nn.Embedding(V, C)`` of word pieces; its weight becomes the decoder's.
        activation: ``"gelu"`` (BERT) or ``"relu"``. Default ``"gelu"``.
        eps: LayerNorm epsilon. Default 1e-12 (BERT's).

    Shapes:
        hidden: (..., C) -> logits (..., V). Pass only the chosen positions (``h[labels != -100]``, (M, C))
        to skip the vocabulary-sized product at the others.

    Raises:
        ValueError: the embedding's width is not ``hidden_size``, or an unknown activation.
    """

    def __init__(self, hidden_size: int, embedding: nn.Embedding, activation: str = "gelu", eps: float = 1e-12):
        super().__init__()
        if embedding.embedding_dim != hidden_size:
            raise ValueError(f"embedding has width {embedding.embedding_dim}, hidden_size is {hidden_size}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.transform = nn.Linear(hidden_size, hidden_size)
        self.norm = LayerNorm(hidden_size, eps=eps)
        self.decoder = nn.Linear(hidden_size, embedding.num_embeddings)
        self.decoder.weight = embedding.weight  # tied: one Parameter, (V, C)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.decoder(self.norm(_ACTIVATIONS[self.activation](self.transform(hidden))))


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Masked-LM loss: mean cross-entropy over the chosen positions only (labels != -100).

    ``L = -(1/|M|) Σ_{i in M} log softmax(z_i)[y_i]``; the logits of the other positions are never read, so
    they get no gradient. Equal to ``F.cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=-100)``.

    Args:
        logits: (..., V) scores.
        labels: (...) int64 target ids, -100 where no prediction is asked.

    Returns:
        Scalar tensor; 0 (with a gradient path) when no position is chosen.

    Raises:
        ValueError: shapes that do not match.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits (..., V) and labels (...) must agree, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    chosen = labels != IGNORE_INDEX  # (...)
    z, y = logits[chosen], labels[chosen]  # (M, V), (M,)
    if y.numel() == 0:
        return logits.sum() * 0.0
    log_p = z - torch.logsumexp(z, dim=-1, keepdim=True)  # (M, V) log softmax
    return -log_p.gather(1, y[:, None]).mean()


# ------------------------------------------------------------------------------ next-sentence prediction
def nsp_pairs(documents: Sequence[Sequence[T]], probability_next: float = 0.5,
              generator: torch.Generator | None = None) -> list[tuple[T, T, int]]:
    """Sentence pairs for next-sentence prediction: (A, B, label), label 0 = B follows A, 1 = B is random.

    Every sentence that has a successor in its document becomes an A. With probability ``probability_next``
    its B is the true next sentence (label 0, "IsNext"); otherwise B is a sentence drawn uniformly from the
    *other* documents (label 1, "NotNext"), as the paper's reference code does, or, when there is a single
    document, uniformly from its sentences other than the true next one.

    Args:
        documents: a list of documents, each a list of sentences (strings, id lists, anything).
        probability_next: chance that B is the true next sentence. Default 0.5 (Devlin et al. 2019, §3.1).
        generator: the source of randomness. Default None: torch's global generator.

    Returns:
        A list of ``(A, B, label)`` in document order.

    Raises:
        ValueError: probability_next outside [0, 1]; a random B is needed but the corpus has no other sentence.

    Example::

        pairs = nsp_pairs([["In the beginning ...", "And the earth ..."], ["Blessed is ...", "But his ..."]],
                          generator=torch.Generator().manual_seed(0))
    """
    if not 0.0 <= probability_next <= 1.0:
        raise ValueError(f"probability_next must be in [0, 1], got {probability_next}")
    flat = [(d, s) for d, doc in enumerate(documents) for s in doc]  # (document index, sentence)
    starts = [0]
    for doc in documents:
        starts.append(starts[-1] + len(doc))
    pairs: list[tuple[T, T, int]] = []
    for d, doc in enumerate(documents):
        for i in range(len(doc) - 1):
            if float(torch.rand((), generator=generator)) < probability_next:
                pairs.append((doc[i], doc[i + 1], 0))
                continue
            if len(documents) > 1:  # a sentence of another document: skip this document's slice
                others = len(flat) - len(doc)
                if others == 0:
                    raise ValueError("a random next sentence needs sentences in another document; all are in one")
                j = int(torch.randint(others, (), generator=generator))
                j = j if j < starts[d] else j + len(doc)
            else:  # one document: any sentence but the true next one
                j = int(torch.randint(len(doc) - 1, (), generator=generator))
                j = j if j < i + 1 else j + 1
            pairs.append((doc[i], flat[j][1], 1))
    return pairs


class NSPHead(nn.Module):
    """Next-sentence classifier on BERT's pooled [CLS] output: ``logits = W p + b``, 2 classes (0 IsNext, 1 NotNext).

    Hugging Face's ``cls.seq_relationship``.

    Shapes:
        pooled: (B, C) -> logits (B, 2).
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.classifier = nn.Linear(hidden_size, 2)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.classifier(pooled)


def nsp_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Next-sentence loss: mean cross-entropy of (B, 2) logits against (B,) labels in {0, 1}.

    Raises:
        ValueError: logits not (B, 2) or labels not (B,).
    """
    if logits.dim() != 2 or logits.shape[1] != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"need logits (B, 2) and labels (B,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return F.cross_entropy(logits, labels)
