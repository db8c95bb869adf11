"""The Fisher–Rao norm against a per-example autograd loop, and Liang et al.'s structural identity.

- Brute force: for every example, ∇_w ℓ_i by ``torch.autograd.grad`` and its inner product
  with w (all parameters, biases included), in float64; the measure is the mean of squares.
- Property (Liang et al. 2019, structural lemma): for a ReLU network without biases and with L
  hidden layers, ⟨w, ∂f(x)/∂w⟩ = (L+1) f(x), so ⟨w, ∇_w ℓ_i⟩ = (L+1)⟨∂ℓ/∂f, f(x_i)⟩ with
  ∂ℓ/∂f = softmax(f) − onehot(y) for the cross-entropy; hence the norm is invariant to the
  rescaling W_1 → αW_1, W_2 → W_2/α, which leaves f unchanged.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import measures.fisher_rao as fr
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.registry import _MEASURES

NAME = "fisher-rao.norm"


def relu_mlp(widths, bias: bool, seed: int, dtype=torch.float64) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.7)
    return model


def data(n=25, d=4, classes=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def loop_directional(model, x, y) -> torch.Tensor:
    params = list(model.parameters())
    out = []
    for i in range(len(y)):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, params)
        out.append(sum((g.double() * p.detach().double()).sum() for g, p in zip(grads, params)))
    return torch.stack(out)


def context(model, x, y, classes=3) -> MeasureContext:
    return MeasureContext(RunCache(model, model, DataSplit("tiny", x, y, x, y, classes), "cpu"), NAME)


@pytest.mark.parametrize("method", ["jvp", "double_backward"])
@pytest.mark.parametrize("bias", [True, False])
def test_directional_derivatives_match_a_per_example_gradient_loop(method, bias):
    model = relu_mlp([4, 6, 5, 3], bias=bias, seed=1)
    x, y = data()
    got = fr.directional_loss_derivatives(model, x, y, method)
    torch.testing.assert_close(got, loop_directional(model, x, y), rtol=1e-10, atol=1e-12)


def test_measure_is_the_mean_square_of_the_loop_values():
    model = relu_mlp([4, 6, 5, 3], bias=True, seed=2, dtype=torch.float32)
    x, y = data(dtype=torch.float32)
    ctx = context(model, x, y)
    value = _MEASURES[NAME].fn(ctx)
    expected = loop_directional(model, x, y).pow(2).mean().item()
    assert value == pytest.approx(expected, rel=1e-5)
    assert ctx.recorded == {"samples": 25, "method": "jvp"}


@pytest.mark.parametrize("hidden_layers", [1, 2, 3])
def test_liang_identity_for_bias_free_relu_networks(hidden_layers):
    """⟨w, ∇_w ℓ_i⟩ = (L+1)⟨softmax(f) − onehot(y), f(x_i)⟩ with L hidden layers."""
    model = relu_mlp([4] + [6] * hidden_layers + [3], bias=False, seed=3 + hidden_layers)
    x, y = data(seed=hidden_layers)
    got = fr.directional_loss_derivatives(model, x, y)
    with torch.no_grad():
        f = model(x)
        dl_df = F.softmax(f, dim=1) - F.one_hot(y, 3).double()
    torch.testing.assert_close(got, (hidden_layers + 1) * (dl_df * f).sum(dim=1), rtol=1e-10, atol=1e-12)


def test_invariant_to_rescaling_between_layers_of_a_bias_free_relu_network():
    model = relu_mlp([4, 6, 5, 3], bias=False, seed=7)
    rescaled = relu_mlp([4, 6, 5, 3], bias=False, seed=7)
    with torch.no_grad():
        rescaled[0].weight.mul_(5.0)
        rescaled[2].weight.mul_(0.5)
        rescaled[4].weight.mul_(0.4)  # 5 · 0.5 · 0.4 = 1: the same function
    x, y = data()
    a = _MEASURES[NAME].fn(context(model, x, y))
    b = _MEASURES[NAME].fn(context(rescaled, x, y))
    assert a == pytest.approx(b, rel=1e-10)
    # whereas the plain parameter norm changes
    norm_sq = lambda m: sum(p.detach().pow(2).sum().item() for p in m.parameters())  # noqa: E731
    assert norm_sq(model) != pytest.approx(norm_sq(rescaled))


def test_subsample_is_seeded_and_model_untouched(monkeypatch):
    monkeypatch.setattr(fr, "SAMPLES", 10)
    monkeypatch.setattr(fr, "CHUNK", 4)  # several chunks
    model = relu_mlp([4, 6, 3], bias=True, seed=5, dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = data(n=40, dtype=torch.float32)
    ctx = context(model, x, y)
    value = _MEASURES[NAME].fn(ctx)
    assert ctx.recorded["samples"] == 10
    assert value == _MEASURES[NAME].fn(context(model, x, y))  # same run, same value
    idx = torch.randperm(40, generator=context(model, x, y).generator)[:10]
    assert value == pytest.approx(loop_directional(model, x[idx], y[idx]).pow(2).mean().item(), rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_falls_back_to_double_backward_without_forward_mode_support(monkeypatch):
    real = fr.directional_loss_derivatives

    def no_forward_mode(model, x, y, method="jvp"):
        if method == "jvp":
            raise NotImplementedError("Trying to use forward AD with an operator that does not support it")
        return real(model, x, y, method)

    monkeypatch.setattr(fr, "directional_loss_derivatives", no_forward_mode)
    model = relu_mlp([4, 6, 3], bias=True, seed=6, dtype=torch.float32)
    x, y = data(dtype=torch.float32)
    ctx = context(model, x, y)
    value = _MEASURES[NAME].fn(ctx)
    assert ctx.recorded["method"] == "double_backward"
    assert value == pytest.approx(loop_directional(model, x, y).pow(2).mean().item(), rel=1e-5)
