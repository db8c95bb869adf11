"""Norm measures against independent computations on hand-built tiny models.

Expected values come from numpy / plain Python on the known integer matrices (hand arithmetic
where it is short), never from the code path of ``measures.norms``: numpy SVDs, explicit loops
over rows for group norms, and loops over every input→output path for path norms.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import measures.norms as norms
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.errors import NotApplicable
from gentest.models import build_model
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


# =============================================================================================
# The extended family: spectral/stable-rank sums, group norms, path norms, ÷ margin variants.
# Expected values from numpy SVDs, explicit loops over rows/units and over every path.
# =============================================================================================

NEW_NORM_MEASURES = [
    "norm.dist_spec_init",
    "norm.log_sum_spectral",
    "norm.fro_over_spec",
    "norm.log_prod_group_1_inf",
    "norm.log_prod_group_2_2",
    "norm.log_prod_group_3_1_5",
    "norm.path_norm_1",
    "norm.path_norm_2",
]
OVER_MARGIN_MEASURES = [
    "margin.log_prod_spectral_over_margin",
    "margin.log_prod_frobenius_over_margin",
    "margin.path_norm_2_over_margin",
    "margin.log_sum_spectral_over_margin",
    "margin.log_sum_frobenius_over_margin",
]


def test_new_measures_registered_with_metadata():
    for name in NEW_NORM_MEASURES + OVER_MARGIN_MEASURES:
        m = _MEASURES[name]
        assert m.family == name.split(".")[0]
        assert m.orientation == "higher-worse"
        assert m.description, name
    assert _MEASURES["norm.dist_spec_init"].requires == {"init"}
    for name in OVER_MARGIN_MEASURES:
        assert _MEASURES[name].requires == {"train_data"}
    for name in ["norm.dist_spec_init", "norm.log_sum_spectral", "norm.fro_over_spec"] + OVER_MARGIN_MEASURES:
        assert "Jiang" in _MEASURES[name].fn.__doc__
    for name in ["norm.log_prod_group_1_inf", "norm.log_prod_group_3_1_5", "norm.path_norm_1"]:
        assert "Neyshabur" in _MEASURES[name].fn.__doc__


def fro_sq(m) -> float:
    return float(np.sum(np.array(m, dtype=np.float64) ** 2))


def test_dist_spec_init():
    expected = sigma_max(diff(W1, W1_INIT)) ** 2 + sigma_max(diff(W2, W2_INIT)) ** 2
    assert call("norm.dist_spec_init", tiny_ctx()) == pytest.approx(expected, rel=1e-9)
    ctx = context(mlp(W1, B1, W2, B2), mlp(W1, B1_INIT, W2, B2_INIT))  # only the biases moved
    assert call("norm.dist_spec_init", ctx) == 0.0


def test_log_sum_spectral():
    expected = math.log(2) + (math.log(sigma_max(W1) ** 2) + math.log(sigma_max(W2) ** 2)) / 2
    assert call("norm.log_sum_spectral", tiny_ctx()) == pytest.approx(expected, rel=1e-9)


def test_fro_over_spec_is_a_sum_of_stable_ranks():
    expected = fro_sq(W1) / sigma_max(W1) ** 2 + fro_sq(W2) / sigma_max(W2) ** 2
    assert call("norm.fro_over_spec", tiny_ctx()) == pytest.approx(expected, rel=1e-9)
    # Rank-one layers have stable rank exactly 1.
    a = [[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 0.0], [-1.0, -2.0, 0.0]]
    b = [[1.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    ctx = context(mlp(a, B1, b, B2), mlp(W1_INIT, B1_INIT, W2_INIT, B2_INIT))
    assert call("norm.fro_over_spec", ctx) == pytest.approx(2.0, rel=1e-12)


def loop_group_norm(m, p, q) -> float:
    """‖W‖_{p,q}: for each unit (row = incoming weights) the p-norm, then the q-norm over units."""
    per_unit = []
    for row in m:
        per_unit.append(sum(abs(float(v)) ** p for v in row) ** (1 / p))
    if q == math.inf:
        return max(per_unit)
    return sum(u**q for u in per_unit) ** (1 / q)


@pytest.mark.parametrize(
    "name, p, q",
    [("norm.log_prod_group_1_inf", 1, math.inf), ("norm.log_prod_group_2_2", 2, 2), ("norm.log_prod_group_3_1_5", 3, 1.5)],
)
def test_group_norms_by_explicit_loops(name, p, q):
    expected = math.log(loop_group_norm(W1, p, q)) + math.log(loop_group_norm(W2, p, q))
    assert call(name, tiny_ctx()) == pytest.approx(expected, rel=1e-12)


def test_group_norms_by_hand():
    # L_{1,∞}: row 1-norms of W1 are 2, 3, 2, 3 -> 3; of W2 are 4, 3, 2 -> 4. Log of 12.
    assert call("norm.log_prod_group_1_inf", tiny_ctx()) == pytest.approx(math.log(12), rel=1e-12)
    # L_{2,2} is the Frobenius norm, so the log product is half of Jiang's squared one.
    ctx = tiny_ctx()
    assert call("norm.log_prod_group_2_2", ctx) == pytest.approx(0.5 * call("norm.log_prod_frobenius", ctx), rel=1e-12)


def three_layer(ws, bs=None) -> nn.Module:
    """Linear(3→4) → ReLU → Linear(4→3) → ReLU → Linear(3→2), weights from ``ws``."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        for i, layer in enumerate([model[0], model[2], model[4]]):
            layer.weight.copy_(torch.as_tensor(ws[i]))
            layer.bias.copy_(torch.as_tensor(bs[i]) if bs is not None else torch.zeros(layer.bias.shape))
    return model


