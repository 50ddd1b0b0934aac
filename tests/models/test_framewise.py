"""HW2's frame-wise models: frame windows against manual stacking, the MLP rungs' shapes and parameter counts
by hand, the boss rung against ``torch.nn.LSTM``/``GRU`` on packed sequences, padding that changes nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepnotes.errors import UserError
from deepnotes.models.framewise import (
    LADDER,
    RUNGS,
    FramewiseMLP,
    FramewiseMLPConfig,
    FramewiseRNN,
    FramewiseRNNConfig,
    concat_frames,
    context_index,
    is_sequence_model,
    reverse_within_lengths,
)
from deepnotes.models.registry import create_model, list_models


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------------- frame windows
def _manual_concat(x: torch.Tensor, context: int) -> torch.Tensor:
    """HW2's concat_feat written as a loop: row t = [x[clamp(t-k)], ..., x[clamp(t+k)]]."""
    T, k = x.shape[0], context // 2
    rows = []
    for t in range(T):
        rows.append(torch.cat([x[min(max(t + j, 0), T - 1)] for j in range(-k, k + 1)]))
    return torch.stack(rows)


@pytest.mark.parametrize("context", [1, 3, 11])
def test_concat_frames_equals_manual_stacking(context):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 4, generator=g)
    out = concat_frames(x, context)
    assert out.shape == (7, context * 4)
    torch.testing.assert_close(out, _manual_concat(x, context), rtol=0, atol=0)
    # batched (B, T, C) == one by one
    xb = torch.randn(3, 7, 4, generator=g)
    ob = concat_frames(xb, context)
    assert ob.shape == (3, 7, context * 4)
    for b in range(3):
        torch.testing.assert_close(ob[b], _manual_concat(xb[b], context), rtol=0, atol=0)
    # the centre block is the frame itself
    k = context // 2
    torch.testing.assert_close(out[:, 4 * k: 4 * (k + 1)], x, rtol=0, atol=0)


def test_context_index_stays_inside_each_utterance():
    # two utterances in one frame table: frames 0-3 and 4-9
    frame = torch.arange(10)
    start = torch.tensor([0] * 4 + [4] * 6)
    end = torch.tensor([4] * 4 + [10] * 6)
    idx = context_index(frame, start, end, 5)
    assert idx.shape == (10, 5)
    assert idx[0].tolist() == [0, 0, 0, 1, 2]
    assert idx[3].tolist() == [1, 2, 3, 3, 3]  # never reaches frame 4 (the next utterance)
    assert idx[4].tolist() == [4, 4, 4, 5, 6]
    assert idx[9].tolist() == [7, 8, 9, 9, 9]
    assert ((idx >= start[:, None]) & (idx < end[:, None])).all()
    # windows gathered from the table equal concat_frames of each utterance alone
    x = torch.randn(10, 3)
    table = x[idx].flatten(1)
    torch.testing.assert_close(table[:4], concat_frames(x[:4], 5))
    torch.testing.assert_close(table[4:], concat_frames(x[4:], 5))


@pytest.mark.parametrize("context", [0, 2, -1])
def test_context_must_be_positive_odd(context):
    with pytest.raises(ValueError, match="context"):
        concat_frames(torch.zeros(3, 2), context)
    with pytest.raises(ValueError, match="context"):
        FramewiseMLPConfig(context=context)


def test_concat_frames_rejects_other_ranks():
    with pytest.raises(ValueError, match=r"\(T, C\)"):
        concat_frames(torch.zeros(3), 3)


# ----------------------------------------------------------------------------------- MLP rungs
def test_mlp_parameter_counts_by_hand():
    C, K = 39, 41
    simple = 39 * 256 + 256 + 256 * K + K
    assert _count(create_model("hw2-simple")) == simple
    d = 11 * C  # 429 inputs
    medium = (d * 512 + 512) + 2 * (512 * 512 + 512) + (512 * K + K)
    assert _count(create_model("hw2-medium")) == medium
    bn = 2 * 512  # weight and bias of each BatchNorm1d
    strong = (d * 512 + 512 + bn) + 3 * (512 * 512 + 512 + bn) + (512 * K + K)
    assert _count(create_model("hw2-strong")) == strong


def test_mlp_shapes_layers_and_errors():
    torch.manual_seed(0)
    m = create_model("hw2-strong", hidden_dim=16, num_layers=2, dropout=0.5)
    kinds = [type(layer).__name__ for layer in m.blocks]
    assert kinds == ["Linear", "ReLU", "BatchNorm1d", "Dropout"] * 2
    assert m(torch.randn(5, 11 * 39)).shape == (5, 41)
    simple = FramewiseMLP()
    assert [type(layer).__name__ for layer in simple.blocks] == ["Linear", "ReLU"]
    assert simple(torch.randn(2, 39)).shape == (2, 41)
    with pytest.raises(ValueError, match=r"\(B, 429\)"):
        m(torch.randn(5, 39))
    with pytest.raises(ValueError, match="dropout"):
        FramewiseMLPConfig(dropout=1.0)
    with pytest.raises(ValueError, match="hidden_layers"):
        FramewiseMLPConfig(hidden_layers=0)


