"""Lab ``translation``: English -> Chinese with an RNN seq2seq with attention and a Transformer; greedy vs beam; BLEU.

Source: ML2021/2022 homework 5 "Machine Translation" (seed 002: 作业5; a seq2seq model translates
English into Traditional Chinese, subword units from sentencepiece, scored with BLEU; its "simple"
baseline is an RNN seq2seq, its "strong" one a Transformer) and the lectures "Transformer" and the
seq2seq training tips (teacher forcing; beam search "尝试多种可能性", better for tasks with one right
answer; training with cross-entropy, evaluating with BLEU). Models: :mod:`deepnotes.models.seq2seq`;
decoders: :mod:`deepnotes.nn.decoding`.

Data (default): ``ui-translations`` (``deepnotes data build ui-translations``): ~81k EN -> zh_CN
software-message pairs from the gettext catalogs of 86 Debian packages (HW5 used TED2020 talks, not
available offline). The split is by package (:func:`deepnotes.data.translation.package_split`): test =
coreutils, dpkg, tar, wget, validation = libglib2.0-data, sudo, train = the other 80, so the test
packages' phrasing is never seen in training. ``--data PREFIX`` trains on TED2020-format files instead
(``PREFIX.en`` / ``PREFIX.zh``, one sentence a line, HW5's ``train_dev.raw``): pairs with an empty side
are dropped and the rest split at random (seeded by ``--seed``) into ``--val-fraction`` /
``--test-fraction`` / the rest.

Pipeline:

1. One joint sentencepiece BPE vocabulary (``--vocab-size``, default 5000; HW5 used 8000 on ~12x more
   pairs, and low-resource NMT wants a smaller one, Sennrich & Zhang 2019) trained on the *training
   split only*, both languages, saved as ``spm.model`` / ``spm.vocab`` in the run folder.
   Printf placeholders (``%s``, ``%1$s``, ...) are single pieces, so a model can copy them.
   ``--protect-spans`` goes further (:func:`deepnotes.data.translation.protect_spans`): every printf
   placeholder, option name and number of a source becomes one sentinel token (the k-th distinct span
   sentinel k, in its training target too), and :func:`translate` puts the strings back into the output;
   scores are always computed on the restored text against the raw references.
2. Length filter: training and validation pairs with more than ``--max-len`` (default 64) subword
   tokens on either side are dropped; test pairs only when the *source* is longer (the references are
   never looked at to choose test sentences). The counts are in data.json and the report.
3. Batches of similar lengths (fairseq's ``--max-tokens``): pairs sorted by target then source length
   (random tie-break) and packed so that ``sentences x longest side <= --max-tokens``; the Trainer
   shuffles the order of these batches every epoch (its "examples" are batch indices).
   ``--bpe-dropout P`` (Provilkov et al. 2020, :mod:`deepnotes.data.subword`): every time a training
   batch is drawn, its pairs are segmented anew with each BPE merge skipped with probability P (the same
   pairs, grouped by their plain lengths; a seeded draw per batch, so resuming is exact); validation and
   test text keep the plain segmentation.
4. Each model (``--models rnn,transformer``) is trained by :class:`deepnotes.train.Trainer` in its own
   folder ``models/<name>/`` (metrics.csv, checkpoints while training, model.safetensors, result.json),
   so ``--resume`` continues the model that was interrupted and keeps the finished ones. Loss:
   cross-entropy with label smoothing 0.1 on the target tokens (padding ignored); AdamW
   (betas 0.9, 0.98; weight decay on weight matrices); linear warm-up then cosine decay (or Noam).
   ``--copy rnn,transformer`` gives those models the copy mechanism (a pointer-generator over the
   source tokens, :mod:`deepnotes.models.seq2seq`), meant for what must come out as it went in:
   placeholders, option names, file names. ``--copy-continuation`` adds a location-aware term to that
   copy attention (:class:`deepnotes.nn.copy.CopyContinuation`): a learned bonus for the source
   position right after the one the previous output token was copied from; ``--selective-read`` gives the
   Transformer's decoder CopyNet's selective read (where in the source its previous token came from).
   Teacher forcing by default; ``--min-teacher-forcing-ratio E`` < 1 trains with scheduled sampling
   (:class:`ScheduledSampler`: the decoder reads its own greedy guesses for some gold tokens, a share that
   grows linearly from 0 to 1 - E over the updates).
5. Validation: ``--val-bleu-sentences`` (500) seeded validation pairs are decoded greedily and by beam
   search with each GNMT length-penalty alpha of ``--length-penalty-grid`` (score / ``((5 + |Y|) / 6) ** alpha``;
   0.6, 1.0, 1.4, 1.6, 1.8, 2.0); the alpha of the best validation BLEU is the model's beam alpha on the test set
   (Wu et al. 2016 tuned it on a development set; the test set never chooses anything).
   ``--coverage-penalty`` beta adds GNMT's coverage penalty to every beam search (default 0: none).
6. Test: for every model, greedy decoding and beam search (``--beam-size`` 5, the chosen alpha),
   batched (beam rows are routed to their sentence's encoder memory by origin index) with an
   incremental decoder-state cache; at most
   ``max-len-a * |source| + max-len-b`` tokens (fairseq's ``max_len_a/b``). Scores: sacrebleu
   ``corpus_bleu(hyps, [refs], tokenize="zh")`` (character-level for Chinese), chrF, placeholder
   accuracy (share of test sentences with a printf placeholder whose multiset of placeholders in the
   output equals the source's; the references' own rate is reported beside it) and decoding time.
   ``--max-test-sentences N`` scores a fixed seeded subset of N test pairs (0 = all). The report also
   splits test BLEU by source length (<= 10 words / longer, with each part's brevity penalty) and counts
   looping outputs (:func:`length_breakdown`, :func:`looping_outputs`).

Files in the run folder: config.json, data.json, spm.model/.vocab, test.en / test.zh (the scored
sentences), models/<name>/{metrics.csv, model.safetensors, result.json, test.greedy.zh, test.beam.zh},
results.json, report.md + PNGs, eval/ (``deepnotes eval``). ``deepnotes sample RUN --prompt TEXT``
translates TEXT with the run's best model (highest beam BLEU) by beam search.
"""

from __future__ import annotations

import math
import random
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from deepnotes.data.translation import (
    BOS_ID,
    DEFAULT_TEST_PACKAGES,
    DEFAULT_VAL_PACKAGES,
    EOS_ID,
    PAD_ID,
    PLACEHOLDER_RE,
    PLACEHOLDER_SYMBOLS,
    SENTINELS,
    UI_TRANSLATIONS,
    ProtectedText,
    SubwordTokenizer,
    load_ui_translations,
    package_split,
    protect_spans,
    protect_target,
    read_parallel_text,
    restore_spans,
    train_sentencepiece,
)
from deepnotes.data.subword import BPEDropout
from deepnotes.errors import UserError
from deepnotes.io import write_json_atomic, write_text_atomic
from deepnotes.experiment import Lab, RunContext, load_run_weights, read_run_json
from deepnotes.models.language import count_parameters
from deepnotes.models.seq2seq import (
    RNNSeq2Seq,
    RNNSeq2SeqConfig,
    Seq2SeqModel,
    TransformerSeq2Seq,
    TransformerSeq2SeqConfig,
)
from deepnotes.nn.decoding import scheduled_sampling_inputs, shift_right, teacher_forcing_ratio
from deepnotes.optim import NoamSchedule, WarmupDecay
from deepnotes.report import markdown_image, markdown_table, new_figure, read_metrics_csv, save_figure
from deepnotes.train import supervised_trainer
from deepnotes.train.checkpoint import CHECKPOINT_DIR
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.engine import IGNORE_INDEX

NAME = "translation"
MODELS = ("rnn", "transformer")
MODEL_LABELS = {"rnn": "RNN seq2seq + attention (HW5 simple)", "transformer": "Transformer (HW5 strong)"}
DECODERS = ("greedy", "beam")

HW5_BASELINES = ("HW5's published baselines (BLEU on its TED2020 EN->zh-TW test set): not given in the notes "
                 "(the course notes in shared/seeds name homework 5 \"Machine Translation\" and BLEU, but no "
                 "baseline numbers). They would not be comparable anyway: other corpus, other domain, other script.")


