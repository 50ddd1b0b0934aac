"""How good are word vectors? Related-pair similarity, the pair AUC, analogies and nearest neighbours.

Source: EE-559 (Fleuret) 12-3: the geometry of a word embedding should put words of the same kind close
together ("cat"/"tiger", "red"/"blue"); Mikolov et al. 2013 for the analogy test a : b :: c : d answered by
3CosAdd (the word nearest to ``b - a + c``, :func:`deepnotes.nn.word2vec.analogy`).

* mean cosine of related pairs (:data:`RELATED_PAIRS`) against that of random pairs of frequent words;
* the *pair AUC*: the share of random frequent words w with cos(a, w) < cos(a, b), averaged over both
  directions of each pair (0.5 for unrelated vectors, 1 when b is closer to a than every random word);
* analogies (:data:`ANALOGIES`): top-1 and top-5 accuracy;
* nearest neighbours of query words (:func:`neighbour_table`);
* a 2-D map of the most frequent content words (:func:`content_words`, :func:`project_2d`).

The pair and analogy lists are ours, hand-written for the King James Bible (every word occurs in it): not a
standard benchmark, and small; read the numbers as an illustration.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepnotes.nn.word2vec import analogy, cosine_neighbours
from deepnotes.train.batches import seed_for

# Ours, hand-written; every word occurs in the KJV (counts in the comments, whole text).
RELATED_PAIRS: tuple[tuple[str, str], ...] = (
    ("father", "mother"),  # 979, 245
    ("son", "daughter"),  # 2370, 324
    ("sons", "daughters"),
    ("brother", "sister"),  # 367, 109
    ("man", "woman"),  # 2614, 360
    ("men", "women"),
    ("king", "queen"),  # 2256, 54
    ("king", "prince"),
    ("gold", "silver"),  # 417, 320
    ("silver", "brass"),
    ("sheep", "goats"),  # 187, 97
    ("oxen", "sheep"),
    ("bread", "wine"),  # 361, 231
    ("bread", "water"),
    ("heaven", "earth"),  # 582, 987
    ("day", "night"),  # 1734, 307
    ("morning", "evening"),
    ("sun", "moon"),
    ("north", "south"),
    ("east", "west"),
    ("sword", "spear"),
    ("horses", "chariots"),
    ("moses", "aaron"),  # 847, 319
    ("david", "saul"),
    ("peter", "john"),
    ("priest", "levites"),
    ("jerusalem", "zion"),
    ("egypt", "babylon"),
)

# Ours: a : b :: c : d. Gender, number, tense, KJV pronoun case and two geographic relations.
ANALOGIES: tuple[tuple[str, str, str, str], ...] = (
    ("man", "woman", "king", "queen"),
    ("father", "mother", "son", "daughter"),
    ("brother", "sister", "son", "daughter"),
    ("man", "woman", "brother", "sister"),
    ("he", "she", "himself", "herself"),
    ("he", "she", "him", "her"),
    ("son", "sons", "daughter", "daughters"),
    ("man", "men", "woman", "women"),
    ("king", "kings", "priest", "priests"),
    ("brother", "brethren", "man", "men"),
    ("go", "went", "come", "came"),
    ("give", "gave", "take", "took"),
    ("say", "said", "speak", "spake"),
    ("thou", "thee", "ye", "you"),
    ("thou", "thy", "ye", "your"),
    ("north", "south", "east", "west"),
    ("jerusalem", "judah", "samaria", "israel"),
)

# Function words left out of maps of "content" words: scikit-learn's English stop words plus the KJV's archaic ones.
ARCHAIC_STOP_WORDS = frozenset("""
    thee thou thy thine ye hath hast doth dost art shalt wilt unto saith yea lo behold didst hadst wast
    wert shouldest wouldest couldest mayest canst o shall said let thereof therefore wherefore whereof
    thereto therein hither thither whither whence wherein verily nay aught
