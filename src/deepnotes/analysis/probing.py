"""Probing: what a layer's representation holds, read by a linear classifier trained on it.

Source: ML2021 "機器學習模型的可解釋性 (Explainable ML) (上)" (seed 001): "How a network processes the input data":
besides looking at (dimension-reduced) intermediate vectors, "用探针处理中间向量" (process the intermediate
vectors with a probe), "但注意Classifier的正确情况" (but mind whether the classifier itself works), with the
example "在不同层加探针看语音到底在那里失去了性别信息,或者杂音" (probes at different layers show where a speech
model loses the speaker's gender, or the noise); ML2022 lecture 9 (seed 002) lists probing as one of the two ways to
explain a network ("如何解释network: 1. 肉眼观察 2. Probing"). Formally (Alain and Bengio, "Understanding
intermediate layers using linear classifier probes", 2016): freeze the model, take the activations ``z_l(x)`` of
layer ``l`` for labelled inputs, train a linear classifier ``y ~ softmax(W z_l(x) + b)`` on some of them and report
its accuracy on the others; high accuracy means the label is *linearly decodable* from the layer.

The caveat of the lecture, made concrete: a probe's accuracy is a lower bound on the information present (a
non-linear or better-trained probe may find more), so compare layers with one probe setting, next to the chance
level (the majority class's share of the test labels), and on held-out inputs (``train_idx`` and ``test_idx``
must not overlap, or the probe memorizes).

* :func:`layer_features`: the flattened activations (N, D) of named modules, via forward hooks removed afterwards.
* :func:`linear_probe`: accuracy of scikit-learn's ``LogisticRegression`` on standardized features.
* :func:`probe_layers`: every (label, layer) pair.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["INPUT", "layer_features", "linear_probe", "probe_layers"]

#: Layer name meaning "the input itself" (a baseline row for :func:`probe_layers`).
INPUT = "<input>"


@torch.no_grad()
def layer_features(model: nn.Module, x: torch.Tensor, layers: Sequence[str], *,
                   batch_size: int = 1024) -> dict[str, np.ndarray]:
    """The activations of the named modules for every input, flattened to (N, D).

    The model runs in eval mode (dropout off, batch norm on its running statistics) in batches of ``batch_size``
    on the device of its parameters; its mode is restored and the hooks are removed afterwards (also on error).

    Args:
        model: the network (e.g. :class:`deepnotes.models.framewise.FramewiseMLP`).
        x: (N, ...) inputs, as the model takes them.
        layers: names from ``model.named_modules()`` (``"blocks.1"``; ``""`` is the model itself, its output),
            or :data:`INPUT` for ``x`` itself. A module that returns a tuple (an RNN) gives its first element.
        batch_size: inputs per forward (>= 1). Default 1024.

    Returns:
        layer name -> (N, D) float32 array, row i the activation for ``x[i]`` flattened.

    Raises:
        ValueError: no layers, an unknown or repeated name, a bad ``batch_size``, an empty ``x``, or a module
            that did not run (or returned no tensor) in the forward.
    """
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"layers must be distinct module names, got {list(layers)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(x) == 0:
        raise ValueError("x must hold at least one input")
    modules = dict(model.named_modules())
    unknown = [name for name in layers if name != INPUT and name not in modules]
    if unknown:
        known = ", ".join(repr(n) for n in modules)
        raise ValueError(f"layer_features: no module named {', '.join(map(repr, unknown))}; known: {known}")
    captured: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    seen: dict[str, torch.Tensor | None] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple, output) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            # a copy: an in-place operation later in the forward (ReLU(inplace=True)) must not change it
            seen[name] = out.detach().clone() if isinstance(out, torch.Tensor) else None
        return hook

    p = next(model.parameters(), None)
    device = p.device if p is not None else x.device
    was_training = model.training
    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers if name != INPUT]
    try:
        model.eval()
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            seen.clear()
            model(xb.to(device))
            for name in layers:
                out = xb if name == INPUT else seen.get(name)
                if out is None:
                    raise ValueError(f"layer_features: module {name!r} did not run or returned no tensor")
                captured[name].append(out.reshape(len(xb), -1).float().cpu().numpy())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: np.concatenate(parts) for name, parts in captured.items()}


def _index(idx, n: int, what: str) -> np.ndarray:
    a = np.asarray(idx)
    if a.dtype == bool:
        if a.shape != (n,):
            raise ValueError(f"{what}: a boolean mask must have shape ({n},), got {a.shape}")
        a = np.flatnonzero(a)
    a = a.astype(np.int64).ravel()
    if len(a) == 0:
        raise ValueError(f"{what} must not be empty")
    if a.min() < -n or a.max() >= n:
        raise ValueError(f"{what} must index the {n} rows")
    return a % n


def linear_probe(features: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                 train_idx, test_idx, *, C: float = 1.0, max_iter: int = 1000, seed: int = 0) -> float:
    """Test accuracy of a linear classifier trained to read ``labels`` from ``features``.

    The probe is scikit-learn's ``StandardScaler`` (fitted on the training rows) then ``LogisticRegression``
    (L2 penalty of strength ``1 / C``, lbfgs, multinomial over the classes).

    Args:
        features: (N, D) representations (e.g. from :func:`layer_features`).
        labels: (N,) integer (or string) labels.
        train_idx, test_idx: rows to train and to test on (integer indices or boolean masks); disjoint.
        C: inverse regularization strength (> 0). Default 1.
        max_iter: lbfgs iterations. Default 1000.
        seed: the classifier's ``random_state``. Default 0.

    Returns:
        Accuracy in [0, 1] on the ``test_idx`` rows.

    Raises:
        ValueError: features not 2-D, lengths that differ, empty or overlapping index sets, a training set with
            fewer than two classes, or ``C`` not > 0.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if X.ndim != 2 or y.shape != (len(X),):
        raise ValueError(f"features must be (N, D) and labels (N,), got {X.shape} and {y.shape}")
    if not C > 0:
        raise ValueError(f"C must be > 0, got {C}")
    tr, te = _index(train_idx, len(X), "train_idx"), _index(test_idx, len(X), "test_idx")
    if np.intersect1d(tr, te).size:
        raise ValueError("train_idx and test_idx overlap: the probe would be scored on inputs it was trained on")
    if len(np.unique(y[tr])) < 2:
        raise ValueError("linear_probe: the training rows hold a single class; nothing to probe")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    probe.fit(X[tr].astype(np.float64), y[tr])
    return float(probe.score(X[te].astype(np.float64), y[te]))


def probe_layers(model: nn.Module, x: torch.Tensor, labels: Mapping[str, np.ndarray | torch.Tensor],
                 layers: Sequence[str], train_idx, test_idx, *, batch_size: int = 1024, C: float = 1.0,
                 max_iter: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Probe accuracy of every label at every layer (ML2021: where does the model lose the speaker?).

    Args:
        model, x, layers, batch_size: as :func:`layer_features` (the activations are computed once).
        labels: label name -> (N,) labels of the inputs (e.g. ``{"phoneme": ..., "speaker": ...}``).
        train_idx, test_idx, C, max_iter, seed: as :func:`linear_probe`.

    Returns:
        label name -> layer name -> test accuracy, layers in the order given.

    Raises:
        ValueError: as :func:`layer_features` and :func:`linear_probe`; no labels.
    """
    if not labels:
        raise ValueError("labels must name at least one label array")
    feats = layer_features(model, x, layers, batch_size=batch_size)
    return {name: {layer: linear_probe(feats[layer], y, train_idx, test_idx, C=C, max_iter=max_iter, seed=seed)
                   for layer in layers}
            for name, y in labels.items()}
