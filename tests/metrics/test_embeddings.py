"""Word-vector metrics: related pairs and the pair AUC, analogies, neighbours, content words and the 2-D map."""

import math

import numpy as np
import pytest
import torch

from deepnotes.metrics.embeddings import content_words, embedding_metrics, neighbour_table, project_2d

WORDS = ("the", "man", "woman", "king", "queen", "unto", "gold", "silver", "thee", "bread", "water", "sheep")


def _vectors():
    """Related pairs share a direction; the other words are spread on other axes."""
    g = torch.Generator().manual_seed(0)
    E = 0.05 * torch.randn(len(WORDS), 8, generator=g)
    axis = {"man": 0, "woman": 0, "king": 1, "queen": 1, "gold": 2, "silver": 2}
    for i, w in enumerate(WORDS):
        E[i, axis.get(w, 3 + i % 5)] += 1.0
    E[WORDS.index("woman"), 4] += 0.5  # a "female" direction: king - man + woman ~ queen
    E[WORDS.index("queen"), 4] += 0.5
    return E


def test_related_pairs_score_high_and_missing_words_are_listed():
    m = embedding_metrics(_vectors(), WORDS, reference_words=12, seed=0,
                          pairs=[("man", "woman"), ("gold", "silver"), ("king", "nowhere")],
                          analogies=[("man", "woman", "king", "queen"), ("a", "b", "c", "d")])
    assert [(p["a"], p["b"]) for p in m["pairs"]] == [("man", "woman"), ("gold", "silver")]
    assert m["missing_pairs"] == [["king", "nowhere"]] and m["missing_analogies"] == [["a", "b", "c", "d"]]
    assert m["pair_auc"] == 1.0 and m["related_cos"] > 0.8 and m["cos_gap"] == m["related_cos"] - m["random_cos"]
    assert m["analogies"][0]["top5"][0] == "queen" and m["analogy_top1"] == 1.0 and m["reference_words"] == 12
    random = embedding_metrics(torch.randn(12, 8, generator=torch.Generator().manual_seed(1)), WORDS, 12, 0,
                               pairs=[("man", "woman")], analogies=[])
    assert random["pair_auc"] < 1.0 and math.isnan(random["analogy_top1"])


def test_neighbours_content_words_and_projection():
    E = _vectors()
    table = neighbour_table(E, WORDS, ("Man", "moses"), k=3)
    assert table["moses"] is None and table["Man"][0][0] == "woman" and len(table["Man"]) == 3
    assert [WORDS[i] for i in content_words(WORDS, 4)] == ["man", "woman", "king", "queen"]  # no the/unto/thee
    X = E.double().numpy()
    Y, caption = project_2d(X, "pca", seed=0)
    assert Y.shape == (12, 2) and caption.startswith("PCA") and "% of the variance" in caption
    Y, caption = project_2d(X, "tsne", seed=0)
    assert Y.shape == (12, 2) and np.isfinite(Y).all() and "t-SNE" in caption
    with pytest.raises(ValueError, match="method"):
        project_2d(X, "umap")
