"""The character language models: causality of GPT, shapes, tied head, the decoding step."""

import pytest
import torch

from deepnotes.models.language import GPT, GPTConfig, LSTMLanguageModel, LSTMLMConfig, count_parameters


@pytest.mark.parametrize("make", [
    lambda: GPT(GPTConfig(11, block_size=16, n_layers=2, n_heads=2, d_model=16, use_fused=False)),
    lambda: GPT(GPTConfig(11, block_size=16, n_layers=2, n_heads=2, d_model=16, use_fused=True)),
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
    model = GPT(GPTConfig(7, block_size=8, n_layers=1, n_heads=1, d_model=8))
    assert "head.weight" not in model.state_dict()
    n_embed = 7 * 8 + 8 * 8  # tokens + positions
    block = 4 * 8 * 8 + 4 * 8 + 2 * (8 * 32) + 32 + 8 + 2 * 2 * 8  # attention, feed-forward, two LayerNorms
    assert count_parameters(model) == n_embed + block + 2 * 8  # + the final LayerNorm
    long = torch.randint(0, 7, (2, 20))
    torch.testing.assert_close(model.step_logits(long), model(long[:, -8:])[:, -1])
    with pytest.raises(ValueError, match="exceeds block_size 8"):
        model(long)
