"""Layers and functions written from the lecture equations, each beside a test against its torch twin.

* :mod:`~deepnotes.nn.normalization`: :class:`BatchNorm1d`, :class:`BatchNorm2d`, :class:`LayerNorm`.
* :mod:`~deepnotes.nn.losses`: :func:`logsumexp`, :func:`log_softmax`, :func:`cross_entropy`,
  :func:`mse_one_hot`.
* :mod:`~deepnotes.nn.recurrent`: RNN, LSTM and GRU cells and (stacked, bidirectional) layers.
* :mod:`~deepnotes.nn.tcn`: causal dilated convolutions, temporal blocks, :func:`receptive_field`.
* :mod:`~deepnotes.nn.attention`: scaled dot-product and multi-head attention, masks, positional encodings.
* :mod:`~deepnotes.nn.transformer`: encoder and decoder layers and the encoder-decoder Transformer.
* :mod:`~deepnotes.nn.spatial`: the spatial transformer (affine and projective grids, bilinear sampling).
* :mod:`~deepnotes.nn.domain`: gradient reversal, DANN and Ganin's schedules.
* :mod:`~deepnotes.nn.stable`: random Fourier features and StableNet's sample reweighting.

Decoding (greedy, beam search, sampling, mask-predict, scheduled sampling) is in :mod:`deepnotes.nn.decoding`,
the copy mechanism in :mod:`deepnotes.nn.copy`, CBOW in :mod:`deepnotes.nn.word2vec`: import them from there.
"""

from deepnotes.nn.attention import (LearnedPositionalEmbedding, MultiHeadAttention, SinusoidalPositionalEncoding,
                                    causal_mask, padding_mask, scaled_dot_product_attention, window_mask)
from deepnotes.nn.losses import cross_entropy, log_softmax, logsumexp, mse_one_hot
from deepnotes.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from deepnotes.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from deepnotes.nn.tcn import TCN, CausalConv1d, TemporalBlock
from deepnotes.nn.transformer import (Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
                                      TransformerEncoderLayer, copy_weights_from_torch)

__all__ = ["GRU", "LSTM", "RNN", "TCN", "BatchNorm1d", "BatchNorm2d", "CausalConv1d", "GRUCell", "LSTMCell",
           "LayerNorm", "LearnedPositionalEmbedding", "MultiHeadAttention", "RNNCell", "SinusoidalPositionalEncoding",
           "TemporalBlock", "Transformer", "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder",
           "TransformerEncoderLayer", "causal_mask", "copy_weights_from_torch", "cross_entropy", "log_softmax",
           "logsumexp", "mse_one_hot", "padding_mask", "scaled_dot_product_attention", "window_mask"]