def random_three_layer(seed: int):
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(4, 3)), rng.normal(size=(3, 4)), rng.normal(size=(2, 3))]
    bs = [rng.normal(size=4), rng.normal(size=3), rng.normal(size=2)]
    return [w.astype(np.float32) for w in ws], [b.astype(np.float32) for b in bs]


def brute_force_path_sum(ws, p) -> float:
    """Σ over every input→hidden→hidden→output path of Π |w_e|^p, one loop per layer."""
    a, b, c = (np.array(w, dtype=np.float64) for w in ws)
    total = 0.0
    for i in range(3):  # input
        for j in range(4):  # first hidden layer
            for k in range(3):  # second hidden layer
                for o in range(2):  # output
                    total += abs(a[j, i]) ** p * abs(b[k, j]) ** p * abs(c[o, k]) ** p
    return total


def small_ctx(model, x=None, y=None, num_classes=2, init=None):
    if x is None:
        x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0], [2.0, 2.0, -1.0], [-1.0, 0.0, 1.0]])
        y = torch.tensor([0, 1, 1, 0])
    return context(model, init if init is not None else copy.deepcopy(model), x, y, num_classes=num_classes)



def test_path_norms_by_brute_force_over_every_path():
    ws, bs = random_three_layer(0)
    ctx = small_ctx(three_layer(ws, bs))  # biases present: dropped by the path norm
    assert call("norm.path_norm_1", ctx) == pytest.approx(brute_force_path_sum(ws, 1), rel=1e-6)
    assert call("norm.path_norm_2", ctx) == pytest.approx(brute_force_path_sum(ws, 2) ** 0.5, rel=1e-6)
    assert norms.path_norm(ctx.model, (3,), 1.5) == pytest.approx(brute_force_path_sum(ws, 1.5) ** (1 / 1.5), rel=1e-6)
    # The biases do not matter (dropped).
    assert call("norm.path_norm_2", small_ctx(three_layer(ws))) == pytest.approx(call("norm.path_norm_2", ctx), rel=1e-12)


def test_path_norm_is_invariant_to_rescaling_a_relu_unit():
    ws, bs = random_three_layer(1)
    for layer, unit, c in [(0, 2, 8.0), (1, 0, 0.125), (0, 0, 3.0)]:
        ws2 = [w.copy() for w in ws]
        bs2 = [b.copy() for b in bs]
        ws2[layer][unit, :] *= c  # incoming weights (and bias) of the unit ...
        bs2[layer][unit] *= c
        ws2[layer + 1][:, unit] /= c  # ... and its outgoing weights
        a, b = small_ctx(three_layer(ws, bs)), small_ctx(three_layer(ws2, bs2))
        torch.testing.assert_close(a.logits("train"), b.logits("train"), rtol=1e-5, atol=1e-5)  # same function
        for name in ["norm.path_norm_1", "norm.path_norm_2"]:
            assert call(name, a) == pytest.approx(call(name, b), rel=1e-5), (name, layer, unit, c)
        # ... which a plain sum of Frobenius norms is not.
        fro_sum = norms.of_weight(norms.frobenius)
        assert norms.over_layers(a, fro_sum, "sum") != pytest.approx(norms.over_layers(b, fro_sum, "sum"))


