"""The training loop: exact resume, stop on a non-finite loss, gradient clipping, metrics rows."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from deepnotes.errors import UserError
from deepnotes.report import read_metrics_csv
from deepnotes.train import TrainConfig, TrainingDiverged, supervised_trainer
from deepnotes.train.checkpoint import list_checkpoints


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


class Prep:
    """Adds seeded noise in training (like augmentation), can raise at a chosen call to simulate a kill."""

    def __init__(self, fail_at=None, poison_at=None):
        self.calls, self.fail_at, self.poison_at = 0, fail_at, poison_at

    def __call__(self, x, y, train, generator):
        if train:
            self.calls += 1
            if self.calls == self.fail_at:
                raise KeyboardInterrupt("simulated kill")
            x = x + 0.1 * torch.randn(x.shape, generator=generator)
            if self.calls == self.poison_at:
                x = x * float("nan")
        return x, y


CFG = TrainConfig(epochs=4, batch_size=16, lr=0.05, schedule="onecycle", progress=False)


def _trainer(tmp_path, prep, cfg=CFG):
    x, y = _data()
    xv, yv = _data(48, seed=1)
    return supervised_trainer(cfg, _model(), tmp_path, (x, y), prep, {"val": (xv, yv)}, torch.device("cpu"), log=lambda m: None)


@pytest.mark.parametrize("overrides", [{}, {"ema_decay": 0.9}, {"lookahead_steps": 4, "lookahead_alpha": 0.5}])
def test_resume_after_kill_equals_uninterrupted(tmp_path, overrides):
    cfg = replace(CFG, **overrides)  # Lookahead every 4 of 6 updates per epoch: a synchronization inside epoch 3
    ema_decay = cfg.ema_decay
    full = _trainer(tmp_path / "full", Prep(), cfg)
    hist_full = full.fit()

    run = tmp_path / "killed"
    killed = _trainer(run, Prep(fail_at=6 * 2 + 3), cfg)  # 6 updates per epoch: dies inside epoch 3
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert [p.name for p in list_checkpoints(run)] == ["epoch-0001", "epoch-0002"]
    assert (run / "checkpoints" / "epoch-0002" / "ema.safetensors").is_file() == (ema_decay > 0)
    assert (run / "checkpoints" / "epoch-0002" / "lookahead.safetensors").is_file() == (cfg.lookahead_steps > 0)
    torch.manual_seed(12345)  # the resumed process starts with another global RNG state
    resumed = _trainer(run, Prep(), cfg)
    resumed.resume()
    assert resumed.epoch == 2 and resumed.step == 12
    hist_resumed = resumed.fit()

    for a, b in zip(hist_full, hist_resumed):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "step"):
            assert a[key] == b[key], key
    for (k, v1), v2 in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v1, v2), k
    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


class Snapshots(Prep):
    """Records the model's weights at every training batch, i.e. after every update so far."""

    def __init__(self):
        super().__init__()
        self.model, self.seen = None, []

    def __call__(self, x, y, train, generator):
        if train:
            self.seen.append([p.detach().clone() for p in self.model.parameters()])
        return super().__call__(x, y, train, generator)


def test_ema_follows_the_recurrence_and_is_what_is_evaluated_and_saved(tmp_path):
    """theta_ema = theta_1 after the first update, then d_k theta_ema + (1 - d_k) theta_k with the warm-up
    d_k = min(d, k / (9 + k)) (TensorFlow's num_updates rule, n = k - 1 updates averaged); checked against the
    weights seen at every batch and the raw weights of the last checkpoint; the saved model and the last
    validation loss are the average's."""
    from safetensors.torch import load_file

    d = 0.5  # the warm-up k / (9 + k) reaches it at k = 9
    prep = Snapshots()
    trainer = _trainer(tmp_path, prep, replace(CFG, epochs=2, ema_decay=d))
    prep.model = trainer.model
    names = [n for n, _ in trainer.model.named_parameters()]
    hist = trainer.fit()
    last = load_file(str(tmp_path / "checkpoints" / "epoch-0002" / "model.safetensors"))  # raw theta_12
    thetas = prep.seen[1:] + [[last[n] for n in names]]  # theta_1 .. theta_12
    assert trainer.step == 12 and len(thetas) == 12
    ema = [p.clone() for p in thetas[0]]
    for k, theta in enumerate(thetas[1:], start=2):
        d_k = min(d, k / (9 + k))
        ema = [d_k * e + (1 - d_k) * t for e, t in zip(ema, theta)]
        if k == 6:  # the end of epoch 1: its checkpoint holds the average so far
            at_6 = load_file(str(tmp_path / "checkpoints" / "epoch-0001" / "ema.safetensors"))
            for n, e in zip(names, ema):
                torch.testing.assert_close(at_6[f"module.{n}"], e)
    saved = load_file(str(tmp_path / "model.safetensors"))
    for n, e, t in zip(names, ema, thetas[-1]):
        torch.testing.assert_close(saved[n], e)
        assert not torch.allclose(e, t)  # the average is not the last weights
    plain = _model()
    plain.load_state_dict(saved)
    xv, yv = _data(48, seed=1)
    with torch.no_grad():
        loss = nn.functional.cross_entropy(plain.eval()(xv), yv).item()
    assert loss == pytest.approx(hist[-1]["val_loss"], rel=1e-5)