""".split())


def _present(stoi: dict[str, int], groups: Sequence[Sequence[str]]) -> tuple[list, list]:
    ok = [g for g in groups if all(w in stoi for w in g)]
    return ok, [g for g in groups if not all(w in stoi for w in g)]


def embedding_metrics(E: torch.Tensor, words: Sequence[str], reference_words: int, seed: int,
                      pairs: Sequence[tuple[str, str]] = RELATED_PAIRS,
                      analogies: Sequence[tuple[str, str, str, str]] = ANALOGIES) -> dict[str, Any]:
    """Related-pair cosine vs random pairs, the pair AUC and the analogy accuracy of word vectors.

    Args:
        E: (W, D) word vectors; ``words``: the W words, most frequent first.
        reference_words: random pairs and the AUC use the ``reference_words`` most frequent words.
        seed: of the 4,000 random pairs (generator seeded ``(seed, 11)``).
        pairs, analogies: word pairs and a : b :: c : d questions; those with a word outside ``words`` are
            listed under ``missing_pairs`` / ``missing_analogies``.

    Returns:
        ``related_cos``, ``random_cos`` (+ ``_std``), ``cos_gap``, ``pair_auc``, ``analogy_top1``, ``analogy_top5``
        (NaN when no pair or question is usable), the per-pair and per-question rows and ``reference_words``.
    """
    stoi = {w: i for i, w in enumerate(words)}
    unit = F.normalize(E.double(), dim=1)
    n_ref = min(reference_words, len(words))
    g = torch.Generator().manual_seed(seed_for(seed, 11))
    ref = torch.arange(n_ref)  # the most frequent words (ids are ordered by count)
    a_rand, b_rand = torch.randint(n_ref, (2, 4000), generator=g)
    distinct = a_rand != b_rand
    random_cos = (unit[a_rand[distinct]] * unit[b_rand[distinct]]).sum(1)
    usable, missing_pairs = _present(stoi, pairs)
    pair_rows = []
    for a, b in usable:
        ia, ib = stoi[a], stoi[b]
        aucs = []
        for x, y in ((ia, ib), (ib, ia)):
            others = ref[(ref != x) & (ref != y)]
            aucs.append(float(((unit[others] @ unit[x]) < float(unit[x] @ unit[y])).double().mean()))
        pair_rows.append({"a": a, "b": b, "cos": float(unit[ia] @ unit[ib]), "auc": sum(aucs) / 2})
    quads, missing_quads = _present(stoi, analogies)
    analogy_rows = []
    if quads:
        ids = torch.tensor([[stoi[w] for w in q] for q in quads])
        top = analogy(E, ids[:, 0], ids[:, 1], ids[:, 2], k=min(5, len(words) - 3))
        for q, row in zip(quads, top.tolist()):
            analogy_rows.append({"question": list(q), "top5": [words[i] for i in row],
                                 "top1_ok": row[0] == stoi[q[3]], "top5_ok": stoi[q[3]] in row})
    mean = (lambda xs: float(np.mean(xs)) if xs else float("nan"))
    return {"related_cos": mean([r["cos"] for r in pair_rows]),
            "random_cos": float(random_cos.mean()),
            "random_cos_std": float(random_cos.std()),
            "cos_gap": mean([r["cos"] for r in pair_rows]) - float(random_cos.mean()),
            "pair_auc": mean([r["auc"] for r in pair_rows]),
            "analogy_top1": mean([r["top1_ok"] for r in analogy_rows]),
            "analogy_top5": mean([r["top5_ok"] for r in analogy_rows]),
            "pairs": pair_rows, "missing_pairs": [list(p) for p in missing_pairs],
            "analogies": analogy_rows, "missing_analogies": [list(q) for q in missing_quads],
            "reference_words": n_ref}


def neighbour_table(E: torch.Tensor, words: Sequence[str], queries: Sequence[str], k: int) -> dict[str, Any]:
    """``{query: [[neighbour, cosine], ...]}`` (``k`` nearest by cosine, the query itself excluded) for the
    queries in ``words`` (looked up lowercased); ``None`` for the others."""
    stoi = {w: i for i, w in enumerate(words)}
    present = [w for w in queries if w.lower() in stoi]
    out: dict[str, Any] = {w: None for w in queries}
    if present:
        ids, sims = cosine_neighbours(E, torch.tensor([stoi[w.lower()] for w in present]), min(k, len(words) - 1))
        for w, row_i, row_s in zip(present, ids.tolist(), sims.tolist()):
            out[w] = [[words[i], s] for i, s in zip(row_i, row_s)]
    return out


def content_words(words: Sequence[str], n: int) -> list[int]:
    """Ids of the first ``n`` words that are not stop words (scikit-learn's English list + :data:`ARCHAIC_STOP_WORDS`)
    nor single letters; with ``words`` by count, the ``n`` most frequent content words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    stop = ENGLISH_STOP_WORDS | ARCHAIC_STOP_WORDS
    return [i for i, w in enumerate(words) if w not in stop and len(w) > 1][:n]


def project_2d(X: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, D) vectors -> (N, 2) by scikit-learn's PCA or t-SNE (cosine metric, perplexity <= 30), and a caption
    naming the method (PCA: with the share of the variance kept).

    Raises:
        ValueError: ``method`` is not ``"pca"`` or ``"tsne"``.
    """
    if method == "tsne":
        from sklearn.manifold import TSNE

        Y = TSNE(n_components=2, perplexity=min(30.0, (len(X) - 1) / 3), init="pca", metric="cosine",
                 random_state=seed).fit_transform(X)
        return Y, "t-SNE (cosine, scikit-learn)"
    if method != "pca":
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(X)
    return pca.transform(X), f"PCA (scikit-learn), {100 * pca.explained_variance_ratio_.sum():.1f}% of the variance"
