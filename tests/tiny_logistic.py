"""A logistic-regression "network" on two Gaussian blobs, with trained and initial weights:
small enough that the perturbation measures (PAC-Bayes, sharpness) can be checked by brute
force."""

from __future__ import annotations

import torch
from torch import nn

from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.registry import _MEASURES

W, B = [[-1.0, -0.2], [1.0, 0.2]], [0.1, -0.1]  # separates the blobs (class 1 at x₁ > 0)
W0, B0 = [[0.3, -0.1], [0.2, 0.4]], [0.05, -0.02]  # "initial" weights


def blobs(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=gen) + torch.stack([3.0 * y - 1.5, torch.zeros(n)], dim=1)
    return x, y


def linear(w, b) -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(w))
        model[0].bias.copy_(torch.tensor(b))
    return model


def scaled(scale: float):
    return [[scale * v for v in row] for row in W], [scale * v for v in B]


def context(scale: float = 1.0, name: str = "test", cache: RunCache | None = None) -> MeasureContext:
    if cache is None:
        x, y = blobs()
        cache = RunCache(linear(*scaled(scale)), linear(W0, B0), DataSplit("tiny", x, y, x, y, 2), "cpu")
    return MeasureContext(cache, name)


def call(name: str, ctx: MeasureContext) -> float:
    value = _MEASURES[name].fn(ctx)
    assert isinstance(value, float)
    return value
