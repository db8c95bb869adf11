"""The input–output Jacobian norm against ``torch.autograd.functional.jacobian`` per example
(a Python loop), and the closed form ‖W‖_F of a linear model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import measures.jacobian as jac
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.registry import _MEASURES

NAME = "sensitivity.input_jacobian_norm"


def seeded(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def context(model, x, classes) -> MeasureContext:
    y = torch.zeros(len(x), dtype=torch.int64)
    return MeasureContext(RunCache(model, model, DataSplit("tiny", x, y, x, y, classes), "cpu"), NAME)


def loop_norms(model, x) -> torch.Tensor:
    out = []
    for i in range(len(x)):
        j = torch.autograd.functional.jacobian(lambda xi: model(xi[None])[0], x[i])
        out.append(j.double().pow(2).sum().sqrt())
    return torch.stack(out)


def test_mlp_matches_per_example_jacobian():
    model = seeded(nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 7), nn.ReLU(), nn.Linear(7, 4)), 0)
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(jac.input_jacobian_frobenius(model, x), loop_norms(model, x), rtol=1e-5, atol=1e-7)
    ctx = context(model, x, 4)
    assert _MEASURES[NAME].fn(ctx) == pytest.approx(loop_norms(model, x).mean().item(), rel=1e-5)
    assert ctx.recorded == {"samples": 30}


def test_conv_net_with_batchnorm_in_eval_mode_matches_per_example_jacobian():
    """Image inputs (the Jacobian is over every pixel) and BatchNorm with running statistics."""
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)
    )
    seeded(model, 2)
    with torch.no_grad():
        model[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        model[1].running_var.copy_(torch.tensor([0.5, 2.0, 1.5]))
    x = torch.randn(9, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(jac.input_jacobian_frobenius(model, x), loop_norms(model, x), rtol=1e-5, atol=1e-7)


def test_linear_model_has_constant_jacobian_norm():
    model = seeded(nn.Linear(6, 3), 4)
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(5)) * 10
    expected = torch.linalg.matrix_norm(model.weight.double()).item()
    assert _MEASURES[NAME].fn(context(model, x, 3)) == pytest.approx(expected, rel=1e-6)


def test_subsample_chunks_and_untouched_model(monkeypatch):
    monkeypatch.setattr(jac, "SAMPLES", 11)
    monkeypatch.setattr(jac, "CHUNK", 4)
    model = seeded(nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)), 6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(7))
    ctx = context(model, x, 3)
    value = _MEASURES[NAME].fn(ctx)
    idx = torch.randperm(40, generator=context(model, x, 3).generator)[:11]
    assert ctx.recorded["samples"] == 11
    assert value == pytest.approx(loop_norms(model, x[idx]).mean().item(), rel=1e-5)
    assert value == _MEASURES[NAME].fn(context(model, x, 3))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
