"""Norm measures against independent computations on hand-built tiny models.

Expected values come from numpy / plain Python on the known integer matrices (hand arithmetic
where it is short), never from the code path of ``measures.norms``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import measures.norms as norms
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.registry import _MEASURES

from tiny_mlp import B1, B1_INIT, B2, B2_INIT, W1, W1_INIT, W2, W2_INIT, mlp


NORM_MEASURES = [
    "norm.param_l2",
    "norm.frobenius_distance_from_init",
    "norm.log_prod_frobenius",
    "norm.log_sum_frobenius",
    "norm.log_prod_spectral",
]


def context(model: nn.Module, init_model: nn.Module, x=None, y=None, num_classes=3, name="test") -> MeasureContext:
    if x is None:
        x = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0]])
        y = torch.tensor([0, 1, 2])
    data = DataSplit("tiny", x, y, x, y, num_classes)
    return MeasureContext(RunCache(model, init_model, data, "cpu"), name)


def tiny_ctx(name="test") -> MeasureContext:
    return context(mlp(W1, B1, W2, B2), mlp(W1_INIT, B1_INIT, W2_INIT, B2_INIT), name=name)


def call(name: str, ctx: MeasureContext) -> float:
    value = _MEASURES[name].fn(ctx)
    assert isinstance(value, float)
    return value


def sum_sq(rows) -> float:
    return sum(float(v) ** 2 for row in rows for v in (row if isinstance(row, list) else [row]))


def diff(a, b):
    return [[x - y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]


def sigma_max(m) -> float:
    return float(np.linalg.svd(np.array(m, dtype=np.float64), compute_uv=False)[0])


# --- registration ---------------------------------------------------------------------------


def test_registered_with_metadata():
    for name in NORM_MEASURES:
        m = _MEASURES[name]
        assert m.family == "norm"
        assert m.orientation == "higher-worse"
        assert m.description  # first docstring line
        assert "Jiang" in m.fn.__doc__
    assert _MEASURES["norm.frobenius_distance_from_init"].requires == {"init"}
    assert _MEASURES["norm.param_l2"].requires == frozenset()


# --- values on the tiny MLP -------------------------------------------------------------------


def test_param_l2_includes_biases():
    # Hand: ‖W1‖² = 12, ‖b1‖² = 2, ‖W2‖² = 11, ‖b2‖² = 1.
    expected = math.sqrt(sum_sq(W1) + sum_sq(B1) + sum_sq(W2) + sum_sq(B2))
    assert expected == pytest.approx(math.sqrt(26))
    assert call("norm.param_l2", tiny_ctx()) == pytest.approx(expected, rel=1e-12)


def test_frobenius_distance_from_init_is_rooted_weights_only():
    expected = math.sqrt(sum_sq(diff(W1, W1_INIT)) + sum_sq(diff(W2, W2_INIT)))
    assert expected == pytest.approx(math.sqrt(8))  # 4 + 4, biases (which also moved) left out
    assert call("norm.frobenius_distance_from_init", tiny_ctx()) == pytest.approx(expected, rel=1e-12)


def test_frobenius_distance_zero_when_model_is_init():
    ctx = context(mlp(W1, B1, W2, B2), mlp(W1, B1, W2, B2))
    assert call("norm.frobenius_distance_from_init", ctx) == 0.0


def test_log_prod_frobenius():
    expected = math.log(sum_sq(W1)) + math.log(sum_sq(W2))
    assert expected == pytest.approx(math.log(12 * 11))
    assert call("norm.log_prod_frobenius", tiny_ctx()) == pytest.approx(expected, rel=1e-12)


def test_log_sum_frobenius():
    d = 2
    expected = math.log(d) + (math.log(sum_sq(W1)) + math.log(sum_sq(W2))) / d
    assert expected == pytest.approx(math.log(2 * math.sqrt(132)))
    assert call("norm.log_sum_frobenius", tiny_ctx()) == pytest.approx(expected, rel=1e-12)


def test_log_prod_spectral():
    expected = 2 * math.log(sigma_max(W1)) + 2 * math.log(sigma_max(W2))
    assert call("norm.log_prod_spectral", tiny_ctx()) == pytest.approx(expected, rel=1e-9)


# --- helpers ----------------------------------------------------------------------------------


def test_row_group_norm_sums_over_rows():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]])  # (out=3, in=2)
    assert norms.row_group_norm(a).item() == pytest.approx(5.0)  # rows: 5 + 0 + 0 (columns would give 3 + 4)
    # General (p, q) against explicit loops.
    m = np.random.default_rng(0).normal(size=(5, 7))
    for p, q in [(2, 1), (1, math.inf), (3, 1.5), (2, 2)]:
        row_norms = [sum(abs(v) ** p for v in row) ** (1 / p) for row in m]
        expected = max(row_norms) if q == math.inf else sum(r**q for r in row_norms) ** (1 / q)
        assert norms.row_group_norm(torch.tensor(m), p, q).item() == pytest.approx(expected, rel=1e-12)


def test_aggregators():
    ctx = tiny_ctx()
    f1, f2 = math.sqrt(sum_sq(W1)), math.sqrt(sum_sq(W2))
    fro = norms.of_weight(norms.frobenius)
    assert norms.over_layers(ctx, fro, "sum") == pytest.approx(f1 + f2)
    assert norms.over_layers(ctx, fro, "product") == pytest.approx(f1 * f2)
    assert norms.over_layers(ctx, fro, "log_product") == pytest.approx(math.log(f1) + math.log(f2))
    assert norms.over_layers(ctx, fro, "max") == pytest.approx(max(f1, f2))
    assert norms.over_layers(ctx, fro, "l2") == pytest.approx(math.sqrt(f1**2 + f2**2))
    dist = norms.of_distance(norms.spectral)
    assert norms.over_layers(ctx, dist, "max") == pytest.approx(
        max(sigma_max(diff(W1, W1_INIT)), sigma_max(diff(W2, W2_INIT)))
    )
    with pytest.raises(ValueError, match="aggregator"):
        norms.over_layers(ctx, fro, "mean")


def test_no_weight_layers_is_an_error():
    ctx = context(nn.Sequential(nn.Flatten()), nn.Sequential(nn.Flatten()))
    with pytest.raises(ValueError, match="no Linear or Conv"):
        call("norm.log_prod_spectral", ctx)


# --- properties -------------------------------------------------------------------------------


def test_relu_rescaling():
    """W1 → c·W1, W2 → W2/c (no biases) leaves the function, hence the margins, unchanged.

    Products of per-layer norms and Jiang's "sum" (d × geometric mean) are invariant; the plain
    sum of Frobenius norms and the parameter norm are not; and d·(Π‖W_l‖²)^{1/d} ≤ Σ‖W_l‖² (AM-GM).
    """
    c = 4.0  # a power of two: the rescaled weights and the logits are exact
    base = mlp(W1, None, W2, None, bias=False)
    scaled = mlp([[c * v for v in r] for r in W1], None, [[v / c for v in r] for r in W2], None, bias=False)
    init = mlp(W1_INIT, None, W2_INIT, None, bias=False)
    a, b = context(base, init), context(scaled, init)

    assert torch.equal(a.margins("train"), b.margins("train"))
    for name in ["norm.log_prod_spectral", "norm.log_prod_frobenius", "norm.log_sum_frobenius"]:
        assert call(name, a) == pytest.approx(call(name, b), rel=1e-9), name
    fro_sum = norms.of_weight(norms.frobenius)
    f1, f2 = math.sqrt(sum_sq(W1)), math.sqrt(sum_sq(W2))
    assert norms.over_layers(a, fro_sum, "sum") == pytest.approx(f1 + f2)
    assert norms.over_layers(b, fro_sum, "sum") == pytest.approx(c * f1 + f2 / c)
    assert call("norm.param_l2", b) > call("norm.param_l2", a)
    for ctx in (a, b):
        sum_of_squares = norms.over_layers(ctx, norms.of_weight(norms.frobenius_sq), "sum")
        assert math.exp(call("norm.log_sum_frobenius", ctx)) <= sum_of_squares * (1 + 1e-12)


def test_conv_layer_is_a_reshaped_matrix():
    gen = torch.Generator().manual_seed(0)
    kernel = torch.randint(-2, 3, (3, 2, 2, 2), generator=gen).float()  # (out, in, kh, kw)
    kernel0 = torch.randint(-2, 3, (3, 2, 2, 2), generator=gen).float()
    fc = torch.randint(-2, 3, (2, 12), generator=gen).float()
    fc0 = torch.randint(-2, 3, (2, 12), generator=gen).float()

    def cnn(k, w):
        model = nn.Sequential(nn.Conv2d(2, 3, 2, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2, bias=False))
        with torch.no_grad():
            model[0].weight.copy_(k)
            model[3].weight.copy_(w)
        return model

    x = torch.rand(4, 2, 3, 3, generator=gen)
    ctx = context(cnn(kernel, fc), cnn(kernel0, fc0), x, torch.tensor([0, 1, 0, 1]), num_classes=2)
    assert [tuple(layer.weight.shape) for layer in ctx.layers()] == [(3, 8), (2, 12)]

    def as_rows(k):  # explicit loops: row o = the kernel of output channel o, in (in, kh, kw) order
        k = k.tolist()
        return [[k[o][c][i][j] for c in range(2) for i in range(2) for j in range(2)] for o in range(3)]

    k_rows, k0_rows = as_rows(kernel), as_rows(kernel0)
    fc_rows, fc0_rows = fc.tolist(), fc0.tolist()
    assert call("norm.log_prod_spectral", ctx) == pytest.approx(
        2 * math.log(sigma_max(k_rows)) + 2 * math.log(sigma_max(fc_rows)), rel=1e-9
    )
    assert call("norm.frobenius_distance_from_init", ctx) == pytest.approx(
        math.sqrt(sum_sq(diff(k_rows, k0_rows)) + sum_sq(diff(fc_rows, fc0_rows))), rel=1e-9
    )
    assert call("norm.log_prod_frobenius", ctx) == pytest.approx(
        math.log(sum_sq(k_rows)) + math.log(sum_sq(fc_rows)), rel=1e-9
    )


def test_deep_product_does_not_overflow():
    depth, scale = 200, 100.0  # Π σ_max² = 1e800 overflows float64; its log does not
    layers = [nn.Linear(4, 4, bias=False) for _ in range(depth)]
    model = nn.Sequential(nn.Flatten(), *layers)
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(scale * torch.eye(4))
    ctx = context(model, model, torch.zeros(2, 4), torch.tensor([0, 1]), num_classes=4)
    assert norms.over_layers(ctx, norms.of_weight(norms.spectral_sq), "product") == math.inf
    assert call("norm.log_prod_spectral", ctx) == pytest.approx(depth * 2 * math.log(scale), rel=1e-12)
    assert call("norm.log_sum_frobenius", ctx) == pytest.approx(math.log(depth) + math.log(4 * scale**2), rel=1e-12)