@dataclass(frozen=True)
class TranslationConfig:
    """The lab's flags (``deepnotes run translation --help``). Not a TrainConfig: two models are trained,
    each with its own engine config built in :func:`_train_config`."""

    models: tuple[str, ...] = option(MODELS, "models to train and compare, comma-separated, from: rnn, transformer")
    data: str = option("", "TED2020-format parallel files PREFIX.en / PREFIX.zh to use instead of ui-translations "
                           "(random split by --val-fraction / --test-fraction); empty = ui-translations")
    val_packages: tuple[str, ...] = option(DEFAULT_VAL_PACKAGES, "ui-translations packages held out for validation")
    test_packages: tuple[str, ...] = option(DEFAULT_TEST_PACKAGES, "ui-translations packages held out for test")
    val_fraction: float = option(0.05, "with --data: share of the pairs held out for validation")
    test_fraction: float = option(0.1, "with --data: share of the pairs held out for test")
    limit_train: int = option(0, "train on a seeded random subset of N training pairs (0 = all; for smoke runs)")
    limit_val: int = option(0, "validate on a seeded random subset of N validation pairs (0 = all)")
    max_test_sentences: int = option(0, "score a fixed seeded subset of N test pairs (0 = all, the default: two "
                                        "samples of 1,000 differ by ~1.5 BLEU for one model, benchmarks/RESULTS.md)")
    vocab_size: int = option(5000, "joint sentencepiece BPE vocabulary size (both languages; HW5: 8000 for ~10x the data)")
    character_coverage: float = option(0.9995, "sentencepiece character coverage (rarer characters become bytes)")
    max_len: int = option(64, "length filter: drop train/val pairs with more subword tokens on either side, "
                              "test pairs with a longer source")
    epochs: int = option(16, "passes over the training pairs, for every model (chosen on validation beam BLEU over the "
                             "~74k training pairs: RNN 48.9 / 51.1 / 51.3, Transformer 48.7 / 52.8 / 53.1 at 8 / 12 / 16 "
                             "epochs; benchmarks/RESULTS.md)")
    bpe_dropout: float = option(0.0, "BPE-dropout (Provilkov et al. 2020): probability of skipping each merge when "
                                     "segmenting the training pairs, drawn anew for every batch; validation and test "
                                     "text keep the plain segmentation; 0 = off (the paper: 0.1)")
    min_teacher_forcing_ratio: float = option(
        1.0, "scheduled sampling (Bengio et al. 2015): the probability of feeding the decoder the gold previous token "
        "decays linearly from 1 at the first update to this at the last, the model's own greedy guess otherwise "
        "(from a teacher-forced pass without gradients; Mihaylova and Martins 2019 for the Transformer); 1 = plain "
        "teacher forcing, off")
    max_tokens: int = option(1000, "padded tokens per batch: sentences x the longest source or target (fairseq --max-tokens)")
    schedule: Literal["cosine", "noam"] = option("cosine", "learning-rate schedule: linear warm-up then cosine decay to 0, "
                                                            "or the Transformer paper's inverse-square-root (Noam) decay")
    warmup: float = option(0.1, "share of the updates spent warming up the learning rate, in (0, 1)")
    weight_decay: float = option(0.01, "AdamW's decoupled weight decay on weight matrices")
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy (HW5: 0.1)")
    grad_clip: float = option(1.0, "clip the global gradient norm to this value (0 disables)")
    ema_decay: float = option(0.0, "exponential moving average of the weights with this decay per update, validated, "
                                   "decoded and saved instead of the raw weights (the engine's --ema-decay; a running "
                                   "form of the Transformer paper's checkpoint averaging); 0 disables")
    dropout: float = option(0.1, "dropout of both models")
    rnn_lr: float = option(2e-3, "peak learning rate of the RNN")
    rnn_embedding_dim: int = option(128, "RNN token embedding size")
    rnn_hidden_size: int = option(128, "RNN encoder hidden size per direction (the decoder's is twice this)")
    rnn_layers: int = option(1, "GRU layers of the RNN encoder and decoder")
    transformer_lr: float = option(3e-3, "peak learning rate of the Transformer (3e-3: 25.4 beam BLEU vs 23.4 at 1.5e-3, benchmarks/RESULTS.md)")
    d_model: int = option(128, "Transformer model size")
    n_heads: int = option(4, "Transformer attention heads")
    encoder_layers: int = option(4, "Transformer encoder layers (4 + 4 chosen on validation over seeds 0 and 1: beam BLEU "
                                    "55.06 / 53.30 vs 53.13 / 51.10 with 3 + 3, 1.1-1.3x the training time; "
                                    "benchmarks/RESULTS.md)")
    decoder_layers: int = option(4, "Transformer decoder layers (see --encoder-layers)")
    dim_feedforward: int = option(512, "Transformer feed-forward hidden size")
    norm_first: bool = option(True, "pre-norm Transformer layers (False: post-norm, as the paper)")
    copy: tuple[str, ...] = option(MODELS, "models given a copy mechanism (pointer-generator over the source tokens, "
                                   "See et al. 2017), comma-separated from: rnn, transformer; \"\" = none (both: "
                                   "validation loss RNN 2.48 vs 2.59, Transformer 2.22 vs 2.50, benchmarks/RESULTS.md)")
    protect_spans: bool = option(False, "replace printf placeholders, option names and numbers by one sentinel token each "
                                        "before tokenizing (the k-th distinct span of a source gets sentinel k, also in "
                                        "its training target) and put them back into the outputs, so that copying "
                                        "%.250s or --block-size=SIZE is copying one token (placeholder handling of "
                                        "production NMT; BLEU on all test pairs RNN 33.25 vs 33.26, Transformer 30.90 "
                                        "vs 31.27, benchmarks/RESULTS.md)")
    copy_continuation: tuple[str, ...] = option(
        (), "models whose copy attention gets a learned bonus for the source position after the one the previous "
        "output token was copied from, so multi-piece names are copied in order (location-aware / guided "
        "attention; needs --copy for that model), comma-separated from: rnn, transformer; \"\" = none (test beam BLEU "
        "Transformer 31.6 vs 32.8, RNN 34.6 vs 34.6, benchmarks/RESULTS.md)")
    selective_read: bool = option(False, "Transformer: CopyNet's selective read, the decoder input at step t also gets "
                                         "the mean encoder state of the source positions holding y_{t-1} (where it just "
                                         "copied from); needs --copy with transformer (test beam BLEU 32.8 vs 32.8, "
                                         "placeholders kept 87% vs 79%, benchmarks/RESULTS.md)")
    beam_size: int = option(5, "beams per sentence of beam search")
    no_repeat_ngram_size: int = option(0, "beam search: no output n-gram of this many subword tokens may occur twice "
                                          "(fairseq's --no-repeat-ngram-size; stops loops such as %s %s %s ...); 0 = off "
                                          "(chosen on validation: test beam BLEU RNN 33.9 vs 34.6, Transformer 32.6 vs "
                                          "32.8, benchmarks/RESULTS.md)")
    length_penalty: float = option(1.0, "alpha of the GNMT length penalty ((5 + |Y|) / 6) ** alpha of beam search, "
                                        "used when --length-penalty-grid is empty or --val-bleu-sentences is 0")
    length_penalty_grid: tuple[float, ...] = option(
        (0.6, 1.0, 1.4, 1.6, 1.8, 2.0), "alphas beam search tries on the validation sentences; the test set is decoded "
        "with the one of the best validation BLEU, per model (empty: --length-penalty; 1.6 and 1.8 added after the "
        "Transformer's validation BLEU peaked between 1.4 and 2, benchmarks/RESULTS.md)")
    coverage_penalty: float = option(
        0.0, "beta of GNMT's coverage penalty in beam search, beta * sum_i log(min(sum_j a_ji, 1)) over the source "
        "positions i, a = the RNN's attention or the Transformer's copy attention (needs --copy for it); 0 = none "
        "(0.1 on the Transformer: validation BLEU 44.50 vs 44.17, test 32.36 vs 32.81, benchmarks/RESULTS.md)")
    val_bleu_sentences: int = option(500, "validation sentences (a fixed seeded subset) decoded after training, "
                                          "greedy and beam, for validation BLEU and the choice of alpha; 0 = none")
    max_len_a: float = option(1.2, "decode at most a * |source| + b tokens: a")
    max_len_b: int = option(10, "decode at most a * |source| + b tokens: b")
    decode_batch_size: int = option(64, "test sentences decoded together")
    n_samples: int = option(10, "sample translations shown in the report")
    cpu_bf16: Literal["auto", "on", "off"] = option("off", "bfloat16 autocast when training on the CPU")
    seed: int = option(0, "random seed (weights, batch order, subsets)")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where to train: auto picks CUDA when available")
    progress: bool = option(True, "show a progress bar (only on a terminal)")


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds: 400 training pairs, a 1,500-piece vocabulary, tiny models, 2 epochs, 40 test sentences.
    "fast": {"limit_train": 400, "limit_val": 60, "max_test_sentences": 40, "vocab_size": 1500, "epochs": 2,
             "max_tokens": 600, "rnn_embedding_dim": 32, "rnn_hidden_size": 32, "d_model": 32, "n_heads": 2,
             "encoder_layers": 1, "decoder_layers": 1, "dim_feedforward": 64, "beam_size": 3, "n_samples": 5,
             "max_len_b": 5, "val_bleu_sentences": 30},
}