@pytest.mark.parametrize("ramp", [False, True])
def test_lookahead_follows_the_paper_and_ends_on_the_slow_weights(tmp_path, ramp):
    """Zhang et al. 2019, Algorithm 1: phi_0 = theta_0; after k inner updates from theta = phi_{t-1} to theta_k,
    phi_t = phi_{t-1} + alpha (theta_k - phi_{t-1}) and training continues from phi_t. 6 updates per epoch, k = 3:
    two synchronizations; the fast weights before each are captured, the result read from the next batch's
    weights and from the saved model."""
    from safetensors.torch import load_file

    from deepnotes.train.engine import lookahead_alpha_at

    alpha = 0.3
    prep = Snapshots()
    trainer = _trainer(tmp_path, prep, replace(CFG, epochs=1, lookahead_steps=3, lookahead_alpha=alpha,
                                               lookahead_ramp=ramp))
    prep.model = trainer.model
    fast_before, alphas = [], []
    sync = trainer._lookahead_sync
    trainer._lookahead_sync = lambda a: (fast_before.append([p.detach().clone() for p in trainer.model.parameters()]),
                                         alphas.append(a), sync(a))
    trainer.fit()
    want_alphas = [1 - (1 - alpha) * (s / 6) ** 3 for s in (3, 6)] if ramp else [alpha, alpha]
    assert alphas == pytest.approx(want_alphas) and alphas == [lookahead_alpha_at(alpha, ramp, s, 6) for s in (3, 6)]
    phi = prep.seen[0]  # theta_0
    phi = [p + alphas[0] * (f - p) for p, f in zip(phi, fast_before[0])]
    for got, want in zip(prep.seen[3], phi):  # update 4 starts from phi_1
        torch.testing.assert_close(got, want)
    phi = [p + alphas[1] * (f - p) for p, f in zip(phi, fast_before[1])]
    saved = load_file(str(tmp_path / "model.safetensors"))
    for (name, _), want, fast in zip(trainer.model.named_parameters(), phi, fast_before[1]):
        torch.testing.assert_close(saved[name], want)
        assert not torch.allclose(want, fast)  # the slow weights are not the last trained ones


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, Prep(poison_at=6 + 2))  # the 8th update: second epoch, second batch
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, update 8.*epoch-0001.*--lr"):
        trainer.fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch-0001"]
    state = json.loads((tmp_path / "checkpoints" / "epoch-0001" / "state.json").read_text())
    assert state["epoch"] == 1 and state["step"] == 6
    assert not (tmp_path / "model.safetensors").exists()


def test_grad_clip_bounds_the_update(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=96, lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant",
                      grad_clip=1e-3, progress=False)
    trainer = _trainer(tmp_path, Prep(), cfg)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit()  # one update of plain SGD with lr 1: the parameter change is the clipped gradient
    delta = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before)])
    assert delta.norm() == pytest.approx(1e-3, rel=1e-3)


def test_metrics_rows_and_final_weights(tmp_path):
    trainer = _trainer(tmp_path, Prep(), TrainConfig(epochs=2, batch_size=32, progress=False))
    trainer.fit()
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == [3, 6]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "throughput", "epoch_time_s"} <= set(rows[0])
    assert 0 <= rows[-1]["val_acc"] <= 1
    assert (tmp_path / "model.safetensors").is_file()
    assert len(trainer.lr_schedule()) == 6


