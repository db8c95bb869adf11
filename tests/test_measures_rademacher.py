"""Rademacher/VC proxies against hand counts and numpy on the tiny MLP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import measures.controls  # noqa: F401  (control.param_count, for comparison)
import measures.rademacher  # noqa: F401  (registers the measures)
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.registry import _MEASURES

from tiny_mlp import B1, B1_INIT, B2, B2_INIT, W1, W1_INIT, W2, W2_INIT, mlp

NAMES = ["rademacher.param_count", "rademacher.vc_dimension_bound", "rademacher.neyshabur2015_frobenius"]
X = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0], [1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])


def logits_of(x):
    h = np.maximum(0.0, x @ np.array(W1, float).T + np.array(B1, float))
    return h @ np.array(W2, float).T + np.array(B2, float)


def ctx_of(model, init=None, wrong=False):
    logits = logits_of(X)
    y = logits.argmin(axis=1) if wrong else logits.argmax(axis=1)
    margins = np.array([f[c] - max(f[j] for j in range(3) if j != c) for f, c in zip(logits, y)])
    xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    init = init if init is not None else mlp(W1_INIT, B1_INIT, W2_INIT, B2_INIT)
    return MeasureContext(RunCache(model, init, DataSplit("tiny", xt, yt, xt, yt, 3)), "t"), np.percentile(margins, 10)


def call(name, ctx) -> float:
    value = _MEASURES[name].fn(ctx)
    assert isinstance(value, float)
    return value


def test_registered_with_metadata():
    for name in NAMES:
        m = _MEASURES[name]
        assert (m.family, m.orientation) == ("rademacher", "higher-worse")
        assert m.description
    assert _MEASURES["rademacher.param_count"].requires == frozenset()
    assert _MEASURES["rademacher.neyshabur2015_frobenius"].requires == {"train_data"}
    assert "Jiang" in _MEASURES["rademacher.param_count"].fn.__doc__
    assert "Harvey" in _MEASURES["rademacher.vc_dimension_bound"].fn.__doc__


def test_param_count_and_vc_bound_by_hand():
    ctx, _ = ctx_of(mlp(W1, B1, W2, B2))
    omega = 3 * 4 + 4 + 4 * 3 + 3  # = 31
    assert call("rademacher.param_count", ctx) == omega
    assert call("rademacher.param_count", ctx) == call("control.param_count", ctx)
    assert call("rademacher.vc_dimension_bound", ctx) == pytest.approx(omega * 2 * math.log(omega), rel=1e-12)


def test_architecture_only_proxies_tie_twins():
    a, _ = ctx_of(mlp(W1, B1, W2, B2))
    b, _ = ctx_of(mlp(W1_INIT, B1_INIT, W2_INIT, B2_INIT))
    for name in ["rademacher.param_count", "rademacher.vc_dimension_bound"]:
        assert call(name, a) == call(name, b)


def test_neyshabur2015_frobenius():
    ctx, gamma = ctx_of(mlp(W1, B1, W2, B2))
    assert gamma > 0
    f1 = math.sqrt(sum(v**2 for row in W1 for v in row))  # √12
    f2 = math.sqrt(sum(v**2 for row in W2 for v in row))  # √11
    expected = math.log(2**2 * f1 * f2 / (gamma * math.sqrt(len(X))))
    assert call("rademacher.neyshabur2015_frobenius", ctx) == pytest.approx(expected, rel=1e-6)


def test_neyshabur2015_rejects_a_non_positive_margin():
    ctx, gamma = ctx_of(mlp(W1, B1, W2, B2), wrong=True)
    assert gamma < 0
    with pytest.raises(ValueError, match="margin is .* <= 0"):
        call("rademacher.neyshabur2015_frobenius", ctx)


def test_counts_on_an_unfoldable_batchnorm_model():
    """The counts do not need BatchNorm folding, so a pre-activation net still has them."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 3)).eval()
    ctx, _ = ctx_of(model, init=nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 3)))
    omega = 3 * 4 + 4 + 4 + 4 + 4 * 3 + 3  # BatchNorm scale and shift are parameters; running stats are not
    assert call("rademacher.param_count", ctx) == omega
    assert call("rademacher.vc_dimension_bound", ctx) == pytest.approx(omega * 2 * math.log(omega), rel=1e-12)
