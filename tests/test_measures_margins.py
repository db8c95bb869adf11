"""Margin measures against independent computations on a hand-built tiny model.

Expected margins come from a numpy forward pass of the known integer matrices and a Python
loop over the classes; percentiles from ``np.percentile`` (linear interpolation, as
``torch.quantile``); spectral norms from ``np.linalg.svd``; group norms from loops over rows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import measures.margins  # noqa: F401  (registers the measures)
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.registry import _MEASURES

from tiny_mlp import B1, B1_INIT, B2, B2_INIT, W1, W1_INIT, W2, W2_INIT, mlp



def numpy_logits(x: np.ndarray, w1=W1, b1=B1, w2=W2, b2=B2) -> np.ndarray:
    h = np.maximum(0.0, x @ np.array(w1, float).T + np.array(b1, float))
    return h @ np.array(w2, float).T + np.array(b2, float)


def loop_margins(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = []
    for f, label in zip(logits, y):
        best_other = max(f[j] for j in range(len(f)) if j != label)
        out.append(f[label] - best_other)
    return np.array(out)


def data(n_wrong: int = 0):
    """Ten integer inputs with a unique top logit, labelled by the argmax except the first
    ``n_wrong`` ones, which get their *lowest*-scoring class (deliberately misclassified)."""
    candidates = np.random.default_rng(0).integers(-3, 4, size=(60, 3)).astype(float)
    logits = numpy_logits(candidates)
    top2 = np.sort(logits, axis=1)[:, -2:]
    x = candidates[top2[:, 1] > top2[:, 0]][:10]
    logits = numpy_logits(x)
    y = logits.argmax(axis=1)
    y[:n_wrong] = logits[:n_wrong].argmin(axis=1)
    return x, y


def context(x, y, model=None, init=None, name="test") -> MeasureContext:
    model = model if model is not None else mlp(W1, B1, W2, B2)
    init = init if init is not None else mlp(W1_INIT, B1_INIT, W2_INIT, B2_INIT)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)
    return MeasureContext(RunCache(model, init, DataSplit("tiny", xt, yt, xt, yt, 3), "cpu"), name)


def call(name: str, ctx: MeasureContext) -> float:
    value = _MEASURES[name].fn(ctx)
    assert isinstance(value, float)
    return value


def test_registered_with_metadata():
    expected = {
        "margin.output_margin": ("higher-better", {"train_data"}),
        "margin.inverse_margin": ("higher-worse", {"train_data"}),
        "margin.spectral_normalized_margin": ("higher-better", {"train_data", "init"}),
    }
    for name, (orientation, requires) in expected.items():
        m = _MEASURES[name]
        assert (m.family, m.orientation, set(m.requires)) == ("margin", orientation, requires)
        assert m.description
    assert "Jiang" in _MEASURES["margin.inverse_margin"].fn.__doc__
    assert "Bartlett" in _MEASURES["margin.spectral_normalized_margin"].fn.__doc__


def test_margins_match_a_per_example_loop_and_keep_the_sign():
    x, y = data(n_wrong=2)
    ctx = context(x, y)
    expected = loop_margins(numpy_logits(x), y)
    assert ctx.margins("train").double().numpy() == pytest.approx(expected, abs=1e-6)
    assert (expected[:2] < 0).all() and (expected[2:] > 0).all()
    assert (ctx.margins("train")[:2] < 0).all()


@pytest.mark.parametrize("n_wrong", [0, 2])
def test_output_margin_is_the_linear_10th_percentile(n_wrong):
    x, y = data(n_wrong)
    expected = np.percentile(loop_margins(numpy_logits(x), y), 10)  # method="linear" is the default
    value = call("margin.output_margin", context(x, y))
    assert value == pytest.approx(expected, abs=1e-6)
    assert (value < 0) == (n_wrong == 2)  # no .abs(): more than 10% misclassified → negative


def test_inverse_margin():
    x, y = data()
    gamma = np.percentile(loop_margins(numpy_logits(x), y), 10)
    assert gamma > 0
    assert call("margin.inverse_margin", context(x, y)) == pytest.approx(1 / gamma**2, rel=1e-6)


def test_inverse_margin_raises_when_the_margin_is_not_positive():
    x, y = data(n_wrong=2)
    with pytest.raises(ValueError, match="10th-percentile training margin .* <= 0"):
        call("margin.inverse_margin", context(x, y))
    # All logits equal: every margin is exactly 0.
    flat = mlp(W1, B1, [[0] * 4] * 3, [0, 0, 0])
    with pytest.raises(ValueError, match="undefined"):
        call("margin.inverse_margin", context(x, y, model=flat))


def bartlett_normalized_margin(x, y) -> float:
    """γ / R_A computed independently: numpy SVD, explicit loops over rows for ‖Aᵀ − Mᵀ‖_{2,1}."""
    gamma = np.percentile(loop_margins(numpy_logits(x), y), 10)
    spec, group = [], []
    for a, m in ((W1, W1_INIT), (W2, W2_INIT)):
        spec.append(np.linalg.svd(np.array(a, float), compute_uv=False)[0])
        # Columns of Aᵀ are the rows of A (A is (out, in)): sum of the L2 norms of the rows.
        total = 0.0
        for row_a, row_m in zip(a, m):
            total += math.sqrt(sum((u - v) ** 2 for u, v in zip(row_a, row_m)))
        group.append(total)
    r_a = spec[0] * spec[1] * ((group[0] / spec[0]) ** (2 / 3) + (group[1] / spec[1]) ** (2 / 3)) ** 1.5
    return gamma / r_a


def test_spectral_normalized_margin():
    x, y = data()
    expected = bartlett_normalized_margin(x, y)
    assert expected > 0
    assert call("margin.spectral_normalized_margin", context(x, y)) == pytest.approx(expected, rel=1e-6)


def test_spectral_normalized_margin_sums_rows_not_columns():
    # For W1 − W1⁰ = [[1,0,0],[1,0,0],[0,-1,0],[0,1,0]] the row norms sum to 4, the column norms to 2√2.
    from measures.margins import log_spectral_complexity

    x, y = data()
    s1 = np.linalg.svd(np.array(W1, float), compute_uv=False)[0]
    s2 = np.linalg.svd(np.array(W2, float), compute_uv=False)[0]
    # W2 − W2⁰ = [[0,-1,0,1],[0,0,1,0],[0,0,-1,0]]: rows √2 + 1 + 1, columns 0 + 1 + √2 + 1.
    def r_a(g1, g2):
        return s1 * s2 * ((g1 / s1) ** (2 / 3) + (g2 / s2) ** (2 / 3)) ** 1.5

    by_rows, by_columns = r_a(4, math.sqrt(2) + 2), r_a(2 * math.sqrt(2), math.sqrt(2) + 2)
    value = log_spectral_complexity(context(x, y))
    assert value == pytest.approx(math.log(by_rows), rel=1e-9)
    assert value != pytest.approx(math.log(by_columns), rel=1e-3)


def test_spectral_normalized_margin_keeps_the_sign():
    x, y = data(n_wrong=2)
    value = call("margin.spectral_normalized_margin", context(x, y))
    assert value < 0
    assert value == pytest.approx(bartlett_normalized_margin(x, y), rel=1e-6)


def test_spectral_normalized_margin_undefined_at_init():
    x, y = data()
    same = mlp(W1, B1, W2, B2)
    with pytest.raises(ValueError, match="spectral complexity is zero"):
        call("margin.spectral_normalized_margin", context(x, y, model=same, init=mlp(W1, B1, W2, B2)))


def test_relu_rescaling_of_model_and_reference_leaves_it_unchanged():
    """W1 → c·W1, W2 → W2/c on a bias-free net keeps the margins; rescaling the reference
    matrices the same way keeps R_A too (Π‖A_i‖_σ and each ‖A_i − M_i‖_{2,1}/‖A_i‖_σ are invariant)."""
    c = 4.0

    def bias_free(w1, w2, scale=1.0):
        model = nn.Sequential(nn.Flatten(), nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 3, bias=False))
        with torch.no_grad():
            model[1].weight.copy_(scale * torch.tensor(w1, dtype=torch.float32))
            model[3].weight.copy_(torch.tensor(w2, dtype=torch.float32) / scale)
        return model

    x, _ = data()
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    a = context(x, y, model=bias_free(W1, W2), init=bias_free(W1_INIT, W2_INIT))
    b = context(x, y, model=bias_free(W1, W2, c), init=bias_free(W1_INIT, W2_INIT, c))
    moved = context(x, y, model=bias_free(W1, W2, c), init=bias_free(W1_INIT, W2_INIT))
    assert torch.equal(a.margins("train"), b.margins("train"))
    name = "margin.spectral_normalized_margin"
    assert call(name, a) == pytest.approx(call(name, b), rel=1e-9)
    assert call(name, moved) != pytest.approx(call(name, a), rel=1e-3)  # reference not rescaled: R_A changes
