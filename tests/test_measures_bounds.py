"""Norm-based bounds (log domain) against independent numpy computations on the tiny MLP.

Margins from a numpy forward pass and a loop over classes, the 10th percentile from
``np.percentile`` (linear interpolation, as ``torch.quantile``), spectral norms from
``np.linalg.svd``, (2,1) group norms and parameter counts from explicit loops.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import measures.bounds  # noqa: F401  (registers the measures)
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.registry import _MEASURES

from tiny_mlp import B1, B1_INIT, B2, B2_INIT, W1, W1_INIT, W2, W2_INIT, mlp

BOUNDS = ["bound.bartlett_spectral", "bound.neyshabur2018_spectral_frobenius", "bound.golowich_frobenius"]
X = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0], [1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [1.0, 1.0, -1.0]])


def logits_of(x, w1=W1, b1=B1, w2=W2, b2=B2):
    h = np.maximum(0.0, x @ np.array(w1, float).T + np.array(b1, float))
    return h @ np.array(w2, float).T + np.array(b2, float)


def loop_margins(logits, y):
    return np.array([f[c] - max(f[j] for j in range(len(f)) if j != c) for f, c in zip(logits, y)])


def setup(wrong=False, model=None, init=None, w=(W1, B1, W2, B2), x=X):
    logits = logits_of(x, *w)
    y = logits.argmin(axis=1) if wrong else logits.argmax(axis=1)
    model = model if model is not None else mlp(*w)
    init = init if init is not None else mlp(W1_INIT, B1_INIT, W2_INIT, B2_INIT)
    xt = torch.tensor(x, dtype=torch.float32)
    ctx = MeasureContext(RunCache(model, init, DataSplit("tiny", xt, torch.tensor(y), xt, torch.tensor(y), 3)), "t")
    return ctx, float(np.percentile(loop_margins(logits, y), 10))


def call(name, ctx) -> float:
    value = _MEASURES[name].fn(ctx)
    assert isinstance(value, float)
    return value


def svd_max(m) -> float:
    return float(np.linalg.svd(np.array(m, float), compute_uv=False)[0])


def diff(a, b):
    return np.array(a, float) - np.array(b, float)


M, OMEGA, D = len(X), 3 * 4 + 4 + 4 * 3 + 3, 2  # examples, parameters (weights + biases), layers


def test_registered_with_metadata():
    for name in BOUNDS:
        m = _MEASURES[name]
        assert (m.family, m.orientation) == ("bound", "higher-worse")
        assert m.description
    assert _MEASURES["bound.bartlett_spectral"].requires == {"init", "train_data"}
    assert _MEASURES["bound.neyshabur2018_spectral_frobenius"].requires == {"init", "train_data"}
    assert _MEASURES["bound.golowich_frobenius"].requires == {"train_data"}
    assert "Bartlett" in _MEASURES["bound.bartlett_spectral"].fn.__doc__
    assert "Golowich" in _MEASURES["bound.golowich_frobenius"].fn.__doc__


def test_bartlett_spectral():
    ctx, gamma = setup()
    assert gamma > 0
    s1, s2 = svd_max(W1), svd_max(W2)
    # ‖(A − M)ᵀ‖_{2,1}: the sum over output units (rows of A − M) of their L2 norms.
    g1 = sum(math.sqrt(sum(v**2 for v in row)) for row in diff(W1, W1_INIT))
    g2 = sum(math.sqrt(sum(v**2 for v in row)) for row in diff(W2, W2_INIT))
    r_a = s1 * s2 * ((g1 / s1) ** (2 / 3) + (g2 / s2) ** (2 / 3)) ** 1.5
    expected = math.log(math.log(M) * math.log(OMEGA) * r_a / (gamma * math.sqrt(M)))
    assert call("bound.bartlett_spectral", ctx) == pytest.approx(expected, rel=1e-6)


def test_neyshabur2018_spectral_frobenius():
    ctx, gamma = setup()
    s1, s2 = svd_max(W1), svd_max(W2)
    h1, h2 = 4, 3  # output units of each layer
    ratio = h1 * (diff(W1, W1_INIT) ** 2).sum() / s1**2 + h2 * (diff(W2, W2_INIT) ** 2).sum() / s2**2
    expected = math.log(D * s1 * s2 * math.sqrt(ratio) / (gamma * math.sqrt(M)))
    assert call("bound.neyshabur2018_spectral_frobenius", ctx) == pytest.approx(expected, rel=1e-6)


def test_golowich_frobenius():
    ctx, gamma = setup()
    f1, f2 = math.sqrt(12), math.sqrt(11)  # hand: ‖W1‖_F² = 12, ‖W2‖_F² = 11
    alpha = math.sqrt(D + math.log(3))  # input dimension 3
    expected = math.log(alpha * f1 * f2 / (gamma * math.sqrt(M)))
    assert call("bound.golowich_frobenius", ctx) == pytest.approx(expected, rel=1e-6)


def test_non_positive_margin_is_an_error():
    ctx, gamma = setup(wrong=True)
    assert gamma < 0
    for name in BOUNDS:
        with pytest.raises(ValueError, match="margin is .* <= 0"):
            call(name, ctx)


def test_distance_bounds_undefined_at_initialization():
    ctx, _ = setup(init=mlp(W1, B1_INIT, W2, B2_INIT))  # weights never moved (biases did)
    with pytest.raises(ValueError, match="initial"):
        call("bound.bartlett_spectral", ctx)
    with pytest.raises(ValueError, match="initial"):
        call("bound.neyshabur2018_spectral_frobenius", ctx)
    assert math.isfinite(call("bound.golowich_frobenius", ctx))  # no distance in it


def test_golowich_is_invariant_to_scaling_the_output():
    """W2 → c·W2 with no biases multiplies the logits, hence γ, and Π‖W_l‖_F by c: the bound is unchanged."""
    c = 4.0
    w = (W1, [0] * 4, W2, [0] * 3)
    w_scaled = (W1, [0] * 4, [[c * v for v in row] for row in W2], [0] * 3)
    # Inputs whose bias-free logits have a unique top class (no zero margins).
    x = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0], [0.0, 2.0, 1.0], [3.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    a, gamma_a = setup(w=w, x=x)
    b, gamma_b = setup(w=w_scaled, x=x)
    assert gamma_b == pytest.approx(c * gamma_a) and gamma_a > 0
    assert call("bound.golowich_frobenius", a) == pytest.approx(call("bound.golowich_frobenius", b), rel=1e-9)


def test_bn_models_use_folded_layers():
    gen = torch.Generator().manual_seed(0)

    def net():
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
            model[1].running_var.copy_(0.5 + torch.rand(4, generator=gen))
        return model.eval()

    model, init = net(), net()
    xt = torch.tensor(X, dtype=torch.float32)
    y = model(xt).argmax(1)
    ctx = MeasureContext(RunCache(model, init, DataSplit("tiny", xt, y, xt, y, 3)), "t")
    bn = model[1]
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    f1 = np.linalg.norm(model[0].weight.detach().double().numpy() * s[:, None])
    f2 = np.linalg.norm(model[3].weight.detach().double().numpy())
    gamma = float(np.percentile(loop_margins(model(xt).detach().double().numpy(), y.numpy()), 10))
    expected = 0.5 * math.log(2 + math.log(3)) + math.log(f1 * f2) - math.log(gamma) - 0.5 * math.log(M)
    assert call("bound.golowich_frobenius", ctx) == pytest.approx(expected, rel=1e-5)