def test_cpu_bf16_autocast_switch(tmp_path, monkeypatch):
    from dataclasses import replace

    from deepnotes.train import engine

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert engine.use_cpu_bf16(replace(CFG, cpu_bf16="on"), cpu)
    assert not engine.use_cpu_bf16(replace(CFG, cpu_bf16="off"), cpu)
    assert not engine.use_cpu_bf16(replace(CFG, cpu_bf16="on"), cuda)  # CUDA has its own --amp
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    assert not engine.use_cpu_bf16(replace(CFG, cpu_bf16="auto"), cpu)
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    assert engine.use_cpu_bf16(replace(CFG, cpu_bf16="auto"), cpu)

    # Under the switch the forward pass really runs in bfloat16, and training still learns.
    seen = []
    trainer = _trainer(tmp_path, Prep(), replace(CFG, cpu_bf16="on", epochs=6))
    trainer.model.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    history = trainer.fit()
    assert torch.bfloat16 in seen
    assert history[-1]["train_loss"] < history[0]["train_loss"]


class _TinyLM(nn.Module):
    """Embedding -> linear next-token logits (B, T, V)."""

    def __init__(self, vocab=5):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.out = nn.Embedding(vocab, 8), nn.Linear(8, vocab)

    def forward(self, x):
        return self.out(self.emb(x))


def test_sequence_logits_and_fixed_steps_per_epoch(tmp_path):
    # A cyclic sequence 0 1 2 3 4 0 1 ...: the next token is a function of the current one.
    text = torch.arange(400) % 5
    starts = torch.arange(len(text) - 9)

    def windows(idx, _y, train, generator):
        w = text[idx[:, None] + torch.arange(9)]
        return w[:, :-1], w[:, 1:]

    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05, optimizer="adamw", schedule="constant", progress=False)
    val = (starts[::8], starts[::8])
    trainer = supervised_trainer(cfg, _TinyLM(), tmp_path, (starts, starts), windows, {"val": val}, torch.device("cpu"),
                      log=lambda m: None, steps_per_epoch=7)
    hist = trainer.fit()
    assert [row["step"] for row in hist] == [7, 14, 21]  # 7 updates an epoch, not len(starts) / 8
    assert hist[-1]["val_acc"] > 0.95 and hist[-1]["val_loss"] < hist[0]["val_loss"]
    # each epoch's batches are distinct windows (drawn without replacement), and beyond one pass they chain
    batches = [b.tolist() for b in trainer.train_batches.indices(0)]
    assert len(batches) == 7 and len({i for b in batches for i in b}) == 56
    trainer.train_batches.steps_per_epoch = 60  # 480 > 391 windows: a second permutation follows the first
    flat = [i for b in trainer.train_batches.indices(0) for i in b.tolist()]
    assert len(flat) == 480 and sorted(flat[:391]) == starts.tolist()
    with pytest.raises(ValueError, match="steps_per_epoch"):
        supervised_trainer(cfg, _TinyLM(), tmp_path, (starts, starts), windows, {}, torch.device("cpu"), steps_per_epoch=0)


def test_sample_weights_draw_in_proportion_repeatably(tmp_path):
    x, y = _data()
    w = torch.zeros(96)
    w[:8], w[8:16] = 1.0, 3.0  # 8 examples of weight 1, 8 of weight 3, the rest never drawn
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False)
    trainer = supervised_trainer(cfg, _model(), tmp_path, (x, y), Prep(), {}, torch.device("cpu"), log=lambda m: None,
                      sample_weights=w, steps_per_epoch=250)
    drawn = torch.cat(list(trainer.train_batches.indices(0)))
    assert len(drawn) == 4000 and int(drawn.max()) < 16  # zero weight: never drawn
    share = float((drawn >= 8).double().mean())
    assert 0.72 < share < 0.78  # expected 3/4 (binomial sd 0.007)
    assert torch.equal(drawn, torch.cat(list(trainer.train_batches.indices(0))))  # the same epoch draws the same (resume)
    assert not torch.equal(drawn, torch.cat(list(trainer.train_batches.indices(1))))
    for bad, match in ((torch.ones(5), "5 entries for 96"), (-w, ">= 0"), (torch.zeros(96), "not all 0")):
        with pytest.raises(ValueError, match=match):
            supervised_trainer(cfg, _model(), tmp_path, (x, y), Prep(), {}, torch.device("cpu"), sample_weights=bad)