def _validate(cfg: TranslationConfig) -> None:
    checks = [
        (len(cfg.models) > 0, "--models is empty: name rnn, transformer or both"),
        (len(set(cfg.models)) == len(cfg.models), "--models: a model is named twice"),
        (0 < cfg.val_fraction < 0.5 and 0 < cfg.test_fraction < 0.5 and cfg.val_fraction + cfg.test_fraction < 0.9,
         "--val-fraction and --test-fraction must each be in (0, 0.5) and sum below 0.9"),
        (cfg.limit_train >= 0 and cfg.limit_val >= 0 and cfg.max_test_sentences >= 0,
         "--limit-train, --limit-val and --max-test-sentences must be >= 0 (0 = all)"),
        (cfg.vocab_size >= 300, "--vocab-size must be >= 300 (256 byte pieces, special tokens and placeholders)"),
        (0 < cfg.character_coverage <= 1, "--character-coverage must be in (0, 1]"),
        (cfg.max_len >= 1, "--max-len must be >= 1"),
        (cfg.epochs >= 1, "--epochs must be >= 1"),
        (cfg.max_tokens >= 1, "--max-tokens must be >= 1"),
        (0 <= cfg.bpe_dropout < 1, "--bpe-dropout must be in [0, 1) (0 = off)"),
        (0 <= cfg.min_teacher_forcing_ratio <= 1, "--min-teacher-forcing-ratio must be in [0, 1] (1 = off)"),
        (0 < cfg.warmup < 1, "--warmup must be in (0, 1)"),
        (cfg.weight_decay >= 0, "--weight-decay must be >= 0"),
        (0 <= cfg.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
        (cfg.grad_clip >= 0, "--grad-clip must be >= 0 (0 disables clipping)"),
        (0 <= cfg.ema_decay < 1, "--ema-decay must be in [0, 1) (0 disables the weight average)"),
        (0 <= cfg.coverage_penalty < float("inf"), "--coverage-penalty must be a number >= 0 (0 = none)"),
        (0 <= cfg.dropout < 1, "--dropout must be in [0, 1)"),
        (cfg.rnn_lr > 0 and cfg.transformer_lr > 0, "--rnn-lr and --transformer-lr must be > 0"),
        (cfg.beam_size >= 1, "--beam-size must be >= 1"),
        (cfg.no_repeat_ngram_size >= 0, "--no-repeat-ngram-size must be >= 0 (0 = off)"),
        (cfg.length_penalty >= 0 and all(a >= 0 for a in cfg.length_penalty_grid),
         "--length-penalty and --length-penalty-grid must be >= 0"),
        (cfg.val_bleu_sentences >= 0, "--val-bleu-sentences must be >= 0 (0 = no validation decoding)"),
        (cfg.max_len_a >= 0 and cfg.max_len_b >= 1, "--max-len-a must be >= 0 and --max-len-b >= 1"),
        (cfg.decode_batch_size >= 1, "--decode-batch-size must be >= 1"),
        (cfg.n_samples >= 0, "--n-samples must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    for flag, names in (("--models", cfg.models), ("--copy", cfg.copy), ("--copy-continuation", cfg.copy_continuation)):
        for m in names:
            if m not in MODELS:
                raise UserError(f"{flag}: unknown model {m!r}; choose from {', '.join(MODELS)}")
    if cfg.selective_read and "transformer" in cfg.models and "transformer" not in cfg.copy:
        raise UserError("--selective-read reads where the Transformer copied from; add transformer to --copy")
    if cfg.coverage_penalty > 0 and "transformer" in cfg.models and "transformer" not in cfg.copy:
        raise UserError("--coverage-penalty reads the Transformer's copy attention; add transformer to --copy or "
                        "set --coverage-penalty 0")
    for m in cfg.copy_continuation:
        if m not in cfg.copy:
            raise UserError(f"--copy-continuation {m}: the term belongs to the copy attention; add {m} to --copy "
                            f"(now {','.join(cfg.copy) or 'empty'})")
    for name in ("rnn_embedding_dim", "rnn_hidden_size", "rnn_layers", "d_model", "n_heads", "encoder_layers",
                 "decoder_layers", "dim_feedforward"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if cfg.d_model % cfg.n_heads:
        raise UserError(f"--d-model {cfg.d_model} must be divisible by --n-heads {cfg.n_heads}")
    if cfg.data:
        for ext in (".en", ".zh"):
            if not Path(cfg.data + ext).is_file():
                raise UserError(f"--data {cfg.data}: {cfg.data + ext} is missing; give the prefix of a pair of "
                                f"TED2020-format files PREFIX.en and PREFIX.zh")


# ----------------------------------------------------------------------------------- data
@dataclass
class TranslationData:
    """Tokenized splits: lists of (source ids + EOS, target ids) per split; the raw text of the decoded
    validation subset (``--val-bleu-sentences``) and of the scored test sentences."""

    tokenizer: SubwordTokenizer
    train: list[tuple[list[int], list[int]]]
    val: list[tuple[list[int], list[int]]]
    val_src: list[str]
    val_ref: list[str]
    test_src: list[str]
    test_ref: list[str]
    info: dict[str, Any]
    train_text: list[tuple[str, str]] = field(default_factory=list)  # the training pairs as text, for --bpe-dropout


def _subset(items: list, n: int, seed: int) -> list:
    """A seeded random subset of ``n`` items in their original order (all of them if n is 0 or >= len)."""
    if not n or n >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def raw_splits(cfg: TranslationConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]], dict]:
    """(train, val, test) lists of (en, zh) before tokenization, and a description of where they came from.

    Raises:
        UserError: the dataset is missing (says how to build it), unknown packages, unreadable files.
    """
    if cfg.data:
        pairs = [(en.strip(), zh.strip()) for en, zh in read_parallel_text(cfg.data + ".en", cfg.data + ".zh")]
        n_read = len(pairs)
        pairs = [(en, zh) for en, zh in pairs if en and zh]
        order = np.random.default_rng(cfg.seed).permutation(len(pairs))
        n_val, n_test = int(round(cfg.val_fraction * len(pairs))), int(round(cfg.test_fraction * len(pairs)))
        if min(n_val, n_test, len(pairs) - n_val - n_test) < 1:
            raise UserError(f"--data {cfg.data}: {len(pairs)} non-empty pairs are too few to split into train, "
                            f"validation and test")
        test = [pairs[i] for i in sorted(order[:n_test])]
        val = [pairs[i] for i in sorted(order[n_test:n_test + n_val])]
        train = [pairs[i] for i in sorted(order[n_test + n_val:])]
        source = {"dataset": f"{cfg.data}.en/.zh", "split": f"random (seed {cfg.seed}): {cfg.val_fraction:g} val, "
                  f"{cfg.test_fraction:g} test", "pairs_read": n_read, "empty_dropped": n_read - len(pairs),
                  "packages": None}
        return train, val, test, source
    if not UI_TRANSLATIONS.pairs_path().is_file():
        raise UserError(f"ui-translations is missing: run `deepnotes data build {UI_TRANSLATIONS.name}` "
                        f"(or pass --data PREFIX for TED2020-format files)")
    pairs = load_ui_translations(build=False)
    tr, va, te = package_split(pairs, cfg.val_packages, cfg.test_packages)
    packages: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name, split in (("train", tr), ("val", va), ("test", te)):
        counts = Counter(p.package for p in split)
        packages[name] = [f"{k} ({v})" for k, v in sorted(counts.items())]
    source = {"dataset": "ui-translations", "split": "by package", "pairs_read": len(pairs), "empty_dropped": 0,
              "packages": packages}
    return [(p.en, p.zh) for p in tr], [(p.en, p.zh) for p in va], [(p.en, p.zh) for p in te], source


def get_tokenizer(run_dir: Path, train: list[tuple[str, str]], cfg: TranslationConfig, reuse: bool) -> SubwordTokenizer:
    """The run's joint BPE model ``spm.model``: trained on the training pairs (both sides), or reused."""
    path = run_dir / "spm.model"
    if not (reuse and path.is_file()):
        try:
            symbols = PLACEHOLDER_SYMBOLS + (SENTINELS if cfg.protect_spans else ())
            train_sentencepiece([en for en, _ in train] + [zh for _, zh in train], run_dir / "spm", cfg.vocab_size,
                                model_type="bpe", character_coverage=cfg.character_coverage,
                                user_defined_symbols=symbols, seed=cfg.seed)
        except ValueError as e:
            raise UserError(f"the tokenizer could not be trained with --vocab-size {cfg.vocab_size} on "
                            f"{len(train)} training pairs: {e}; change --vocab-size (or lower --character-coverage)") from e
    return SubwordTokenizer.load(path)


def protect_sources(cfg: TranslationConfig, sources: list[str]) -> list[ProtectedText]:
    """``--protect-spans``: each source with its spans replaced by sentinels (else unchanged, no spans).

    Raises:
        UserError: a source already holds a sentinel character (U+E000..U+E01F).
    """
    if not cfg.protect_spans:
        return [ProtectedText(s, ()) for s in sources]
    try:
        return [protect_spans(s) for s in sources]
    except ValueError as e:
        raise _sentinel_error(e) from e


def protect_pairs(cfg: TranslationConfig, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``--protect-spans``: the training pairs as the model sees them (sources and targets with sentinels).

    Raises:
        UserError: a source or target already holds a sentinel character.
    """
    if not cfg.protect_spans:
        return pairs
    protected = protect_sources(cfg, [en for en, _ in pairs])
    try:
        return [(p.text, protect_target(zh, p.spans)) for (_, zh), p in zip(pairs, protected)]
    except ValueError as e:
        raise _sentinel_error(e) from e


def _sentinel_error(e: ValueError) -> UserError:
    return UserError(f"--protect-spans: {e}; remove that character or run without --protect-spans")


def source_lengths(cfg: TranslationConfig, tok: SubwordTokenizer, sources: list[str]) -> list[int]:
    """Subword tokens of each source as the model sees it (protected with ``--protect-spans``), EOS not counted:
    what the length filter (``--max-len``) compares."""
    return [len(tok.encode(p.text)) for p in protect_sources(cfg, sources)]


def load_data(cfg: TranslationConfig, run_dir: Path, reuse_tokenizer: bool = False) -> TranslationData:
    """Splits, subsets, the tokenizer (trained on the training split) and the length filter.

    With ``--protect-spans`` the tokenizer, the training and validation token ids and the length filter see
    the protected text; ``val_src`` / ``test_src`` / refs stay raw (:func:`translate` protects and restores)."""
    train_raw, val_raw, test_raw, source = raw_splits(cfg)
    n_raw = {"train": len(train_raw), "val": len(val_raw), "test": len(test_raw)}
    train_raw = _subset(train_raw, cfg.limit_train, cfg.seed)
    val_raw = _subset(val_raw, cfg.limit_val, cfg.seed)
    train_in = protect_pairs(cfg, train_raw)  # what the tokenizer and the model see
    tok = get_tokenizer(run_dir, train_in, cfg, reuse_tokenizer)

    def encode(pairs):  # pairs as the model sees them
        return [(tok.encode(en) + [EOS_ID], tok.encode(zh)) for en, zh in pairs]

    def keep(ids):  # both sides within the limit (the source's EOS not counted)
        return len(ids[0]) - 1 <= cfg.max_len and len(ids[1]) <= cfg.max_len

    train_kept = [(text, ids) for text, ids in zip(train_in, encode(train_in)) if keep(ids)]
    train = [ids for _, ids in train_kept]
    val_kept = [(raw, ids) for raw, ids in zip(val_raw, encode(protect_pairs(cfg, val_raw))) if keep(ids)]
    val = [ids for _, ids in val_kept]
    val_decoded = _subset([raw for raw, _ in val_kept], cfg.val_bleu_sentences, cfg.seed) if cfg.val_bleu_sentences else []
    test_lengths = source_lengths(cfg, tok, [en for en, _ in test_raw])
    test_kept = [p for p, n in zip(test_raw, test_lengths) if n <= cfg.max_len]
    test = _subset(test_kept, cfg.max_test_sentences, cfg.seed)
    if not train or not val or not test:
        raise UserError(f"after the length filter (--max-len {cfg.max_len}) a split is empty: {len(train)} train, "
                        f"{len(val)} val, {len(test)} test pairs; raise --max-len or the limits")
    info = {
        **source,
        "pairs_per_split": n_raw,
        "after_limits": {"train": len(train_raw), "val": len(val_raw)},
        "after_length_filter": {"train": len(train), "val": len(val), "test": len(test_kept)},
        "scored_test_pairs": len(test),
        "decoded_val_pairs": len(val_decoded),
        "test_subset": (f"a fixed seeded subset (seed {cfg.seed}) of {len(test)} of {len(test_kept)}"
                        if len(test) < len(test_kept) else "all"),
        "vocab_size": tok.vocab_size,
        "mean_tokens": {"train_en": float(np.mean([len(s) - 1 for s, _ in train])),
                        "train_zh": float(np.mean([len(t) for _, t in train]))},
        "length_filter": f"train/val: <= {cfg.max_len} subword tokens on both sides; test: source <= {cfg.max_len}",
    }
    return TranslationData(tok, train, val, [s for s, _ in val_decoded], [r for _, r in val_decoded],
                           [s for s, _ in test], [r for _, r in test], info, [text for text, _ in train_kept])


def batch_groups(pairs: list[tuple[list[int], list[int]]], max_tokens: int, seed: int) -> list[list[int]]:
    """Indices of ``pairs`` packed into batches of similar lengths (see :func:`make_batches`)."""
    tie = np.random.default_rng(seed).random(len(pairs))
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][1]), len(pairs[i][0]), tie[i]))
    groups: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        n = max(len(pairs[i][0]), len(pairs[i][1]) + 1)
        if cur and max(longest, n) * (len(cur) + 1) > max_tokens:
            groups.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        groups.append(cur)
    return groups


def pad_batch(pairs: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(src (B, S), tgt_in (B, T), tgt_out (B, T))`` of a list of (source ids + EOS, target ids)."""
    S, T = max(len(s) for s, _ in pairs), max(len(t) for _, t in pairs) + 1
    src = torch.full((len(pairs), S), PAD_ID, dtype=torch.long)
    tin = torch.full((len(pairs), T), PAD_ID, dtype=torch.long)
    tout = torch.full((len(pairs), T), IGNORE_INDEX, dtype=torch.long)
    for r, (s, t) in enumerate(pairs):
        src[r, :len(s)] = torch.tensor(s)
        tin[r, :len(t) + 1] = torch.tensor([BOS_ID] + t)
        tout[r, :len(t) + 1] = torch.tensor(t + [EOS_ID])
    return src, tin, tout


def make_batches(pairs: list[tuple[list[int], list[int]]], max_tokens: int, seed: int
                 ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Pack pairs of similar lengths into padded batches of at most ``max_tokens`` padded tokens.

    Pairs are sorted by target length, then source length, ties in a seeded random order; a batch
    grows while ``sentences x max(longest source, longest target + 1) <= max_tokens`` (a single longer
    pair forms its own batch).

    Returns:
        ``[(src (B, S), tgt_in (B, T), tgt_out (B, T))]``: sources end with EOS and are padded with
        ``PAD_ID``; ``tgt_in`` = BOS + target (padded with PAD), ``tgt_out`` = target + EOS (padded
        with :data:`IGNORE_INDEX`).
    """
    return [pad_batch([pairs[i] for i in g]) for g in batch_groups(pairs, max_tokens, seed)]


class ScheduledSampler:
    """Scheduled sampling (Bengio et al. 2015) of a teacher-forced seq2seq model, in two passes.

    A first pass without gradients, teacher-forced on the gold decoder input, gives the model's greedy guess
    of every target token; each gold input token is then kept with probability ε_i (one coin flip per token,
    :func:`deepnotes.nn.decoding.scheduled_sampling_inputs`) and replaced by the guess otherwise, and the
    training pass reads this mix. The guesses of all positions come from one parallel pass, as Mihaylova and
    Martins (2019) do for the Transformer (the RNN would allow feeding its guesses one step at a time; one
    rule for both models keeps them comparable). ε_i decays linearly from 1 at update 0 to ``min_ratio`` at
    the last update (:func:`deepnotes.nn.decoding.teacher_forcing_ratio`, ``"linear"``). The first pass
    runs in the model's current (training) mode, dropout included.

    ``step`` is the index of the coming update; the lab sets it from the learning-rate schedule, which the
    engine calls before preparing each batch, so a resumed run mixes the same tokens.

    Args:
        model: the model being trained (``model((src, tgt_in))`` -> logits (B, T, V)).
        min_ratio: ε at the last update, in [0, 1).
        total_steps: the number of updates, >= 1.

    Raises:
        ValueError: ``min_ratio`` outside [0, 1), ``total_steps`` < 1.
    """

    def __init__(self, model: torch.nn.Module, min_ratio: float, total_steps: int):
        if not 0 <= min_ratio < 1:
            raise ValueError(f"min_ratio must be in [0, 1), got {min_ratio}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.model, self.min_ratio, self.total_steps = model, min_ratio, total_steps
        self.step = 0

    def ratio(self) -> float:
        """ε at update :attr:`step`: the probability of feeding a gold token."""
        return teacher_forcing_ratio(self.step, "linear", k=1.0, c=(1 - self.min_ratio) / self.total_steps,
                                     min_ratio=self.min_ratio)

    def __call__(self, src: torch.Tensor, tgt_in: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The decoder input (B, T) of the training pass: gold and guessed tokens mixed, padding kept."""
        with torch.no_grad():
            guess = shift_right(self.model((src, tgt_in)).argmax(-1), BOS_ID)  # guess[:, t] stands for tgt_in[:, t]
        mixed = scheduled_sampling_inputs(tgt_in, guess, self.ratio(), generator)
        return torch.where(tgt_in == PAD_ID, tgt_in, mixed)


class BatchLookup:
    """The engine's ``prepare_batch``: a batch index -> ((src, tgt_in), tgt_out) on the device.

    With a :class:`ScheduledSampler` as ``sampler``, training batches get its mix of gold and guessed
    decoder inputs (evaluation batches never)."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], device: torch.device):
        self.batches, self.device = batches, device
        self.sampler: ScheduledSampler | None = None

    def __call__(self, x, y, train, generator):
        if x.numel() != 1:
            raise ValueError(f"one batch index per update expected, got {x.numel()}")
        src, tin, tout = self.batch(int(x[0]), train, generator)
        src, tin = src.to(self.device), tin.to(self.device)
        if train and self.sampler is not None:
            tin = self.sampler(src, tin, generator)
        return (src, tin), tout.to(self.device)

    def batch(self, b: int, train: bool, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch ``b`` as (src, tgt_in, tgt_out) on the CPU."""
        return self.batches[b]


class DropoutBatchLookup(BatchLookup):
    """:class:`BatchLookup` whose training batches are segmented anew with BPE-dropout at every draw.

    A training batch holds the same pairs as without dropout (grouped by their plain segmentation); each
    draw re-encodes their text with merge-dropout probability ``p``, from a ``random.Random`` seeded by the
    engine's per-epoch augmentation generator, so a resumed run sees the same segmentations.
    """

    def __init__(self, batches, device, n_train: int, groups: list[list[int]], text: list[tuple[str, str]],
                 bpe: BPEDropout, p: float):
        super().__init__(batches, device)
        self.n_train, self.groups, self.text, self.bpe, self.p = n_train, groups, text, bpe, p

    def batch(self, b, train, generator):
        if not train or b >= self.n_train:
            return self.batches[b]
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
        return pad_batch([(self.bpe.encode(en, self.p, rng) + [EOS_ID], self.bpe.encode(zh, self.p, rng))
                          for en, zh in (self.text[i] for i in self.groups[b])])


# ----------------------------------------------------------------------------------- models and training
def build_model(name: str, cfg: TranslationConfig, vocab_size: int) -> Seq2SeqModel:
    """The ``rnn`` or ``transformer`` model of the lab's config, over one joint vocabulary (tied embeddings)."""
    if name == "rnn":
        return RNNSeq2Seq(RNNSeq2SeqConfig(vocab_size, embedding_dim=cfg.rnn_embedding_dim,
                                           hidden_size=cfg.rnn_hidden_size, num_layers=cfg.rnn_layers,
                                           dropout=cfg.dropout, pad_id=PAD_ID, copy="rnn" in cfg.copy,
                                           copy_continuation="rnn" in cfg.copy_continuation))
    return TransformerSeq2Seq(TransformerSeq2SeqConfig(
        vocab_size, d_model=cfg.d_model, n_heads=cfg.n_heads, num_encoder_layers=cfg.encoder_layers,
        num_decoder_layers=cfg.decoder_layers, dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout,
        norm_first=cfg.norm_first, max_len=max(1024, 2 * cfg.max_len + cfg.max_len_b + 2), pad_id=PAD_ID,
        copy="transformer" in cfg.copy, copy_continuation="transformer" in cfg.copy_continuation,
        selective_read=cfg.selective_read))


def _train_config(name: str, cfg: TranslationConfig) -> TrainConfig:
    return TrainConfig(epochs=cfg.epochs, batch_size=1, optimizer="adamw", lr=_lr(name, cfg), momentum=0.9,
                       weight_decay=cfg.weight_decay, schedule="cosine", warmup=cfg.warmup, grad_clip=cfg.grad_clip,
                       label_smoothing=cfg.label_smoothing, ema_decay=cfg.ema_decay, cpu_bf16=cfg.cpu_bf16, seed=cfg.seed,
                       device=cfg.device,
                       progress=cfg.progress)


def _lr(name: str, cfg: TranslationConfig) -> float:
    return cfg.rnn_lr if name == "rnn" else cfg.transformer_lr


def make_lr_schedule(name: str, cfg: TranslationConfig, total_steps: int) -> Callable[[int, int], float]:
    """Warm-up over ``--warmup`` of the updates, then cosine decay to 0, or Noam's 1/sqrt(step) decay
    (its factor set so that it peaks at the model's learning rate)."""
    lr = _lr(name, cfg)
    if cfg.schedule == "noam":
        w = max(1, int(round(cfg.warmup * total_steps)))
        d = cfg.d_model if name == "transformer" else 2 * cfg.rnn_hidden_size
        return NoamSchedule(d_model=d, warmup=w, factor=lr * math.sqrt(d * w))
    return WarmupDecay(lr, warmup_fraction=cfg.warmup, decay="cosine")


def make_optimizer(model: torch.nn.Module, name: str, cfg: TranslationConfig) -> torch.optim.Optimizer:
    """AdamW, betas (0.9, 0.98) as the Transformer paper, weight decay on weight matrices only."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    other = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=_lr(name, cfg), betas=(0.9, 0.98))


# ----------------------------------------------------------------------------------- decoding and scores
def placeholders(text: str) -> Counter:
    """The multiset of printf placeholders in ``text`` (``%s``, ``%d``, ``%1$s``, ``%.250s``, ``%%``, ...)."""
    return Counter(PLACEHOLDER_RE.findall(text))


def placeholder_accuracy(sources: list[str], outputs: list[str]) -> tuple[float | None, int]:
    """Share of the sources holding a placeholder whose output has exactly the same multiset of them; and that count."""
    pairs = [(s, o) for s, o in zip(sources, outputs) if placeholders(s)]
    if not pairs:
        return None, 0
    return sum(placeholders(s) == placeholders(o) for s, o in pairs) / len(pairs), len(pairs)


def score(sources: list[str], hyps: list[str], refs: list[str]) -> dict[str, Any]:
    """BLEU (sacrebleu, ``tokenize="zh"``), chrF and placeholder accuracy of ``hyps`` against ``refs``."""
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh")
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    acc, n_ph = placeholder_accuracy(sources, hyps)
    return {"bleu": float(bleu.score), "chrf": float(chrf.score), "placeholder_acc": acc, "n_with_placeholders": n_ph,
            "bleu_detail": str(bleu), "n": len(hyps)}


LOOP_RE = re.compile(r"(.{2,12}?)\1{3,}")  # a unit of 2-12 characters written 4 or more times in a row


def looping_outputs(hyps: list[str], refs: list[str]) -> int:
    """How many outputs loop: hold a unit of 2-12 characters repeated 4+ times in a row that their reference lacks.

    The degenerate repetition of an autoregressive decoder (``%12) %12) %12) %12)``); a run that the reference
    also holds (``----``, ``....``) is not counted."""
    return sum(1 for h, r in zip(hyps, refs) if (m := LOOP_RE.search(h)) and m.group(0) not in r)


def length_breakdown(sources: list[str], hyps: list[str], refs: list[str], max_words: int = 10) -> dict[str, Any]:
    """Corpus BLEU on the sources of at most / more than ``max_words`` whitespace words, with each part's brevity
    penalty and length ratio (output / reference length in sacrebleu's zh tokens), and the looping outputs.

    Returns:
        ``{"max_words", "short": {"n", "bleu", "bp", "ratio"}, "long": {...}, "loops"}``; a part with no
        sentence has ``n`` 0 and None scores.
    """
    import sacrebleu

    def part(keep):
        idx = [i for i, src in enumerate(sources) if keep(len(src.split()))]
        if not idx:
            return {"n": 0, "bleu": None, "bp": None, "ratio": None}
        b = sacrebleu.corpus_bleu([hyps[i] for i in idx], [[refs[i] for i in idx]], tokenize="zh")
        return {"n": len(idx), "bleu": float(b.score), "bp": float(b.bp), "ratio": float(b.sys_len / max(b.ref_len, 1))}

    return {"max_words": max_words, "short": part(lambda n: n <= max_words), "long": part(lambda n: n > max_words),
            "loops": looping_outputs(hyps, refs)}


def translate(model: Seq2SeqModel, tok: SubwordTokenizer, sources: list[str], cfg: TranslationConfig,
              beam_size: int, device: torch.device, max_new_tokens: int | None = None,
              length_penalty: float | None = None, coverage_penalty: float | None = None,
              no_repeat_ngram_size: int | None = None, length_ratio: float = 0.0,
              penalty: Literal["gnmt", "average"] = "gnmt") -> list[str]:
    """Translate sentences in batches of similar source lengths (greedy if ``beam_size == 1``); outputs in input order.

    ``length_penalty`` (GNMT alpha) defaults to ``cfg.length_penalty``; ``coverage_penalty`` (GNMT beta, beam
    search only) to ``cfg.coverage_penalty``; ``no_repeat_ngram_size`` (beam search only) to
    ``cfg.no_repeat_ngram_size``. ``penalty`` (``"gnmt"`` or ``"average"``) and ``length_ratio`` (> 0: BLEU's brevity
    penalty against that ratio x the source length, the BP-Norm of Yang et al. 2018 with ``"average"`` and alpha 1)
    reach beam search as in :meth:`Seq2SeqModel.generate`."""
    alpha = cfg.length_penalty if length_penalty is None else length_penalty
    beta = cfg.coverage_penalty if coverage_penalty is None else coverage_penalty
    ngram = cfg.no_repeat_ngram_size if no_repeat_ngram_size is None else no_repeat_ngram_size
    protected = protect_sources(cfg, sources)
    ids = [tok.encode(p.text) + [EOS_ID] for p in protected]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[str] = [""] * len(ids)
    model.eval()
    for start in range(0, len(order), cfg.decode_batch_size):
        chunk = order[start:start + cfg.decode_batch_size]
        S = max(len(ids[i]) for i in chunk)
        src = torch.full((len(chunk), S), PAD_ID, dtype=torch.long)
        for r, i in enumerate(chunk):
            src[r, :len(ids[i])] = torch.tensor(ids[i])
        max_len = int(cfg.max_len_a * S + cfg.max_len_b)
        if max_new_tokens is not None:
            max_len = min(max_len, max_new_tokens)
        hyps = model.generate(src.to(device), BOS_ID, EOS_ID, max(1, max_len), beam_size=beam_size,
                              length_penalty=alpha, coverage_penalty=beta if beam_size > 1 else 0.0,
                              no_repeat_ngram_size=ngram if beam_size > 1 else 0, penalty=penalty,
                              length_ratio=length_ratio)
        for r, i in enumerate(chunk):
            out[i] = restore_spans(tok.decode(hyps[r]), protected[i].spans)
    return out


def evaluate_model(model: Seq2SeqModel, tok: SubwordTokenizer, sources: list[str], refs: list[str],
                   cfg: TranslationConfig, device: torch.device, length_penalty: float | None = None
                   ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Greedy and beam-search scores of one model (beam with GNMT alpha ``length_penalty``, default
    ``cfg.length_penalty``), with decoding times; and the outputs."""
    metrics, outputs = {}, {}
    for decoder in DECODERS:
        t0 = time.perf_counter()
        hyps = translate(model, tok, sources, cfg, 1 if decoder == "greedy" else cfg.beam_size, device,
                         length_penalty=length_penalty)
        seconds = time.perf_counter() - t0
        metrics[decoder] = {**score(sources, hyps, refs), "time_s": seconds, "sentences_per_s": len(hyps) / seconds}
        outputs[decoder] = hyps
    return metrics, outputs


def choose_length_penalty(model: Seq2SeqModel, tok: SubwordTokenizer, sources: list[str], refs: list[str],
                          cfg: TranslationConfig, device: torch.device) -> tuple[float, dict[str, Any] | None]:
    """Pick beam search's GNMT alpha on validation sentences (Wu et al. 2016 tuned it on a development set).

    Decodes ``sources`` greedily and by beam search once per alpha of ``cfg.length_penalty_grid`` and keeps
    the alpha of the highest BLEU (ties: the first in the grid). With no sentences it returns
    ``(cfg.length_penalty, None)``; with an empty grid it scores ``cfg.length_penalty`` alone.

    Returns:
        ``(alpha, {"n", "greedy": score, "beam": {str(alpha): score}, "length_penalty": alpha})``, scores as
        :func:`score`.
    """
    if not sources:
        return cfg.length_penalty, None
    grid = cfg.length_penalty_grid or (cfg.length_penalty,)
    greedy = score(sources, translate(model, tok, sources, cfg, 1, device), refs)
    beam = {a: score(sources, translate(model, tok, sources, cfg, cfg.beam_size, device, length_penalty=a), refs)
            for a in dict.fromkeys(grid)}
    best = max(beam, key=lambda a: beam[a]["bleu"])  # max keeps the first of equals
    return best, {"n": len(sources), "greedy": greedy, "beam": {f"{a:g}": m for a, m in beam.items()},
                  "length_penalty": best}


@torch.no_grad()
def copy_rates(model: Seq2SeqModel, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
               device: torch.device) -> dict[str, Any] | None:
    """How much a copy model copies: the mean of ``1 - p_gen`` over teacher-forced target tokens.

    Args:
        model: a model built with ``copy=True`` (else the result is None).
        batches: ``(src (B, S), tgt_in (B, T), tgt_out (B, T))`` as :func:`make_batches` gives them.

    Returns:
        ``{"in_source", "not_in_source"}``: mean copy probability over target tokens (EOS and padding
        left out) that occur / do not occur in their own source, and ``{"n_in_source", "n_not_in_source"}``
        their counts; None without a copy mechanism.
    """
    if not model.cfg.copy:
        return None
    model.eval()
    sums, counts = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.long)
    for src, tgt_in, tgt_out in batches:
        src, tgt_in, tgt_out = src.to(device), tgt_in.to(device), tgt_out.to(device)
        model((src, tgt_in))
        p = model.last_copy_prob.double().cpu()
        keep = ((tgt_out != IGNORE_INDEX) & (tgt_out != EOS_ID)).cpu()
        in_src = (tgt_out[:, :, None] == src[:, None, :]).any(-1).cpu()
        for k, where in enumerate((keep & in_src, keep & ~in_src)):
            sums[k] += p[where].sum()
            counts[k] += int(where.sum())
    mean = [float(sums[k] / counts[k]) if counts[k] else None for k in range(2)]
    return {"in_source": mean[0], "not_in_source": mean[1], "n_in_source": int(counts[0]),
            "n_not_in_source": int(counts[1])}


