"""Gradient-noise measures against an independent per-example gradient loop.

The reference takes plain ``torch.autograd.grad`` of one example's cross-entropy at a time
(no BackPACK, no batching), flattens the gradients in float64, and computes the statistics
from their definitions: the unbiased total variance (1/(n−1)) Σ‖g_i − ḡ‖², the signal
‖E g‖² as the explicit pair sum (1/(n(n−1))) Σ_{i≠j} g_i·g_j, and the mean of ‖g_i‖₂.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import measures.gradient_noise as gn
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.errors import NotApplicable
from gentest.models import DownsampleBlock, InceptionBlock, ShiftOnlyBatchNorm2d, _conv_unit, build_model, initialize
from gentest.registry import _MEASURES

from tiny_mlp import B1, B2, W1, W2, mlp

NAMES = ("gradient_noise.variance", "gradient_noise.snr", "gradient_noise.mean_per_sample_grad_norm")


def reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    params = list(model.parameters())
    grads = []
    for i in range(len(x)):
        loss = nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        g = torch.autograd.grad(loss, params)
        grads.append(torch.cat([t.reshape(-1).double() for t in g]))
    n = len(grads)
    mean = sum(grads) / n
    variance = sum(((g - mean) ** 2).sum() for g in grads).item() / (n - 1)
    signal = sum((grads[i] @ grads[j]).item() for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    return {
        "gradient_noise.variance": variance,
        "gradient_noise.snr": signal / variance if variance else float("nan"),
        "gradient_noise.mean_per_sample_grad_norm": sum(g.norm().item() for g in grads) / n,
    }


def data(n=24, shape=(3,), classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    return x, y


def cache_for(model, x, y, classes=3) -> RunCache:
    return RunCache(model, model, DataSplit("tiny", x, y, x, y, classes), "cpu")


def call(name, cache) -> float:
    return _MEASURES[name].fn(MeasureContext(cache, name))


def tiny():
    return mlp(W1, B1, W2, B2)


def test_metadata():
    for name in NAMES:
        m = _MEASURES[name]
        assert m.family == "gradient-noise"
        assert m.requires == {"train_data", "grad", "per_sample_grad"}
    assert _MEASURES["gradient_noise.variance"].orientation == "higher-worse"
    assert _MEASURES["gradient_noise.snr"].orientation == "higher-better"
    assert _MEASURES["gradient_noise.mean_per_sample_grad_norm"].orientation == "higher-worse"


@pytest.mark.parametrize("batch", [gn.BATCH, 5])  # one batch; uneven batches of 5
def test_tiny_mlp_matches_per_example_loop(monkeypatch, batch):
    monkeypatch.setattr(gn, "BATCH", batch)
    x, y = data()
    expected = reference(tiny(), x, y)
    cache = cache_for(tiny(), x, y)
    for name in NAMES:
        assert call(name, cache) == pytest.approx(expected[name], rel=1e-5), name


def test_subsample_is_the_documented_one(monkeypatch):
    """n_train > SUBSAMPLE: the first SUBSAMPLE of a permutation drawn from the generator of a
    context named 'gradient_noise' (the same examples for all three measures)."""
    monkeypatch.setattr(gn, "SUBSAMPLE", 10)
    x, y = data(n=30)
    cache = cache_for(tiny(), x, y)
    idx = torch.randperm(30, generator=MeasureContext(cache, "gradient_noise").generator)[:10]
    expected = reference(tiny(), x[idx], y[idx])
    for name in NAMES:
        assert call(name, cache) == pytest.approx(expected[name], rel=1e-5), name
    whole = reference(tiny(), x, y)
    assert call("gradient_noise.variance", cache) != pytest.approx(whole["gradient_noise.variance"], rel=1e-3)


class Residual(nn.Module):
    """A custom (non-Sequential) forward whose parameters all live in supported leaves."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(3, 3)
        self.norm = nn.BatchNorm1d(3, affine=False)  # no parameters: nothing for BackPACK to do
        self.out = nn.Linear(3, 3)

    def forward(self, x):
        return self.out(x + torch.tanh(self.norm(self.inner(x))))


