"""Linear probes: a label written linearly into one layer is found there and not in a layer of pure noise;
layer_features against direct forwards; hooks and model state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepnotes.analysis.probing import INPUT, layer_features, linear_probe, probe_layers
from deepnotes.models.cnn import LeNet5


class _TwoBranches(nn.Module):
    """x = [signal (4 dims), noise (6 dims)] -> "signal" reads only the first part, "noise" only the second."""

    def __init__(self):
        super().__init__()
        self.signal = nn.Linear(10, 6)
        self.noise = nn.Linear(10, 6)
        with torch.no_grad():
            self.signal.weight[:, 4:] = 0
            self.noise.weight[:, :4] = 0
        self.act = nn.ReLU()
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.act(torch.cat([self.signal(x), self.noise(x)], 1)))


def _data(n: int = 1200, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    means = 3 * torch.randn(4, 4, generator=g)
    x = torch.cat([means[y] + 0.5 * torch.randn(n, 4, generator=g), torch.randn(n, 6, generator=g)], 1)
    unrelated = torch.randint(0, 4, (n,), generator=g)
    return x, y, unrelated


def test_probe_finds_the_label_where_it_is_and_not_in_noise():
    torch.manual_seed(0)
    model = _TwoBranches()
    x, y, unrelated = _data()
    idx = np.random.default_rng(0).permutation(len(x))
    result = probe_layers(model, x, {"y": y, "unrelated": unrelated}, [INPUT, "signal", "noise", "act", ""],
                          idx[:600], idx[600:], batch_size=256)
    assert list(result) == ["y", "unrelated"] and list(result["y"]) == [INPUT, "signal", "noise", "act", ""]
    chance = 0.25
    assert result["y"][INPUT] > 0.9 and result["y"]["signal"] > 0.9 and result["y"]["act"] > 0.8
    assert abs(result["y"]["noise"] - chance) < 0.08
    assert all(abs(acc - chance) < 0.08 for acc in result["unrelated"].values())


def test_layer_features_match_direct_forwards_and_copy_before_inplace_relu():
    torch.manual_seed(0)
    model = LeNet5()  # features.0 is followed by ReLU(inplace=True)
    x = torch.rand(50, 1, 28, 28)
    feats = layer_features(model, x, ["features.0", "features.2", "classifier.1", ""], batch_size=7)
    with torch.no_grad():
        conv = model.features[0](x)
        pooled = model.features[:3](x)
        fc = model.classifier[:2](model.features(x))
        logits = model(x)
    assert feats["features.0"].shape == (50, 6 * 28 * 28) and feats["features.0"].dtype == np.float32
    assert feats["features.0"].min() < 0  # the convolution's output, not the ReLU's
    np.testing.assert_allclose(feats["features.0"], conv.reshape(50, -1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["features.2"], pooled.reshape(50, -1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["classifier.1"], fc.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[""], logits.numpy(), rtol=1e-5, atol=1e-6)


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_eval_mode_during_extraction_then_restored_and_hooks_removed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    with torch.no_grad():
        model[1].running_mean.fill_(1.0)
    x = torch.randn(20, 3)
    feats = layer_features(model, x, ["2"])
    with torch.no_grad():
        expected = model.eval()[:3](x)
    model.train()
    np.testing.assert_allclose(feats["2"], expected.numpy(), rtol=1e-5, atol=1e-6)
    assert model.training and _hook_count(model) == 0
    branches = _TwoBranches()
    branches.unused = nn.Linear(1, 1)  # registered, never called in forward
    with pytest.raises(ValueError, match="did not run"):
        layer_features(branches, torch.randn(4, 10), ["signal", "unused"])
    assert _hook_count(branches) == 0 and branches.training


def test_linear_probe_on_known_data_and_bad_arguments():
    x = np.arange(40, dtype=np.float64)[:, None]
    y = (x[:, 0] >= 20).astype(int)
    train = np.arange(40) % 2 == 0
    assert linear_probe(x, y, train, ~train) == 1.0
    assert linear_probe(torch.tensor(x), torch.tensor(y), np.arange(0, 40, 2), np.arange(1, 40, 2)) == 1.0
    with pytest.raises(ValueError, match="overlap"):
        linear_probe(x, y, np.arange(0, 30), np.arange(20, 40))
    with pytest.raises(ValueError, match="single class"):
        linear_probe(x, y, np.arange(0, 10), np.arange(30, 40))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        linear_probe(x[:, 0], y, train, ~train)
    with pytest.raises(ValueError, match="empty"):
        linear_probe(x, y, [], ~train)
    with pytest.raises(ValueError, match="no module named 'nope'"):
        layer_features(nn.Sequential(nn.Linear(1, 1)), torch.zeros(2, 1), ["nope"])