def test_padding_targets_count_in_neither_loss_nor_accuracy():
    from deepnotes.train.task import IGNORE_INDEX, classification_sums

    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]])  # (1, 3, 2): predicts 0, 1, 0
    y = torch.tensor([[0, 0, IGNORE_INDEX]])
    flat_logits, flat_y = logits.reshape(-1, 2), y.reshape(-1)
    loss = torch.nn.functional.cross_entropy(flat_logits, flat_y, ignore_index=IGNORE_INDEX)
    out = classification_sums(loss, flat_logits, flat_y)
    assert out.count == 2 and out.sums["acc"] == 1.0  # the padded third position is not counted
    assert abs(out.sums["loss"] / out.count - float(loss)) < 1e-6


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_make_optimizer_fused_foreach_and_loop_take_the_same_steps(optimizer):
    from deepnotes.train.engine import make_optimizer

    results = {}
    for impl in ("fused", "foreach", "for-loop"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
        cfg = TrainConfig(optimizer=optimizer, lr=0.05, weight_decay=0.01, beta2=0.99, optimizer_impl=impl)
        opt = make_optimizer(model, cfg)
        assert opt.defaults.get("fused") is (True if impl == "fused" else None)
        if optimizer == "adamw":
            assert opt.defaults["betas"] == (0.9, 0.99)
        x = torch.randn(16, 6)
        for _ in range(5):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
        results[impl] = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(results["fused"], results["for-loop"], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(results["foreach"], results["for-loop"], atol=1e-6, rtol=1e-6)
    assert not torch.equal(results["fused"], torch.zeros_like(results["fused"]))


def test_maybe_compile_off_without_a_compiler_and_on(monkeypatch):
    from deepnotes.train import engine

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 3))
    cpu = torch.device("cpu")
    assert engine.maybe_compile(model, "off", cpu) is model
    lines: list[str] = []
    monkeypatch.setattr(engine, "compiler_available", lambda device: False)
    assert engine.maybe_compile(model, "auto", cpu, lines.append) is model
    assert len(lines) == 1 and "without torch.compile" in lines[0]
    monkeypatch.undo()
    if not engine.compiler_available(cpu):
        pytest.skip("no C++ compiler here")
    compiled = engine.maybe_compile(model, "on", cpu)
    assert compiled is not model
    x = torch.randn(5, 4)
    eager_out = model(x)
    compiled_out = compiled(x)
    torch.testing.assert_close(compiled_out, eager_out, atol=1e-5, rtol=1e-5)
    compiled_out.sum().backward()  # gradients reach the shared parameters
    assert model[0].weight.grad is not None


def test_fit_or_load_trains_continues_or_loads_finished_weights(tmp_path):
    full = _trainer(tmp_path / "full", Prep())
    seconds = full.fit_or_load(resume=False)
    assert full.epoch == CFG.epochs and seconds == pytest.approx(sum(r["epoch_time_s"] for r in full.history))
    weights = {k: v.clone() for k, v in full.model.state_dict().items()}

    again = _trainer(tmp_path / "full", Prep())  # fresh random weights
    assert not torch.equal(again.model[0].weight, weights["0.weight"])
    assert again.fit_or_load(resume=True) == pytest.approx(seconds, rel=1e-6, abs=1e-6)  # read from metrics.csv
    assert again.epoch == 0  # nothing trained
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, weights[k]), k

    run = tmp_path / "killed"  # checkpoints but no finished weights: continues, ends as the uninterrupted run
    with pytest.raises(KeyboardInterrupt):
        _trainer(run, Prep(fail_at=6 * 2 + 3)).fit()
    resumed = _trainer(run, Prep())
    resumed.fit_or_load(resume=True)
    assert len(resumed.history) == CFG.epochs
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, weights[k]), k

    (tmp_path / "full" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="cannot load .*model.safetensors"):
        _trainer(tmp_path / "full", Prep()).fit_or_load(resume=True)