def small_inception() -> nn.Module:
    """gentest's Inception building blocks (custom modules whose branches are concatenated,
    shift-only BatchNorm) with a handful of channels, so the reference loop stays fast."""
    model = nn.Sequential(
        *_conv_unit(3, 4, 3, 1, batchnorm=True, bn_scale=False),
        InceptionBlock(4, 2, 3, batchnorm=True, bn_scale=False),
        DownsampleBlock(5, 3, batchnorm=True, bn_scale=False),
        InceptionBlock(8, 2, 2, batchnorm=True, bn_scale=True),  # plain BatchNorm2d with a scale
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    initialize(model, torch.Generator().manual_seed(2))
    assert any(isinstance(m, ShiftOnlyBatchNorm2d) for m in model.modules())
    return model


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: build_model("cnn1d", (12,), 3, generator=torch.Generator().manual_seed(1), channels=4), (12,)),
        (small_inception, (3, 7, 7)),
        (Residual, (3,)),
    ],
    ids=["cnn1d", "inception", "residual"],
)
def test_other_models_match_per_example_loop(build, shape):
    model = build()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-trivial BatchNorm shifts and running statistics
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if isinstance(m.weight, nn.Parameter):
                    m.weight.uniform_(0.5, 1.5, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-0.5, 0.5, generator=gen)
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    x, y = data(n=6, shape=shape)
    model.eval()
    expected = reference(model, x, y)
    cache = cache_for(model, x, y)
    for name in NAMES:
        assert call(name, cache) == pytest.approx(expected[name], rel=1e-4), name


class OwnParameter(nn.Module):
    """A custom module holding its parameter directly: BackPACK has no extension for it."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 4)
        self.w = nn.Parameter(torch.ones(3, 4))

    def forward(self, x):
        return torch.relu(self.hidden(x)) @ self.w.T


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.square = nn.Linear(3, 3)

    def forward(self, x):
        return self.square(torch.relu(self.square(x)))


def tied() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3))
    model[2].weight = model[0].weight
    return model


@pytest.mark.parametrize(
    "build, reason",
    [
        (OwnParameter, "BackPACK cannot extend OwnParameter: BatchL2Grad has no extension"),
        (lambda: nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 3)), "BackPACK cannot extend LayerNorm ('1')"),
        (CalledTwice, "BackPACK cannot extend Linear ('square'): it is called 2 times"),
        (tied, "BackPACK cannot extend a model whose parameters are shared"),
        (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 3)), "in place"),
        (
            lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False, track_running_stats=False), nn.Linear(4, 3)),
            "BackPACK cannot extend BatchNorm1d ('1'): without running statistics",
        ),
    ],
    ids=["own-parameter", "layernorm", "called-twice", "tied", "inplace-relu", "batch-statistics"],
)
def test_unsupported_models_are_not_applicable(build, reason):
    from backpack.context import CTX

    x, y = data()
    cache = cache_for(build(), x, y)
    handles = len(CTX.hook_handles)
    for name in NAMES:
        with pytest.raises(NotApplicable, match=reason.replace("(", r"\(").replace(")", r"\)")):
            call(name, cache)
    assert len(CTX.hook_handles) == handles  # our BackPACK hooks were removed on the way out


def test_deterministic_and_independent_of_call_order():
    x, y = data(n=40)
    forward = {}
    cache = cache_for(tiny(), x, y)
    for name in NAMES:
        forward[name] = call(name, cache)
    cache = cache_for(tiny(), x, y)
    backward = {name: call(name, cache) for name in reversed(NAMES)}
    assert forward == backward  # bit for bit


def test_one_backpack_pass_per_run():
    x, y = data()
    cache = cache_for(tiny(), x, y)
    for name in NAMES:
        call(name, cache)
    assert cache.hits[gn.STATS_KEY] == 2


def test_model_unchanged_and_left_unhooked():
    from backpack.context import CTX

    x, y = data()
    model = tiny()
    cache = cache_for(model, x, y)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    handles = len(CTX.hook_handles)
    ctx = MeasureContext(cache, NAMES[0])
    _MEASURES[NAMES[0]].fn(ctx)
    for m in (cache.model, ctx.model):
        assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
        assert all(not mod._forward_hooks and not mod._backward_hooks for mod in m.modules())
        assert all(p.grad is None and not hasattr(p, "batch_l2") for p in m.parameters())
    assert len(CTX.hook_handles) == handles


def test_identical_examples_have_no_noise():
    x = torch.ones(8, 3)
    y = torch.zeros(8, dtype=torch.int64)
    cache = cache_for(tiny(), x, y)
    mean_norm = call("gradient_noise.mean_per_sample_grad_norm", cache)
    assert mean_norm == pytest.approx(reference(tiny(), x[:2], y[:2])["gradient_noise.mean_per_sample_grad_norm"], rel=1e-5)
    assert call("gradient_noise.variance", cache) <= 1e-5 * mean_norm**2
    with pytest.raises(ValueError, match="zero variance"):
        call("gradient_noise.snr", cache)
