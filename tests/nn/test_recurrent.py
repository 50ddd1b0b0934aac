"""RNN/LSTM/GRU cells and layers from the gate equations against torch.nn: outputs, states, all gradients;
the fused path (torch's kernels on the same parameters) against the readable loop.

Everything in float64, so agreement is to ~1e-12; the weights are torch's (copied through state_dict).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepnotes.nn import recurrent
from deepnotes.nn.recurrent import (GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, gru_cell, lstm_cell,
                                     reverse_within_lengths)

DT = torch.float64
TOL = dict(atol=1e-10, rtol=1e-10)

CELLS = [  # (ours, torch's, extra kwargs, number of state tensors)
    (RNNCell, nn.RNNCell, {}, 1),
    (RNNCell, nn.RNNCell, {"nonlinearity": "relu"}, 1),
    (LSTMCell, nn.LSTMCell, {}, 2),
    (GRUCell, nn.GRUCell, {}, 1),
]
LAYERS = [
    (RNN, nn.RNN, {}),
    (RNN, nn.RNN, {"nonlinearity": "relu"}),
    (LSTM, nn.LSTM, {}),
    (GRU, nn.GRU, {}),
]
LAYER_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def _assert_grads_equal(a: nn.Module, b: nn.Module) -> None:
    pb = dict(b.named_parameters())
    for name, p in a.named_parameters():
        assert p.grad is not None and pb[name].grad is not None, name
        torch.testing.assert_close(p.grad, pb[name].grad, **TOL, msg=lambda m: f"grad of {name}: {m}")


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_()


# ------------------------------------------------------------------------------------------ cells

@pytest.mark.parametrize("ours_cls,torch_cls,kw,n_states", CELLS, ids=["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_cell_matches_torch(ours_cls, torch_cls, kw, n_states, bias, batched):
    torch.manual_seed(0)
    b = torch_cls(5, 4, bias=bias, **kw).to(DT)
    a = ours_cls(5, 4, bias=bias, **kw).to(DT)
    a.load_state_dict(b.state_dict())
    g = torch.Generator().manual_seed(1)
    lead = (3,) if batched else ()
    x = torch.randn(*lead, 5, generator=g, dtype=DT)
    states = [torch.randn(*lead, 4, generator=g, dtype=DT) for _ in range(n_states)]
    xa, xb = _leaf(x), _leaf(x)
    sa, sb = [_leaf(s) for s in states], [_leaf(s) for s in states]
    hx_a = tuple(sa) if n_states == 2 else sa[0]
    hx_b = tuple(sb) if n_states == 2 else sb[0]
    ya, yb = a(xa, hx_a), b(xb, hx_b)
    ya = ya if n_states == 2 else (ya,)
    yb = yb if n_states == 2 else (yb,)
    loss_a = loss_b = 0
    for k, (u, v) in enumerate(zip(ya, yb)):
        assert u.shape == v.shape == (*lead, 4)
        torch.testing.assert_close(u, v, **TOL)
        w = torch.randn(u.shape, generator=g, dtype=DT)  # random upstream gradient for h' (and c')
        loss_a, loss_b = loss_a + (u * w).sum(), loss_b + (v * w).sum()
    loss_a.backward()
    loss_b.backward()
    torch.testing.assert_close(xa.grad, xb.grad, **TOL)
    for u, v in zip(sa, sb):
        torch.testing.assert_close(u.grad, v.grad, **TOL)
    _assert_grads_equal(a, b)


@pytest.mark.parametrize("ours_cls,torch_cls,kw,n_states", CELLS, ids=["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_cell_default_state_is_zero_and_init_matches_torch(ours_cls, torch_cls, kw, n_states):
    torch.manual_seed(3)
    a = ours_cls(5, 4, **kw)
    torch.manual_seed(3)
    b = torch_cls(5, 4, **kw)
    assert list(a.state_dict()) == list(b.state_dict())
    for k, v in b.state_dict().items():  # same U(-1/sqrt(H), 1/sqrt(H)) draws in the same order
        torch.testing.assert_close(a.state_dict()[k], v, atol=0, rtol=0)
        assert v.abs().max() <= 1 / 4 ** 0.5
    x = torch.randn(2, 5)
    out_a, out_b = a(x), b(x)
    for u, v in zip(out_a if n_states == 2 else (out_a,), out_b if n_states == 2 else (out_b,)):
        torch.testing.assert_close(u, v)


def test_cells_hand_computed_with_zero_weights():
    # All weights zero except biases: every gate is sigm(0) = 1/2 and g = n = tanh(0) = 0.
    w_ih, w_hh = torch.zeros(4, 1, dtype=DT), torch.zeros(4, 1, dtype=DT)
    x, h, c = torch.tensor([[2.0]], dtype=DT), torch.tensor([[0.3]], dtype=DT), torch.tensor([[0.8]], dtype=DT)
    h1, c1 = lstm_cell(x, (h, c), w_ih, w_hh)
    torch.testing.assert_close(c1, torch.tensor([[0.4]], dtype=DT))  # f c + i g = 0.5 * 0.8 + 0.5 * 0
    torch.testing.assert_close(h1, 0.5 * torch.tanh(torch.tensor([[0.4]], dtype=DT)))  # o tanh(c')
    h2 = gru_cell(x, h, torch.zeros(3, 1, dtype=DT), torch.zeros(3, 1, dtype=DT))
    torch.testing.assert_close(h2, torch.tensor([[0.15]], dtype=DT))  # (1 - z) n + z h = 0.5 * 0.3
    # forget gate fully open via its bias (i, f, g, o order): c' = c exactly when i = 0
    b_ih = torch.tensor([-1e3, 1e3, 0.0, 0.0], dtype=DT)
    _, c3 = lstm_cell(x, (h, c), w_ih, w_hh, b_ih, torch.zeros(4, dtype=DT))
    torch.testing.assert_close(c3, c)


# ------------------------------------------------------------------------------------------ layers

def _layer_pair(ours_cls, torch_cls, kw, **layer_kw):
    torch.manual_seed(0)
    b = torch_cls(3, 4, **kw, **layer_kw).to(DT)
    a = ours_cls(3, 4, **kw, **layer_kw).to(DT)
    a.load_state_dict(b.state_dict())
    return a, b


def _states_tuple(hn):
    return hn if isinstance(hn, tuple) else (hn,)


@pytest.mark.parametrize("ours_cls,torch_cls,kw", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("given_hx", [False, True])
def test_layer_matches_torch(ours_cls, torch_cls, kw, bidirectional, batch_first, given_hx):
    a, b = _layer_pair(ours_cls, torch_cls, kw, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
    L, N, D = 5, 3, 2 if bidirectional else 1
    g = torch.Generator().manual_seed(1)
    x = torch.randn((N, L, 3) if batch_first else (L, N, 3), generator=g, dtype=DT)
    xa, xb = _leaf(x), _leaf(x)
    n_states = 2 if ours_cls is LSTM else 1
    if given_hx:
        states = [torch.randn(D * 2, N, 4, generator=g, dtype=DT) for _ in range(n_states)]
        sa, sb = [_leaf(s) for s in states], [_leaf(s) for s in states]
        oa, ha = a(xa, tuple(sa) if n_states == 2 else sa[0])
        ob, hb = b(xb, tuple(sb) if n_states == 2 else sb[0])
    else:
        oa, ha = a(xa)
        ob, hb = b(xb)
    assert oa.shape == ob.shape == ((N, L, D * 4) if batch_first else (L, N, D * 4))
    torch.testing.assert_close(oa, ob, **TOL)
    w_out = torch.randn(oa.shape, generator=g, dtype=DT)  # one random upstream gradient for both
    loss_a, loss_b = (oa * w_out).sum(), (ob * w_out).sum()
    for u, v in zip(_states_tuple(ha), _states_tuple(hb)):
        assert u.shape == v.shape == (D * 2, N, 4)
        torch.testing.assert_close(u, v, **TOL)
        w = torch.randn(u.shape, generator=g, dtype=DT)
        loss_a, loss_b = loss_a + (u * w).sum(), loss_b + (v * w).sum()
    loss_a.backward()
    loss_b.backward()
    torch.testing.assert_close(xa.grad, xb.grad, **TOL)
    if given_hx:
        for u, v in zip(sa, sb):
            torch.testing.assert_close(u.grad, v.grad, **TOL)
    _assert_grads_equal(a, b)


@pytest.mark.parametrize("ours_cls,torch_cls,kw", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_match_pack_padded_sequence(ours_cls, torch_cls, kw, bidirectional, batch_first):
    a, b = _layer_pair(ours_cls, torch_cls, kw, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
    L, N, D = 6, 4, 2 if bidirectional else 1
    lengths = torch.tensor([3, 6, 1, 4])  # unsorted, shortest 1, max == L
    g = torch.Generator().manual_seed(1)
    x = torch.randn((N, L, 3) if batch_first else (L, N, 3), generator=g, dtype=DT)
    n_states = 2 if ours_cls is LSTM else 1
    states = [torch.randn(D * 2, N, 4, generator=g, dtype=DT) for _ in range(n_states)]
    xa, xb = _leaf(x), _leaf(x)
    hx = tuple(states) if n_states == 2 else states[0]
    oa, ha = a(xa, hx, lengths=lengths)
    packed = pack_padded_sequence(xb, lengths, batch_first=batch_first, enforce_sorted=False)
    ob_packed, hb = b(packed, hx)
    ob, _ = pad_packed_sequence(ob_packed, batch_first=batch_first, total_length=L)
    torch.testing.assert_close(oa, ob, **TOL)  # zeros at padded positions in both
    pad = torch.arange(L)[None, :] >= lengths[:, None]  # (N, L)
    assert (oa if batch_first else oa.transpose(0, 1))[pad].abs().max() == 0
    w_out = torch.randn(oa.shape, generator=g, dtype=DT)
    loss_a, loss_b = (oa * w_out).sum(), (ob * w_out).sum()
    for u, v in zip(_states_tuple(ha), _states_tuple(hb)):
        torch.testing.assert_close(u, v, **TOL)
        w = torch.randn(u.shape, generator=g, dtype=DT)
        loss_a, loss_b = loss_a + (u * w).sum(), loss_b + (v * w).sum()
    loss_a.backward()
    loss_b.backward()
    torch.testing.assert_close(xa.grad, xb.grad, **TOL)
    _assert_grads_equal(a, b)


@pytest.mark.parametrize("ours_cls,torch_cls,kw", LAYERS[2:], ids=LAYER_IDS[2:])
def test_lengths_equal_running_each_sequence_alone(ours_cls, torch_cls, kw):
    a, _ = _layer_pair(ours_cls, torch_cls, kw, bidirectional=True, batch_first=True)
    lengths = [2, 5, 3]
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 3, generator=g, dtype=DT)
    x_noisy = x.clone()
    for n, length in enumerate(lengths):
        x_noisy[n, length:] = 1e3  # garbage in the padding must not matter
    out, hn = a(x_noisy, lengths=torch.tensor(lengths))
    out_clean, _ = a(x, lengths=torch.tensor(lengths))
    torch.testing.assert_close(out, out_clean, **TOL)
    for n, length in enumerate(lengths):
        o1, h1 = a(x[n:n + 1, :length])
        torch.testing.assert_close(out[n:n + 1, :length], o1, **TOL)
        for u, v in zip(_states_tuple(hn), _states_tuple(h1)):
            torch.testing.assert_close(u[:, n:n + 1], v, **TOL)


@pytest.mark.parametrize("ours_cls,torch_cls,kw", LAYERS, ids=LAYER_IDS)
def test_unbatched_input_matches_torch(ours_cls, torch_cls, kw):
    a, b = _layer_pair(ours_cls, torch_cls, kw, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, dtype=DT)
    n_states = 2 if ours_cls is LSTM else 1
    states = [torch.randn(4, 4, dtype=DT) for _ in range(n_states)]
    hx = tuple(states) if n_states == 2 else states[0]
    (oa, ha), (ob, hb) = a(x, hx), b(x, hx)
    assert oa.shape == (5, 8)
    torch.testing.assert_close(oa, ob, **TOL)
    for u, v in zip(_states_tuple(ha), _states_tuple(hb)):
        assert u.shape == (4, 4)
        torch.testing.assert_close(u, v, **TOL)


@pytest.mark.parametrize("ours_cls,torch_cls,kw", LAYERS, ids=LAYER_IDS)
def test_dropout_between_layers_matches_torch(ours_cls, torch_cls, kw):
    a, b = _layer_pair(ours_cls, torch_cls, kw, num_layers=3, bidirectional=True, dropout=0.5)
    x = torch.randn(4, 2, 3, dtype=DT)
    torch.manual_seed(7)
    oa, _ = a(x)
    torch.manual_seed(7)
    ob, _ = b(x)
    # torch's CPU kernel draws one dropout mask per layer output (both directions concatenated), as we do
    torch.testing.assert_close(oa, ob, **TOL)
    a.eval(), b.eval()
    torch.testing.assert_close(a(x)[0], b(x)[0], **TOL)
    a.train()
    assert not torch.allclose(a(x)[0], a.eval()(x)[0])  # dropout did act in training


def test_no_dropout_after_the_last_layer():
    with pytest.warns(UserWarning, match="no effect with num_layers=1"):
        m = LSTM(3, 4, dropout=0.9).to(DT)
    x = torch.randn(5, 2, 3, dtype=DT)
    torch.testing.assert_close(m.train()(x)[0], m.eval()(x)[0])


@pytest.mark.parametrize("ours_cls,torch_cls,kw", LAYERS, ids=LAYER_IDS)
def test_state_dict_round_trip_and_init(ours_cls, torch_cls, kw):
    torch.manual_seed(5)
    a = ours_cls(3, 4, num_layers=2, bidirectional=True, **kw)
    torch.manual_seed(5)
    b = torch_cls(3, 4, num_layers=2, bidirectional=True, **kw)
    assert list(a.state_dict()) == list(b.state_dict())
    for k, v in b.state_dict().items():  # same init: same names, shapes, order, U(-1/2, 1/2) draws
        assert a.state_dict()[k].shape == v.shape
        torch.testing.assert_close(a.state_dict()[k], v, atol=0, rtol=0)
    x = torch.randn(5, 2, 3)
    # ours -> torch
    a.reset_parameters()
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x)[0], b(x)[0], atol=1e-6, rtol=1e-6)
    # torch -> ours
    b.reset_parameters()
    a.load_state_dict(b.state_dict())
    torch.testing.assert_close(a(x)[0], b(x)[0], atol=1e-6, rtol=1e-6)
    # the fast path holds the same weights
    fast = a.to_torch()
    assert type(fast) is torch_cls
    torch.testing.assert_close(fast(x)[0], a(x)[0], atol=1e-6, rtol=1e-6)


def test_no_bias_layer_has_torch_keys():
    a, b = RNN(3, 4, num_layers=2, bias=False), nn.RNN(3, 4, num_layers=2, bias=False)
    assert list(a.state_dict()) == list(b.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1",
                                                            "weight_hh_l1"]
    a.load_state_dict(b.state_dict())
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(a(x)[0], b(x)[0], atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------------------------------ fused path

def _fused_twin(a: nn.Module) -> nn.Module:
    """A copy of ``a`` on the fused path (same weights, separate tensors so that gradients are compared)."""
    f = copy.deepcopy(a)
    f.use_fused = True
    return f


def _run_and_backward(m, x, hx, lengths, g):
    """Forward, then backward of a random linear function of the output and every final state."""
    x = _leaf(x)
    hx = None if hx is None else (tuple(_leaf(s) for s in hx) if isinstance(hx, tuple) else _leaf(hx))
    out, h_n = m(x, hx, lengths=lengths)
    loss = (out * torch.randn(out.shape, generator=g, dtype=DT)).sum()
    for s in _states_tuple(h_n):
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=DT)).sum()
    loss.backward()
    hx_grads = [] if hx is None else [s.grad for s in _states_tuple(hx)]
    return out, _states_tuple(h_n), x.grad, hx_grads, {n: p.grad for n, p in m.named_parameters()}


@pytest.mark.parametrize("ours_cls,torch_cls,kw", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("lengths", [None, [3, 6, 0, 1, 6]], ids=["full", "lengths"])
@pytest.mark.parametrize("given_hx", [False, True])
def test_fused_path_equals_readable_path(ours_cls, torch_cls, kw, bidirectional, batch_first, lengths, given_hx):
    a, _ = _layer_pair(ours_cls, torch_cls, kw, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
    f = _fused_twin(a)
    L, N, D = 6, 5, 2 if bidirectional else 1
    g = torch.Generator().manual_seed(2)
    x = torch.randn((N, L, 3) if batch_first else (L, N, 3), generator=g, dtype=DT)
    hx = None
    if given_hx:
        states = tuple(torch.randn(D * 2, N, 4, generator=g, dtype=DT) for _ in range(2 if ours_cls is LSTM else 1))
        hx = states if ours_cls is LSTM else states[0]
    lengths = None if lengths is None else torch.tensor(lengths)  # unsorted, with a 0 and a 1
    ra = _run_and_backward(a, x, hx, lengths, torch.Generator().manual_seed(3))
    rf = _run_and_backward(f, x, hx, lengths, torch.Generator().manual_seed(3))
    torch.testing.assert_close(rf[0], ra[0], **TOL)  # output (zeros past each length in both)
    for u, v in zip(rf[1], ra[1]):  # final states: after each row's last real step
        torch.testing.assert_close(u, v, **TOL)
    torch.testing.assert_close(rf[2], ra[2], **TOL)  # d/dx
    for u, v in zip(rf[3], ra[3]):  # d/dh0 (d/dc0)
        torch.testing.assert_close(u, v, **TOL)
    assert rf[4].keys() == ra[4].keys()
    for name in ra[4]:
        torch.testing.assert_close(rf[4][name], ra[4][name], **TOL, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("ours_cls,torch_cls,kw", LAYERS, ids=LAYER_IDS)
def test_fused_path_calls_torch_kernel(ours_cls, torch_cls, kw, monkeypatch):
    calls = []
    mode = {"LSTM": "LSTM", "GRU": "GRU"}.get(ours_cls.__name__, "RNN_RELU" if kw else "RNN_TANH")
    kernel = recurrent._FUSED[mode]
    monkeypatch.setitem(recurrent._FUSED, mode, lambda *args: calls.append(args[0].shape) or kernel(*args))
    a, b = _layer_pair(ours_cls, torch_cls, kw, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=DT)
    a(x)  # readable: no kernel call
    assert calls == []
    a.use_fused = True
    torch.testing.assert_close(a(x)[0], b(x)[0], **TOL)
    assert calls == [(5, 3, 3)]  # one call, every layer and direction
    calls.clear()
    a(x, lengths=torch.tensor([5, 2, 2]))
    assert calls == [(2, 3, 3), (3, 1, 3)] * 2 + [(2, 3, 8), (3, 1, 8)] * 2  # per layer and direction: 2 lengths


def test_fused_unbatched_and_with_dropout_equal_readable():
    torch.manual_seed(0)
    a = LSTM(3, 4, num_layers=3, bidirectional=True, dropout=0.5).to(DT)
    f = _fused_twin(a)
    x = torch.randn(5, 3, dtype=DT)  # unbatched (L, H_in)
    (oa, (ha, ca)), (of, (hf, cf)) = a.eval()(x), f.eval()(x)
    assert of.shape == (5, 8) and hf.shape == (6, 4)
    for u, v in ((of, oa), (hf, ha), (cf, ca)):
        torch.testing.assert_close(u, v, **TOL)
    a.train(), f.train()
    x = torch.randn(5, 2, 3, dtype=DT)
    for lengths in (None, torch.tensor([5, 3])):
        torch.manual_seed(7)
        oa, _ = a(x, lengths=lengths)
        torch.manual_seed(7)
        of, _ = f(x, lengths=lengths)
        torch.testing.assert_close(of, oa, **TOL)  # the same dropout masks between layers, drawn in the same order


def test_fused_flag_is_a_switch_not_a_new_model():
    a = GRU(3, 4, num_layers=2, use_fused=True)
    assert a.use_fused and "fused" in repr(a)
    b = nn.GRU(3, 4, num_layers=2)
    assert list(a.state_dict()) == list(b.state_dict())
    a.load_state_dict(b.state_dict())
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(a(x)[0], b(x)[0], atol=1e-6, rtol=1e-6)  # float32 kernel vs torch.nn
    a.use_fused = False
    torch.testing.assert_close(a(x)[0], b(x)[0], atol=1e-6, rtol=1e-6)
    assert RNN(3, 4, 1, "relu", use_fused=True).use_fused


def test_reverse_within_lengths_hand_case():
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_within_lengths(x, torch.tensor([5, 3]))
    assert out[:, :, 0].tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]
    torch.testing.assert_close(reverse_within_lengths(out, torch.tensor([5, 3])), x)


# ------------------------------------------------------------------------------------------ errors

def test_constructor_errors():
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        LSTM(3, 0)
    with pytest.raises(ValueError, match="input_size must be a positive int"):
        GRUCell(-1, 4)
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        GRU(3, 4, num_layers=0)
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\]"):
        RNN(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        RNNCell(3, 4, nonlinearity="gelu")


def test_forward_errors():
    lstm, gru = LSTM(3, 4, num_layers=2), GRU(3, 4, batch_first=True)
    with pytest.raises(ValueError, match="got input with 5 features"):
        lstm(torch.randn(6, 2, 5))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, L, H_in\)"):
        gru(torch.randn(2, 6, 3, 1))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 2, 4\)"):
        lstm(torch.randn(6, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(ValueError, match=r"hx = \(h0, c0\)"):
        lstm(torch.randn(6, 2, 3), torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, L=6\]"):
        gru(torch.randn(2, 6, 3), lengths=torch.tensor([7, 2]))
    with pytest.raises(ValueError, match="1-D integer tensor of N=2"):
        gru(torch.randn(2, 6, 3), lengths=torch.tensor([3, 2, 1]))
    with pytest.raises(ValueError, match="needs batched input"):
        gru(torch.randn(6, 3), lengths=torch.tensor([3]))
    with pytest.raises(ValueError, match=r"hx must have shape \(2, 4\)"):
        GRUCell(3, 4)(torch.randn(2, 3), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"LSTMCell expects hx = \(h, c\)"):
        LSTMCell(3, 4)(torch.randn(2, 3), (torch.zeros(2, 4),))
    with pytest.raises(ValueError, match="got input with 2 features"):
        RNNCell(3, 4)(torch.randn(2, 2))