def test_rungs_by_name_and_overrides():
    assert RUNGS == tuple(LADDER) == ("simple", "medium", "strong", "boss")
    assert {f"hw2-{r}" for r in RUNGS} <= set(list_models())
    m = create_model("hw2-medium", in_channels=13, num_classes=5, num_layers=2, hidden_dim=8)
    assert (m.cfg.input_dim, m.cfg.n_classes, m.cfg.hidden_layers, m.cfg.hidden_dim, m.cfg.context) == (13, 5, 2, 8, 11)
    boss = create_model("hw2-boss", num_layers=3, hidden_size=4)
    assert is_sequence_model(boss) and boss.cfg.num_layers == 3 and not is_sequence_model(create_model("hw2-simple"))
    torch.manual_seed(0)  # by name or by config: the same model, the same initial weights
    a = create_model("hw2-strong", context=5, hidden_dim=8)
    torch.manual_seed(0)
    b = FramewiseMLP(FramewiseMLPConfig(context=5, hidden_dim=8, hidden_layers=4, batch_norm=True, dropout=0.25))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(UserError, match="unknown model 'hw2-wizard'"):
        create_model("hw2-wizard")
    with pytest.raises(UserError, match="medium"):
        create_model("hw2-medium", hidden_size=8)  # an RNN option on an MLP rung
    with pytest.raises(UserError, match="cell"):
        create_model("hw2-boss", cell="rnn")


# ----------------------------------------------------------------------------------- boss rung
def test_reverse_within_lengths():
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_within_lengths(x, torch.tensor([5, 3]))
    assert out[0].flatten().tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert out[1].flatten().tolist() == [7.0, 6.0, 5.0, 8.0, 9.0]  # padding stays put
    torch.testing.assert_close(reverse_within_lengths(out, torch.tensor([5, 3])), x)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_parameter_count_matches_torch(cell):
    cfg = FramewiseRNNConfig(hidden_size=24, num_layers=2, cell=cell)
    m = FramewiseRNN(cfg)
    ref = (nn.LSTM if cell == "lstm" else nn.GRU)(39, 24, num_layers=2, bidirectional=True)
    gates = 4 if cell == "lstm" else 3
    H = 24
    by_hand = 2 * (gates * H * (39 + H) + 2 * gates * H) + 2 * (gates * H * (2 * H + H) + 2 * gates * H)
    assert _count(ref) == by_hand
    assert _count(m) == by_hand + 2 * H * 41 + 41  # + the frame-wise output layer
    assert set(m.rnn.state_dict()) == set(ref.state_dict())  # named as torch's


def _reference(m: FramewiseRNN, x, lengths):
    """The same weights in torch.nn.LSTM/GRU over pack_padded_sequence, then the model's head."""
    cfg = m.cfg
    ref = (nn.LSTM if cfg.cell == "lstm" else nn.GRU)(cfg.input_dim, cfg.hidden_size, num_layers=cfg.num_layers,
                                                     batch_first=True, bidirectional=True).double()
    ref.load_state_dict(m.rnn.state_dict())
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = ref(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return m.head(out)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("fused", [True, False])
def test_rnn_matches_torch_on_packed_sequences(cell, fused):
    torch.manual_seed(0)
    m = FramewiseRNN(FramewiseRNNConfig(input_dim=6, hidden_size=5, num_layers=2, cell=cell, n_classes=7,
                                        fused=fused)).double().eval()
    x = torch.randn(3, 9, 6, dtype=torch.float64)
    lengths = torch.tensor([9, 4, 6])
    out = m(x, lengths)
    assert out.shape == (3, 9, 7)
    ref = _reference(m, x, lengths)
    mask = torch.arange(9)[None, :] < lengths[:, None]
    torch.testing.assert_close(out[mask], ref[mask], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("fused", [True, False])
def test_padding_does_not_change_valid_outputs(fused):
    torch.manual_seed(1)
    m = FramewiseRNN(FramewiseRNNConfig(input_dim=4, hidden_size=6, num_layers=2, fused=fused)).double().eval()
    utts = [torch.randn(n, 4, dtype=torch.float64) for n in (8, 3, 5)]
    lengths = torch.tensor([8, 3, 5])
    for fill in (0.0, 1e3):  # whatever sits in the padding
        x = torch.full((3, 8, 4), fill, dtype=torch.float64)
        for b, u in enumerate(utts):
            x[b, : len(u)] = u
        out = m(x, lengths)
        for b, u in enumerate(utts):
            alone = m(u[None])  # (1, T_b, 41), no padding at all
            torch.testing.assert_close(out[b, : len(u)], alone[0], rtol=1e-10, atol=1e-10)
    # and the gradient of a loss on valid frames does not reach the padded inputs
    x = x.clone().requires_grad_(True)
    mask = torch.arange(8)[None, :] < lengths[:, None]
    m(x, lengths)[mask].sum().backward()
    assert x.grad[~mask].abs().max() == 0 and x.grad[mask].abs().max() > 0


def test_fused_and_readable_paths_agree_in_training_mode_gradients():
    torch.manual_seed(2)
    m = FramewiseRNN(FramewiseRNNConfig(input_dim=4, hidden_size=5, num_layers=2, dropout=0.0)).double()
    other = m.with_path(False)
    assert not other.cfg.fused and m.cfg.fused
    x, lengths = torch.randn(2, 6, 4, dtype=torch.float64), torch.tensor([6, 2])
    y = torch.randint(0, 41, (2, 6))
    y[1, 2:] = -100
    for model in (m, other):
        nn.functional.cross_entropy(model((x, lengths)).flatten(0, 1), y.flatten(), ignore_index=-100).backward()
    for (name, p), q in zip(m.named_parameters(), other.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-8, atol=1e-10, msg=name)


def test_rnn_input_errors():
    m = FramewiseRNN(FramewiseRNNConfig(hidden_size=4))
    with pytest.raises(ValueError, match=r"\(B, T, 39\)"):
        m(torch.randn(2, 5, 13))
    with pytest.raises(ValueError, match="lengths"):
        m(torch.randn(2, 5, 39), torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="lengths"):
        m(torch.randn(2, 5, 39), torch.tensor([5, 0]))
    with pytest.raises(ValueError, match="dropout"):
        FramewiseRNNConfig(dropout=-0.1)