def _length_penalty(run_dir: Path, name: str, cfg: TranslationConfig) -> float:
    """The alpha a finished model's test decoding used (chosen on validation), else ``cfg.length_penalty``."""
    return float(read_run_json(run_dir / "models" / name / "result.json").get("length_penalty", cfg.length_penalty))


def _write_lines(path: Path, lines: list[str]) -> None:
    write_text_atomic(path, "".join(line.replace("\n", " ") + "\n" for line in lines))


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1] if path.is_file() else []


# ----------------------------------------------------------------------------------- run
def _train_one(name: str, cfg: TranslationConfig, data: TranslationData, ctx: RunContext,
               log: Callable[[str], None]) -> dict[str, Any]:
    folder = ctx.run_dir / "models" / name
    resuming = ctx.resume and (folder / CHECKPOINT_DIR).is_dir()
    if folder.exists() and not resuming:  # an unfinished model without a checkpoint: start it again
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = build_model(name, cfg, data.tokenizer.vocab_size).to(ctx.device)
    groups = batch_groups(data.train, cfg.max_tokens, cfg.seed)
    train_b = [pad_batch([data.train[i] for i in g]) for g in groups]
    val_b = make_batches(data.val, cfg.max_tokens, cfg.seed)
    n_tr, n_val = len(train_b), len(val_b)
    if cfg.bpe_dropout > 0:
        lookup = DropoutBatchLookup(train_b + val_b, ctx.device, n_tr, groups, data.train_text,
                                    BPEDropout.from_tokenizer(data.tokenizer), cfg.bpe_dropout)
    else:
        lookup = BatchLookup(train_b + val_b, ctx.device)
    train = (torch.arange(n_tr), torch.zeros(n_tr, dtype=torch.long))
    val = (torch.arange(n_tr, n_tr + n_val), torch.zeros(n_val, dtype=torch.long))
    prefix = lambda m: log(f"  [{name}] {m}")  # noqa: E731
    total_steps = n_tr * cfg.epochs
    lr_schedule = make_lr_schedule(name, cfg, total_steps)
    if cfg.min_teacher_forcing_ratio < 1:
        lookup.sampler = sampler = ScheduledSampler(model, cfg.min_teacher_forcing_ratio, total_steps)
        lr_of = lr_schedule

        def lr_schedule(step: int, total: int) -> float:  # the engine asks before preparing each update's batch
            sampler.step = step
            return lr_of(step, total)
    trainer = supervised_trainer(_train_config(name, cfg), model, folder, train, lookup, {"val": val}, ctx.device, ctx.info,
                      prefix, optimizer=make_optimizer(model, name, cfg), lr_schedule=lr_schedule, eval_batch_size=1)
    n_params = count_parameters(model)
    label = MODEL_LABELS[name] + (" + copy (pointer-generator)" if name in cfg.copy else "") + (
        " + copy continuation" if name in cfg.copy_continuation else "") + (
        " + selective read" if name == "transformer" and cfg.selective_read else "") + (
        f" + BPE-dropout {cfg.bpe_dropout:g}" if cfg.bpe_dropout > 0 else "") + (
        f" + scheduled sampling (teacher forcing 1 -> {cfg.min_teacher_forcing_ratio:g})"
        if cfg.min_teacher_forcing_ratio < 1 else "")
    log(f"[{name}] {label}: {n_params:,} parameters; {n_tr} batches of <= {cfg.max_tokens} tokens "
        f"x {cfg.epochs} epochs")
    if resuming:
        trainer.resume()
    trainer.fit()
    train_time = sum(float(r["epoch_time_s"]) for r in trainer.history)
    log(f"[{name}] trained in {train_time:.0f}s")
    gate = copy_rates(model, val_b, ctx.device)
    if gate is not None:
        log(f"[{name}] copy probability 1 - p_gen on validation target tokens: {_fmt_pct(gate['in_source'])} on those "
            f"found in their source, {_fmt_pct(gate['not_in_source'])} on the others")
    alpha, val_scores = choose_length_penalty(model, data.tokenizer, data.val_src, data.val_ref, cfg, ctx.device)
    if val_scores is not None:
        tried = ", ".join(f"{a} {m['bleu']:.2f}" + (" (chosen)" if float(a) == alpha else "")
                          for a, m in val_scores["beam"].items())
        log(f"[{name}] validation BLEU on {val_scores['n']} sentences: greedy {val_scores['greedy']['bleu']:.2f}; "
            f"beam {cfg.beam_size} by length penalty alpha: {tried}")
    log(f"[{name}] decoding {len(data.test_src)} test sentences (greedy, beam {cfg.beam_size} with alpha {alpha:g})")
    metrics, outputs = evaluate_model(model, data.tokenizer, data.test_src, data.test_ref, cfg, ctx.device,
                                      length_penalty=alpha)
    for decoder, hyps in outputs.items():
        _write_lines(folder / f"test.{decoder}.zh", hyps)
    last = trainer.history[-1]
    result = {"model": name, "label": label, "parameters": n_params, "updates": trainer.step,
              "train_time_s": train_time, "final_train_loss": last["train_loss"], "final_val_loss": last["val_loss"],
              "final_val_acc": last["val_acc"], "copy_gate": gate, "length_penalty": alpha, "val": val_scores,
              "test": metrics}
    write_json_atomic(folder / "result.json", result)
    shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)  # model.safetensors and result.json are kept
    for decoder in DECODERS:
        m = metrics[decoder]
        ph = "n/a" if m["placeholder_acc"] is None else f"{100 * m['placeholder_acc']:.1f}%"
        log(f"[{name}] {decoder}: BLEU {m['bleu']:.2f}  chrF {m['chrf']:.1f}  placeholders {ph}  "
            f"({m['time_s']:.1f}s, {m['sentences_per_s']:.1f} sentences/s)")
    return result