def test_path_norm_with_average_pooling_by_brute_force():
    """Conv1d(2→3, k=2) on length 4 → ReLU → global average pool (3 positions) → Linear(3→2).

    Each pool edge has weight 1/3, so it contributes (1/3)^p to every path through it."""
    gen = torch.Generator().manual_seed(0)
    kernel, fc = torch.randn(3, 2, 2, generator=gen), torch.randn(2, 3, generator=gen)
    model = nn.Sequential(nn.Conv1d(2, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(kernel)
        model[4].weight.copy_(fc)
    k, v = kernel.double().numpy(), fc.double().numpy()
    for p in (1.0, 2.0):
        total = 0.0
        for c in range(2):  # input channel
            for t in range(4):  # input position
                for o in range(3):  # conv output channel
                    for s in range(3):  # conv output position
                        if 0 <= t - s < 2:
                            for q in range(2):  # class
                                total += abs(k[o, c, t - s]) ** p * (1 / 3) ** p * abs(v[q, o]) ** p
        assert norms.path_norm(model, (2, 4), p) == pytest.approx(total ** (1 / p), rel=1e-9), p
    # AvgPool1d(3) is the same pool here.
    pooled = nn.Sequential(nn.Conv1d(2, 3, 2), nn.ReLU(), nn.AvgPool1d(3), nn.Flatten(), nn.Linear(3, 2))
    pooled.load_state_dict(model.state_dict())
    assert norms.path_norm(pooled, (2, 4), 2.0) == pytest.approx(norms.path_norm(model, (2, 4), 2.0), rel=1e-12)


def test_path_norm_with_max_pooling_is_the_largest_over_window_choices():
    """Conv1d(1→2, k=2) on length 4 → ReLU → MaxPool1d(3) → Linear(2→1): enumerate the 3² choices
    of one conv position per channel; the path norm is the largest path sum among them."""
    gen = torch.Generator().manual_seed(1)
    kernel, fc = torch.randn(2, 1, 2, generator=gen), torch.randn(1, 2, generator=gen)
    model = nn.Sequential(nn.Conv1d(1, 2, 2, bias=False), nn.ReLU(), nn.MaxPool1d(3), nn.Flatten(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(kernel)
        model[4].weight.copy_(fc)
    k, v = kernel.double().numpy(), fc.double().numpy()
    for p in (1.0, 2.0):
        best = 0.0
        for choice in itertools.product(range(3), repeat=2):  # the position each channel's max picks
            total = 0.0
            for o, s in enumerate(choice):
                for t in range(4):
                    if 0 <= t - s < 2:
                        total += abs(k[o, 0, t - s]) ** p * abs(v[0, o]) ** p
            best = max(best, total)
        assert norms.path_norm(model, (1, 4), p) == pytest.approx(best ** (1 / p), rel=1e-9)


def test_path_norm_not_applicable_for_unsupported_layers():
    lrn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.LocalResponseNorm(2), nn.Flatten(), nn.Linear(2, 2))
    x = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    ctx = context(lrn, copy.deepcopy(lrn), x, torch.tensor([0, 1]), num_classes=2)
    with pytest.raises(NotApplicable, match="LocalResponseNorm"):
        call("norm.path_norm_1", ctx)
    tanh = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2))
    with pytest.raises(NotApplicable, match="Tanh"):
        call("norm.path_norm_2", small_ctx(tanh))


def test_path_norm_uses_the_batchnorm_folded_network():
    gen = torch.Generator().manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        model[1].running_mean.copy_(torch.randn(4, generator=gen))
        model[1].running_var.copy_(0.5 + torch.rand(4, generator=gen))
    bn = model[1]
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    a = model[0].weight.detach().double().numpy() * s[:, None]
    b = model[3].weight.detach().double().numpy()
    expected = sum(abs(a[j, i]) * abs(b[o, j]) for i in range(3) for j in range(4) for o in range(2))
    ctx = small_ctx(model)
    assert call("norm.path_norm_1", ctx) == pytest.approx(expected, rel=1e-6)
    assert any(isinstance(m, nn.BatchNorm1d) for m in ctx.model.modules())  # the context's model is untouched


def test_path_norm_on_the_inception_model_counts_every_layer_and_every_branch():
    """Properties any ℓ1 path norm has, checked on the Inception net (branches, max pool):
    every path passes the first conv and the last layer once, so scaling either scales the
    norm by the same factor; the paths through a block split between its two branches, so
    removing a branch lowers the norm and the two parts together bound it (max pooling
    downstream makes the sum an upper bound, not an equality)."""
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))  # any size ≥ 7×7 runs

    def path_norm_1(edit=None) -> float:
        model = build_model("inception", (3, 28, 28), 10, generator=torch.Generator().manual_seed(0))
        if edit is not None:
            with torch.no_grad():
                edit(model)
        ctx = context(model, copy.deepcopy(model), x, torch.tensor([0, 1]), num_classes=10)
        return call("norm.path_norm_1", ctx)

    value = path_norm_1()
    assert math.isfinite(value) and value > 0
    assert path_norm_1(lambda m: m[0].weight.mul_(2.0)) == pytest.approx(2 * value, rel=1e-9)
    assert path_norm_1(lambda m: m[-1].weight.mul_(3.0)) == pytest.approx(3 * value, rel=1e-9)
    only_3x3 = path_norm_1(lambda m: m[3].branch1x1[0].weight.zero_())
    only_1x1 = path_norm_1(lambda m: m[3].branch3x3[0].weight.zero_())
    assert 0 < max(only_1x1, only_3x3) < value <= (only_1x1 + only_3x3) * (1 + 1e-9)


