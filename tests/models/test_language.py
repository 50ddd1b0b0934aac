"""The character language models: causality of GPT, shapes, tied head, the decoding step, the registry's builders,
generation, and the language-model training pattern resumed after a kill equal to an uninterrupted run."""

from dataclasses import replace

import pytest
import torch

from deepnotes.data.text import CharVocab, EvalWindows, WindowBatches
from deepnotes.errors import UserError
from deepnotes.models.language import GPT, GPTConfig, LSTMLanguageModel, LSTMLMConfig, count_parameters, generate
from deepnotes.models.registry import create_model
from deepnotes.train import ClassificationTask, TrainConfig, Trainer
from deepnotes.train.checkpoint import list_checkpoints


@pytest.mark.parametrize("make", [
    lambda: GPT(GPTConfig(11, block_size=16, num_layers=2, n_heads=2, d_model=16, use_fused=False)),
    lambda: GPT(GPTConfig(11, block_size=16, num_layers=2, n_heads=2, d_model=16, use_fused=True)),
    lambda: LSTMLanguageModel(LSTMLMConfig(11, embedding_dim=8, hidden_size=12, num_layers=2)),
])
def test_logits_at_t_do_not_depend_on_later_tokens(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randint(0, 11, (3, 16))
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 11  # change every token from position 9 on
    a, b = model(x), model(y)
    assert a.shape == (3, 16, 11)
    torch.testing.assert_close(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])
    torch.testing.assert_close(model.step_logits(x[:, :5]), a[:, 4])


def test_gpt_head_is_the_embedding_and_context_is_cropped():
    torch.manual_seed(0)
    model = GPT(GPTConfig(7, block_size=8, num_layers=1, n_heads=1, d_model=8))
    assert "head.weight" not in model.state_dict()
    n_embed = 7 * 8 + 8 * 8  # tokens + positions
    block = 4 * 8 * 8 + 4 * 8 + 2 * (8 * 32) + 32 + 8 + 2 * 2 * 8  # attention, feed-forward, two LayerNorms
    assert count_parameters(model) == n_embed + block + 2 * 8  # + the final LayerNorm
    long = torch.randint(0, 7, (2, 20))
    torch.testing.assert_close(model.step_logits(long), model(long[:, -8:])[:, -1])
    with pytest.raises(ValueError, match="exceeds block_size 8"):
        model(long)


def test_builders_by_name():
    torch.manual_seed(0)
    gpt = create_model("gpt", vocab_size=9, block_size=8, num_layers=2, n_heads=2, d_model=8, dropout=0.1)
    assert isinstance(gpt, GPT) and gpt.cfg == GPTConfig(9, 8, 2, 2, 8, 0.1, True) and len(gpt.blocks) == 2
    lstm = create_model("lstm-lm", vocab_size=9, embedding_dim=4, hidden_size=6, num_layers=3)
    assert isinstance(lstm, LSTMLanguageModel) and lstm.cfg == LSTMLMConfig(9, 4, 6, 3, 0.0)
    a = create_model("cbow", vocab_size=30, embedding_dim=5, init_seed=3)
    b = create_model("cbow", vocab_size=30, embedding_dim=5, init_seed=3)
    assert torch.equal(a.E.weight, b.E.weight) and not a.E.sparse and a.M.weight.abs().sum() == 0
    assert create_model("cbow", vocab_size=30, embedding_dim=5, sparse=True).E.sparse
    with pytest.raises(UserError, match="d_model 10 must be divisible by n_heads 4"):
        create_model("gpt", vocab_size=9, d_model=10, n_heads=4)


def test_generate_continues_the_prompt_seeded_and_greedy():
    vocab = CharVocab.from_text("abc d")
    torch.manual_seed(0)
    model = create_model("lstm-lm", vocab_size=len(vocab), embedding_dim=4, hidden_size=8, num_layers=1)
    one = generate(model, vocab, "ab", 12, temperature=1.0, seed=5)
    assert one.startswith("ab") and len(one) == 14 and set(one) <= set(vocab.itos)
    assert generate(model, vocab, "ab", 12, temperature=1.0, seed=5) == one
    greedy = generate(model, vocab, "ab", 1, temperature=0.0)
    logits = model.step_logits(torch.as_tensor(vocab.encode("ab"))[None])
    assert greedy == "ab" + vocab.itos[int(logits.argmax())]
    assert generate(model, vocab, "ab", 0, 1.0) == "ab"
    with pytest.raises(UserError, match="--prompt must not be empty"):
        generate(model, vocab, "", 3, 1.0)
    with pytest.raises(UserError, match="'z' is not in the vocabulary"):
        generate(model, vocab, "az", 3, 1.0)


class KilledTask(ClassificationTask):
    """Next-token cross-entropy that raises KeyboardInterrupt at its ``kill_at``-th training step (a killed process)."""

    kill_at = None

    def training_step(self, model, batch, step):
        if step.step + 1 == self.kill_at:
            raise KeyboardInterrupt("simulated kill")
        return super().training_step(model, batch, step)


def _lm_trainer(run_dir, kill_at=None):
    g = torch.Generator().manual_seed(0)
    text = torch.randint(0, 7, (400,), generator=g)  # a token stream; windows of 8 + 1 tokens
    torch.manual_seed(1)
    model = create_model("gpt", vocab_size=7, block_size=8, num_layers=1, n_heads=2, d_model=8, dropout=0.2)
    task = KilledTask(model, label_smoothing=0.1)
    task.kill_at = kill_at
    cfg = replace(TrainConfig(), epochs=3, batch_size=6, optimizer="adamw", lr=3e-3, schedule="cosine", warmup=0.1,
                  grad_clip=1.0, progress=False)
    train = WindowBatches(text[:300], 8, cfg.batch_size, seed=4, steps_per_epoch=5)
    return Trainer(cfg, task, run_dir, train, {"val": EvalWindows(text[300:], 8, 4)}, torch.device("cpu"),
                   log=lambda m: None)


def test_language_model_resumed_after_a_kill_equals_uninterrupted(tmp_path):
    """The char-gpt / lstm-lm pattern: ClassificationTask over (B, T, V) logits and (B, T) targets, windows drawn by
    WindowBatches; dropout draws from the global RNG, which the checkpoint restores."""
    full = _lm_trainer(tmp_path / "full")
    hist_full = full.fit()
    killed = _lm_trainer(tmp_path / "killed", kill_at=2 * 5 + 3)  # 5 updates per epoch: dies inside epoch 3
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["epoch-0001", "epoch-0002"]
    torch.manual_seed(12345)  # the resumed process starts with another global RNG state
    resumed = _lm_trainer(tmp_path / "killed")
    resumed.resume()
    assert (resumed.epoch, resumed.step) == (2, 10)
    hist_resumed = resumed.fit()
    assert len(hist_full) == len(hist_resumed) == 3
    for a, b in zip(hist_full, hist_resumed):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "step"):
            assert a[key] == b[key], key
    for (k, v1), v2 in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v1, v2), k