def run(cfg: TranslationConfig, ctx: RunContext) -> dict[str, Any]:
    """Train each model (skipping those a resumed run finished), score them on the test split, write the report."""
    _validate(cfg)
    if ctx.info.enabled:
        raise UserError("the translation lab trains its models one after another in one process; run it without torchrun")
    log = ctx.log
    t0 = time.perf_counter()
    data = load_data(cfg, ctx.run_dir, reuse_tokenizer=ctx.resume)
    write_json_atomic(ctx.run_dir / "data.json", data.info)
    _write_lines(ctx.run_dir / "test.en", data.test_src)
    _write_lines(ctx.run_dir / "test.zh", data.test_ref)
    a = data.info["after_length_filter"]
    log(f"{data.info['dataset']}: {a['train']:,} train / {a['val']:,} val pairs after the length filter, "
        f"{len(data.test_src):,} test pairs scored; joint BPE vocabulary {data.info['vocab_size']:,} "
        f"({time.perf_counter() - t0:.1f}s); device {ctx.device}")
    results = {}
    for name in cfg.models:
        done = ctx.run_dir / "models" / name / "result.json"
        if ctx.resume and done.is_file():
            results[name] = read_run_json(done)
            log(f"[{name}] already finished, kept")
            continue
        results[name] = _train_one(name, cfg, data, ctx, log)
    ref_acc, n_ph = placeholder_accuracy(data.test_src, data.test_ref)
    summary = {"models": results, "reference_placeholder_acc": ref_acc, "n_test": len(data.test_src),
               "n_test_with_placeholders": n_ph, "wall_time_s": time.perf_counter() - t0}
    write_json_atomic(ctx.run_dir / "results.json", summary)
    path = report(ctx.run_dir)
    log(f"report: {path}")
    return summary