# --- ÷ margin ---------------------------------------------------------------------------------


def numpy_margins(x, y, w1=W1, b1=B1, w2=W2, b2=B2) -> np.ndarray:
    h = np.maximum(0.0, np.array(x, float) @ np.array(w1, float).T + np.array(b1, float))
    logits = h @ np.array(w2, float).T + np.array(b2, float)
    out = []
    for f, label in zip(logits, y):
        out.append(f[label] - max(f[j] for j in range(len(f)) if j != label))
    return np.array(out)


MARGIN_X = [[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0], [1.0, 0.0, 0.0], [0.0, 2.0, 1.0]]


def margin_ctx(wrong: bool = False):
    x = np.array(MARGIN_X)
    h = np.maximum(0.0, x @ np.array(W1, float).T + np.array(B1, float))
    logits = h @ np.array(W2, float).T + np.array(B2, float)
    y = logits.argmin(axis=1) if wrong else logits.argmax(axis=1)
    ctx = context(
        mlp(W1, B1, W2, B2), mlp(W1_INIT, B1_INIT, W2_INIT, B2_INIT),
        torch.tensor(x, dtype=torch.float32), torch.tensor(y), num_classes=3,
    )
    return ctx, np.percentile(numpy_margins(x, y), 10)


def test_margin_normalized_norms():
    ctx, gamma = margin_ctx()
    assert gamma > 0
    s1, s2 = sigma_max(W1) ** 2, sigma_max(W2) ** 2
    f1, f2 = fro_sq(W1), fro_sq(W2)
    log_g2 = 2 * math.log(gamma)
    expected = {
        "margin.log_prod_spectral_over_margin": math.log(s1 * s2) - log_g2,
        "margin.log_prod_frobenius_over_margin": math.log(f1 * f2) - log_g2,
        "margin.log_sum_spectral_over_margin": math.log(2) + (math.log(s1 * s2) - log_g2) / 2,
        "margin.log_sum_frobenius_over_margin": math.log(2) + (math.log(f1 * f2) - log_g2) / 2,
    }
    for name, value in expected.items():
        assert call(name, ctx) == pytest.approx(value, rel=1e-6), name


def test_path_norm_over_margin_is_jiangs_unrooted_sum():
    ctx, gamma = margin_ctx()
    a, b = np.array(W1, float), np.array(W2, float)
    path_sum = sum(a[j, i] ** 2 * b[o, j] ** 2 for i in range(3) for j in range(4) for o in range(3))
    assert call("margin.path_norm_2_over_margin", ctx) == pytest.approx(path_sum / gamma**2, rel=1e-6)
    assert call("norm.path_norm_2", ctx) == pytest.approx(math.sqrt(path_sum), rel=1e-9)


def test_margin_normalized_norms_reject_a_non_positive_margin():
    ctx, gamma = margin_ctx(wrong=True)
    assert gamma < 0
    for name in OVER_MARGIN_MEASURES:
        with pytest.raises(ValueError, match="margin is .* <= 0"):
            call(name, ctx)


class _UserConcat(nn.Module):
    """A user's own branch-concatenating block, declared through the support query."""

    concatenates_children = True

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 1), nn.Linear(2, 1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


def test_path_norm_walks_any_container_that_declares_concatenates_children():
    from measures.norms import path_norm

    torch.manual_seed(0)
    model = nn.Sequential(_UserConcat(), nn.ReLU(), nn.Linear(2, 1))
    wa, wb, v = model[0].a.weight[0], model[0].b.weight[0], model[2].weight[0]
    # Brute force: every input i → branch k → output path, with weights |w_ki| · |v_k|.
    brute = sum(abs(w[i].item()) * abs(v[k].item()) for k, w in enumerate((wa, wb)) for i in range(2))
    assert path_norm(model, (2,), 1.0) == pytest.approx(brute, rel=1e-12)
    _UserConcat.concatenates_children = False
    try:
        with pytest.raises(NotApplicable, match="_UserConcat"):
            path_norm(model, (2,), 1.0)
    finally:
        _UserConcat.concatenates_children = True