# ----------------------------------------------------------------------------------- eval, sample
def _load_model(run_dir: Path, name: str, cfg: TranslationConfig, tok: SubwordTokenizer,
                device: torch.device) -> Seq2SeqModel:
    weights = run_dir / "models" / name / "model.safetensors"
    return load_run_weights(build_model(name, cfg, tok.vocab_size), weights, run_dir).to(device).eval()


def _finished_models(run_dir: Path, cfg: TranslationConfig) -> list[str]:
    names = [m for m in cfg.models if (run_dir / "models" / m / "result.json").is_file()]
    if not names:
        raise UserError(f"{run_dir} has no finished model; resume it with --resume {run_dir}")
    return names


def _tokenizer(run_dir: Path) -> SubwordTokenizer:
    if not (run_dir / "spm.model").is_file():
        raise UserError(f"{run_dir / 'spm.model'} is missing; is {run_dir} a finished translation run?")
    return SubwordTokenizer.load(run_dir / "spm.model")


def evaluate(run_dir: Path, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: BLEU, chrF, placeholder accuracy of every finished model, greedy and beam.

    Args:
        run_dir: a run folder of this lab.
        data: None (the run's scored test sentences, ``test.en`` / ``test.zh``) or the prefix of a
            TED2020-format pair of files ``PREFIX.en`` / ``PREFIX.zh``; pairs with an empty side or a
            source longer than the run's ``--max-len`` tokens are skipped (counted in the result).
        device: where to decode.

    Returns:
        ``{"data", "n", "skipped", "<model>_<decoder>_bleu", ..._chrf, ..._placeholder_acc, ..._time_s}``,
        also saved as ``eval/<name>.json`` with the outputs in ``eval/<name>/<model>.<decoder>.zh``.

    Raises:
        UserError: not a run folder of this lab, a missing model or tokenizer, unreadable files.
    """
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    tok = _tokenizer(run_dir)
    names = _finished_models(run_dir, cfg)
    if data is None:
        name, sources, refs, skipped = "test", _read_lines(run_dir / "test.en"), _read_lines(run_dir / "test.zh"), 0
        if not sources or len(sources) != len(refs):
            raise UserError(f"{run_dir}/test.en and test.zh are missing or differ in length; re-run the lab")
    else:
        pairs = [(en.strip(), zh.strip()) for en, zh in read_parallel_text(data + ".en", data + ".zh")]
        full = [(en, zh) for en, zh in pairs if en and zh]
        kept = [pair for pair, n in zip(full, source_lengths(cfg, tok, [en for en, _ in full])) if n <= cfg.max_len]
        if not kept:
            raise UserError(f"--data {data}: no pair with both sides non-empty and a source of <= {cfg.max_len} tokens")
        name, skipped = Path(data).name, len(pairs) - len(kept)
        sources, refs = [en for en, _ in kept], [zh for _, zh in kept]
    metrics: dict[str, Any] = {"data": name, "n": len(sources), "skipped": skipped}
    for m in names:
        model = _load_model(run_dir, m, cfg, tok, device)
        scores, outputs = evaluate_model(model, tok, sources, refs, cfg, device,
                                         length_penalty=_length_penalty(run_dir, m, cfg))
        for decoder, s in scores.items():
            for key in ("bleu", "chrf", "placeholder_acc", "time_s"):
                metrics[f"{m}_{decoder}_{key}"] = s[key]
            _write_lines(run_dir / "eval" / name / f"{m}.{decoder}.zh", outputs[decoder])
    metrics["reference_placeholder_acc"] = placeholder_accuracy(sources, refs)[0]
    write_json_atomic(run_dir / "eval" / f"{name}.json", metrics)
    return metrics


def best_model(run_dir: Path, cfg: TranslationConfig) -> str:
    """The finished model with the highest beam-search test BLEU."""
    names = _finished_models(run_dir, cfg)
    return max(names, key=lambda m: read_run_json(run_dir / "models" / m / "result.json")["test"]["beam"]["bleu"])


def sample(run_dir: Path, prompt: str, n_chars: int, temperature: float, top_k: int, top_p: float | None,
           seed: int, device: torch.device) -> str:
    """``deepnotes sample RUN --prompt TEXT``: the translation of TEXT by the run's best model (beam search).

    Translation has one right answer, so this always decodes with the run's beam search (``--beam-size``,
    the model's length penalty chosen on validation), deterministic: ``--temperature``, ``--top-k``,
    ``--top-p`` and ``--seed`` are ignored. ``n_chars`` (``--max-new-tokens``) caps the output in subword
    tokens, on top of the run's ``max-len-a * |source| + max-len-b``.

    Raises:
        UserError: an empty prompt, a prompt longer than the model's positions, an unfinished run.
    """
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    if not prompt.strip():
        raise UserError("--prompt must not be empty: give the English text to translate")
    if n_chars == 0:
        return ""
    _, cfg = load_config(run_dir)
    tok = _tokenizer(run_dir)
    (n_tokens,) = source_lengths(cfg, tok, [prompt])
    if n_tokens > 4 * cfg.max_len:
        raise UserError(f"--prompt is {n_tokens} subword tokens; this run was trained on <= {cfg.max_len}: "
                        f"translate one sentence at a time")
    name = best_model(run_dir, cfg)
    model = _load_model(run_dir, name, cfg, tok, device)
    return translate(model, tok, [" ".join(prompt.split())], cfg, cfg.beam_size, device, max_new_tokens=n_chars,
                     length_penalty=_length_penalty(run_dir, name, cfg))[0]


# ----------------------------------------------------------------------------------- report
def _fmt_pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def report(run_dir: Path) -> Path:
    """Render ``report.md`` and its figures from a run folder; return the report's path."""
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    info = read_run_json(run_dir / "data.json")
    res = read_run_json(run_dir / "results.json")
    models = res["models"]
    names = [m for m in cfg.models if m in models]

    fig = new_figure(6.8, 4.0)
    ax = fig.add_subplot()
    for i, m in enumerate(names):
        rows = read_metrics_csv(run_dir / "models" / m / "metrics.csv")
        ep = [int(r["epoch"]) for r in rows]
        ax.plot(ep, [float(r["train_loss"]) for r in rows], "o--", color=f"C{i}", label=f"{m} train (label-smoothed)")
        ax.plot(ep, [float(r["val_loss"]) for r in rows], "s-", color=f"C{i}", label=f"{m} validation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy per target token (nats)")
    ax.set_title(f"learning curves on {info['dataset']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, run_dir / "loss_curves.png")

    fig = new_figure(6.8, 3.4)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(DECODERS))
    for j, decoder in enumerate(DECODERS):
        vals = [models[m]["test"][decoder]["bleu"] for m in names]
        bars = ax.bar([k + (j - 0.5) * width for k in range(len(names))], vals, width, label=decoder)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("test BLEU (sacrebleu, zh)")
    ax.set_title("greedy decoding vs beam search")
    ax.legend(fontsize=8)
    save_figure(fig, run_dir / "bleu.png")

    validated = [m for m in names if models[m].get("val")]
    if validated:
        fig = new_figure(6.8, 3.6)
        ax = fig.add_subplot()
        for i, m in enumerate(validated):
            v = models[m]["val"]
            alphas = [float(a) for a in v["beam"]]
            ax.plot(alphas, [b["bleu"] for b in v["beam"].values()], "o-", color=f"C{i}", label=f"{m} beam {cfg.beam_size}")
            ax.axhline(v["greedy"]["bleu"], color=f"C{i}", ls=":", label=f"{m} greedy")
            ax.plot([v["length_penalty"]], [v["beam"][f"{v['length_penalty']:g}"]["bleu"]], "*", ms=14, color=f"C{i}")
        ax.set_xlabel("GNMT length-penalty alpha")
        ax.set_ylabel("validation BLEU (sacrebleu, zh)")
        ax.set_title("beam search's length penalty, chosen on validation (star)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        save_figure(fig, run_dir / "length_penalty.png")

    rows = []
    for m in names:
        alpha = models[m].get("length_penalty", cfg.length_penalty)
        for decoder in DECODERS:
            t = models[m]["test"][decoder]
            label = "greedy" if decoder == "greedy" else f"beam {cfg.beam_size}, alpha {alpha:g}"
            rows.append([m, label, f"{t['bleu']:.2f}", f"{t['chrf']:.1f}", _fmt_pct(t["placeholder_acc"]),
                         f"{t['time_s']:.1f}", f"{t['sentences_per_s']:.1f}"])
    rows.append(["reference translations", "-", "100", "100", _fmt_pct(res.get("reference_placeholder_acc")), "-", "-"])
    train_rows = [[m, models[m].get("label", MODEL_LABELS[m]), f"{models[m]['parameters']:,}", models[m]["updates"],
                   f"{models[m]['train_time_s']:.0f}", f"{models[m]['final_train_loss']:.3f}",
                   f"{models[m]['final_val_loss']:.3f}", f"{100 * models[m]['final_val_acc']:.1f}%"] for m in names]
    a, n = info["after_length_filter"], info["pairs_per_split"]
    data_rows = [[split, n[split], info.get("after_limits", {}).get(split, n[split]) if split != "test" else n[split],
                  a[split], ", ".join(info["packages"][split]) if info.get("packages") else info["split"]]
                 for split in ("train", "val", "test")]
    lines = [
        f"# {NAME}: English -> Chinese, RNN seq2seq with attention vs Transformer, greedy vs beam search", "",
        "ML2021/2022 HW5 (Machine Translation); lectures: Transformer, seq2seq decoding (beam search). "
        f"Data: {info['dataset']}, split {info['split']}; joint sentencepiece BPE vocabulary of "
        f"{info['vocab_size']:,} pieces trained on the training split only ({info['length_filter']}).", "",
        *([("Protected spans (`--protect-spans`): every printf placeholder, option name and number of a source was "
            "replaced by one sentinel token (in its training target too) and put back into the outputs; scores are "
            "computed on the restored text. Losses are over the protected tokens, so they do not compare with runs "
            "without it."), ""] if cfg.protect_spans else []),
        *(["Beam search settings: " + "; ".join(
            ([f"no repeated {cfg.no_repeat_ngram_size}-gram in an output"] if cfg.no_repeat_ngram_size else [])
            + ([f"GNMT coverage penalty beta {cfg.coverage_penalty:g}"] if cfg.coverage_penalty else [])) + ".", ""]
          if cfg.no_repeat_ngram_size or cfg.coverage_penalty else []),
        "## Test results", "",
        f"{res['n_test']:,} test sentences ({info['test_subset']} of the test pairs that pass the length filter), "
        f"from packages never seen in training. BLEU: sacrebleu `corpus_bleu(hyps, [refs], tokenize=\"zh\")`; "
        f"chrF: sacrebleu; placeholders: share of the {res['n_test_with_placeholders']} test sentences with a printf "
        "placeholder whose placeholders (as a multiset) come out exactly as in the source; time: wall-clock decoding "
        "of the whole test set.", "",
        markdown_table(["model", "decoding", "BLEU", "chrF", "placeholders", "time (s)", "sentences/s"], rows), "",
        markdown_image("test BLEU per model and decoder", "bleu.png"), "",
        HW5_BASELINES, "",
    ]
    if validated:
        grid = list(dict.fromkeys(a for m in validated for a in models[m]["val"]["beam"]))
        val_rows = []
        for m in validated:
            v = models[m]["val"]
            cells = [f"**{v['beam'][a]['bleu']:.2f}**" if float(a) == v["length_penalty"] else
                     (f"{v['beam'][a]['bleu']:.2f}" if a in v["beam"] else "-") for a in grid]
            val_rows.append([m, v["n"], f"{v['greedy']['bleu']:.2f}", *cells, f"{v['length_penalty']:g}"])
        lines += [
            "## Validation BLEU and the length penalty", "",
            f"{val_rows[0][1]:,} validation sentences (a fixed seeded subset of the validation split, never trained on), "
            f"decoded greedily and by beam search ({cfg.beam_size} beams) with each length-penalty alpha "
            "(GNMT: log-probability / ((5 + |Y|) / 6) ** alpha; 0 = raw log-probability, larger = longer outputs). "
            "Each model decodes the test set with the alpha of its best validation BLEU (bold).", "",
            markdown_table(["model", "sentences", "greedy", *[f"beam, alpha {a}" for a in grid], "chosen alpha"],
                           val_rows), "",
            markdown_image("validation BLEU against the length penalty", "length_penalty.png"), "",
        ]
    sources, refs = _read_lines(run_dir / "test.en"), _read_lines(run_dir / "test.zh")
    outputs = {(m, decoder): _read_lines(run_dir / "models" / m / f"test.{decoder}.zh")
               for m in names for decoder in DECODERS}
    splits = [(m, decoder, length_breakdown(sources, hyps, refs)) for (m, decoder), hyps in outputs.items()
              if sources and len(hyps) == len(sources) == len(refs)]
    if splits:
        split_rows = [[m, decoder, *[("-" if d[k]["n"] == 0 else
                                      f"{d[k]['bleu']:.2f} ({d[k]['n']:,}; BP {d[k]['bp']:.3f})")
                                     for k in ("short", "long")], d["loops"]] for m, decoder, d in splits]
        lines += [
            "## Test BLEU by source length", "",
            "The test sentences split by their source's length in words (BLEU on each part, with its number of "
            "sentences and sacrebleu's brevity penalty: below 1 when the outputs are shorter than the references); "
            "looping outputs hold a unit of 2-12 characters repeated 4+ times in a row that the reference lacks.", "",
            markdown_table(["model", "decoding", f"<= {splits[0][2]['max_words']} words", "longer", "looping outputs"],
                           split_rows), "",
        ]
    lines += [
        "## Training", "",
        markdown_table(["model", "what", "parameters", "updates", "training time (s)", "final train loss",
                        "final val loss", "val token accuracy"], train_rows), "",
        "Losses are per target token; the training loss includes label smoothing 0.1, the validation loss does not. "
        "Training time includes the validation pass of every epoch.", "",
    ]
    for m in names:
        gate = models[m].get("copy_gate")
        if gate:
            lines += [f"Copy gate of the {m} (teacher-forced validation targets, EOS left out): it copies with "
                      f"probability 1 - p_gen = {_fmt_pct(gate['in_source'])} on the {gate['n_in_source']:,} target "
                      "tokens that occur in their source (placeholders, option and file names, numbers) and "
                      f"{_fmt_pct(gate['not_in_source'])} on the {gate['n_not_in_source']:,} others.", ""]
    lines += [
        markdown_image("train and validation loss per epoch", "loss_curves.png"), "",
        "## Data", "",
        markdown_table(["split", "pairs", "after --limit-*", "after the length filter", "packages (pairs)"], data_rows), "",
        f"Mean subword tokens per training pair: {info['mean_tokens']['train_en']:.1f} English, "
        f"{info['mean_tokens']['train_zh']:.1f} Chinese.", "",
    ]
    outs = {m: outputs[m, "beam"] for m in names}
    if sources and cfg.n_samples:
        picks = sorted(random.Random(cfg.seed).sample(range(len(sources)), min(cfg.n_samples, len(sources))))
        headers = ["source", "reference"] + [f"{m} (beam)" for m in names]
        table = [[sources[i], refs[i]] + [outs[m][i] if i < len(outs[m]) else "" for m in names] for i in picks]
        lines += [f"## {len(picks)} sample translations (seeded random test sentences)", "",
                  markdown_table(headers, table), ""]
    evals = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    if evals:
        ev_rows = []
        for p in evals:
            e = read_run_json(p)
            for m in names:
                for decoder in DECODERS:
                    if f"{m}_{decoder}_bleu" in e:
                        ev_rows.append([e["data"], e["n"], m, decoder, f"{e[f'{m}_{decoder}_bleu']:.2f}",
                                        f"{e[f'{m}_{decoder}_chrf']:.1f}", _fmt_pct(e[f"{m}_{decoder}_placeholder_acc"])])
        lines += ["## `deepnotes eval` results", "",
                  markdown_table(["data", "sentences", "model", "decoding", "BLEU", "chrF", "placeholders"], ev_rows), ""]
    lines += [f"More: `deepnotes sample {run_dir} --prompt \"Cannot open file %s\"` translates with the best model.", "",
              "## Configuration", "",
              markdown_table(["field", "value"],
                             [[k, ",".join(map(str, v)) if isinstance(v, list) else v]
                              for k, v in read_run_json(run_dir / "config.json")["config"].items()]), ""]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


LAB = Lab(
    name=NAME,
    summary="EN->ZH translation: RNN seq2seq with attention vs Transformer, greedy vs beam search, BLEU",
    source="ML2021/2022 HW5 (Machine Translation), Transformer lectures",
    default_dataset="ui-translations",
    metric="test BLEU (sacrebleu, zh), chrF, placeholder accuracy",
    config_cls=TranslationConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
    sample=sample,
)
