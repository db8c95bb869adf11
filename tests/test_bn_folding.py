"""BatchNorm folding in the measure context: ``ctx.layers()`` (``fold_bn=True``) describes a
network that computes the same function as the original in eval mode.

Each test rebuilds a network *from the folded layers alone* — a copy of the model with every
BatchNorm replaced by ``nn.Identity`` and every Linear/Conv given the folded weight and bias —
and compares its outputs with the original model's; the folding code itself is not used to
build the reference.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import measures.norms  # noqa: F401  (registers the norm measures)
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.errors import NotApplicable
from gentest.models import ShiftOnlyBatchNorm2d, build_model
from gentest.registry import _MEASURES


def context(model: nn.Module, init_model: nn.Module, x: torch.Tensor, num_classes: int, name="test") -> MeasureContext:
    y = torch.arange(len(x)) % num_classes
    return MeasureContext(RunCache(model, init_model, DataSplit("tiny", x, y, x, y, num_classes), "cpu"), name)


@torch.no_grad()
def randomize_bn(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Non-trivial running statistics, scales and shifts for every BatchNorm (scale only where learned)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(0.2 + torch.rand(n, generator=gen) * 3)
            if isinstance(m.weight, nn.Parameter):
                m.weight.copy_(0.5 + torch.rand(n, generator=gen) * 2 * torch.where(torch.rand(n, generator=gen) < 0.2, -1.0, 1.0))
            if isinstance(m.bias, nn.Parameter):
                m.bias.copy_(torch.randn(n, generator=gen))
    return model.eval()


@torch.no_grad()
def rebuild_from_layers(model: nn.Module, layers) -> nn.Module:
    """A copy of ``model`` with BatchNorms replaced by Identity and the given layer matrices loaded."""
    net = copy.deepcopy(model)
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, child_name, nn.Identity())
    modules = dict(net.named_modules())
    assert [layer.name for layer in layers] == [
        n for n, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
    ]
    for layer in layers:
        m = modules[layer.name]
        m.weight.copy_(layer.weight.reshape(m.weight.shape))
        if m.bias is None:
            m.bias = nn.Parameter(layer.bias.clone())
        else:
            m.bias.copy_(layer.bias)
    return net.eval()


def assert_same_function(model, ctx, x, init=False, atol=1e-5):
    layers = ctx.layers()
    source = ctx.init_model if init else ctx.model
    if init:
        from dataclasses import replace

        layers = [replace(layer, weight=layer.initial, bias=layer.initial_bias) for layer in layers]
    rebuilt = rebuild_from_layers(source, layers)
    with torch.no_grad():
        expected, got = source(x), rebuilt(x)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in rebuilt.modules())
    torch.testing.assert_close(got, expected, atol=atol, rtol=1e-5)


def conv_bn_net(bias: bool, gen: torch.Generator, bn=nn.BatchNorm2d) -> nn.Module:
    torch.manual_seed(0)  # construction only; every value is overwritten from gen below
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=bias), bn(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)
    )
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 or p is model[0].bias or p is model[4].bias:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return randomize_bn(model, gen)


@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_batchnorm2d(bias):
    gen = torch.Generator().manual_seed(1)
    model, init = conv_bn_net(bias, gen), conv_bn_net(bias, gen)
    x = torch.randn(6, 2, 5, 5, generator=gen)
    ctx = context(model, init, x, 3)
    assert_same_function(model, ctx, x)
    assert_same_function(init, ctx, x, init=True)
    # The folded matrices are not the raw ones; the raw view is still available.
    raw = ctx.layers(fold_bn=False)
    assert not torch.equal(ctx.layers()[0].weight, raw[0].weight)
    assert torch.equal(raw[0].weight, model[0].weight.detach().reshape(4, -1))
    assert (raw[0].bias is None) == (not bias) and ctx.layers()[0].bias is not None


def test_linear_batchnorm1d_matches_the_formula():
    gen = torch.Generator().manual_seed(2)

    def net():
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        return randomize_bn(model, gen)

    model = net()
    x = torch.randn(8, 3, generator=gen)
    ctx = context(model, net(), x, 2)
    assert_same_function(model, ctx, x)
    # Per output unit j, in plain numpy: W'_j = s_j W_j, b'_j = (b_j − μ_j) s_j + β_j.
    w, b = model[0].weight.detach().numpy().astype(np.float64), model[0].bias.detach().numpy().astype(np.float64)
    bn = model[1]
    s = bn.weight.detach().numpy().astype(np.float64) / np.sqrt(bn.running_var.numpy().astype(np.float64) + bn.eps)
    mu, beta = bn.running_mean.numpy().astype(np.float64), bn.bias.detach().numpy().astype(np.float64)
    layer = ctx.layers()[0]
    np.testing.assert_allclose(layer.weight.numpy(), s[:, None] * w, rtol=1e-6)
    np.testing.assert_allclose(layer.bias.numpy(), (b - mu) * s + beta, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ctx.layers()[1].weight.numpy(), model[3].weight.detach().numpy())  # no BN after it


def test_shift_only_batchnorm():
    gen = torch.Generator().manual_seed(3)
    model = conv_bn_net(False, gen, bn=ShiftOnlyBatchNorm2d)
    assert not isinstance(model[1].weight, nn.Parameter)  # the scale is a fixed buffer of ones
    x = torch.randn(4, 2, 5, 5, generator=gen)
    ctx = context(model, conv_bn_net(False, gen, bn=ShiftOnlyBatchNorm2d), x, 3)
    assert_same_function(model, ctx, x)
    s = 1 / torch.sqrt(model[1].running_var.double() + model[1].eps)
    torch.testing.assert_close(ctx.layers()[0].weight.double(), model[0].weight.double().reshape(4, -1) * s[:, None])


def test_inception():
    gen = torch.Generator().manual_seed(0)
    model = randomize_bn(build_model("inception", (3, 28, 28), 10, generator=torch.Generator().manual_seed(0)), gen)
    init = build_model("inception", (3, 28, 28), 10, generator=torch.Generator().manual_seed(1)).eval()
    x = torch.randn(2, 3, 12, 12, generator=gen)  # the model is built for 28×28; smaller images run faster
    ctx = context(model, init, x, 10)
    layers = ctx.layers()
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_bn == len(layers) - 1  # every conv is followed by its BatchNorm; the classifier is not
    assert all(layer.bias is not None for layer in layers)
    assert_same_function(model, ctx, x, atol=1e-4)
    assert_same_function(init, ctx, x, init=True, atol=1e-4)
    # The initial model's statistics are the reset ones (mean 0, var 1): W⁰' = W⁰/√(1 + ε), b⁰' = 0.
    raw = ctx.layers(fold_bn=False)
    torch.testing.assert_close(layers[0].initial, raw[0].initial / torch.sqrt(torch.tensor(1 + 1e-5)))
    assert torch.all(layers[0].initial_bias == 0)


def test_batchnorm_that_follows_no_layer_is_not_applicable():
    pre_activation = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(36, 3))
    x = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    ctx = context(pre_activation, copy.deepcopy(pre_activation), x, 3)
    with pytest.raises(NotApplicable, match=r"BatchNorm after ReLU '1' cannot be folded into a preceding layer"):
        ctx.layers()
    with pytest.raises(NotApplicable, match="cannot be folded"):
        _MEASURES["norm.log_prod_spectral"].fn(ctx)
    with pytest.raises(NotApplicable, match="cannot be folded"):
        ctx.folded_model()
    assert len(ctx.layers(fold_bn=False)) == 2  # the raw view still works

    first = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2))
    ctx = context(first, copy.deepcopy(first), torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), 2)
    with pytest.raises(NotApplicable, match="cannot be folded into a preceding layer"):
        ctx.layers()

    class Custom(nn.Module):  # forward order unknown to the folding: not trusted
        def __init__(self):
            super().__init__()
            self.fc, self.bn = nn.Linear(3, 2), nn.BatchNorm1d(2)

        def forward(self, x):
            return self.bn(self.fc(x))

    ctx = context(Custom(), Custom(), torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), 2)
    with pytest.raises(NotApplicable, match="cannot be folded into a preceding layer"):
        ctx.layers()


def test_models_without_batchnorm_get_the_raw_layers():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))
    ctx = context(model, copy.deepcopy(model), torch.randn(3, 3, generator=torch.Generator().manual_seed(0)), 3)
    assert ctx.layers() is ctx.layers(fold_bn=False)  # the very same tensors (views of the model)


def test_folding_leaves_the_models_alone_and_each_context_gets_its_own_copy():
    gen = torch.Generator().manual_seed(4)
    model, init = conv_bn_net(True, gen), conv_bn_net(True, gen)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 2, 5, 5, generator=gen)
    cache = RunCache(model, init, DataSplit("tiny", x, torch.zeros(3, dtype=torch.long), x, torch.zeros(3, dtype=torch.long), 3))
    a, b = MeasureContext(cache, "a"), MeasureContext(cache, "b")
    a.layers()[0].weight.mul_(0)  # a careless measure
    assert b.layers()[0].weight.abs().sum() > 0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in cache.model.modules())


def test_norms_of_a_batchnorm_model_are_those_of_the_folded_network():
    gen = torch.Generator().manual_seed(5)
    model, init = conv_bn_net(False, gen), conv_bn_net(False, gen)
    x = torch.randn(4, 2, 5, 5, generator=gen)
    ctx = context(model, init, x, 3)
    folded = rebuild_from_layers(model, ctx.layers())
    folded_init = rebuild_from_layers(init, [type(l)(l.name, l.kind, l.initial, l.initial, l.initial_bias, l.initial_bias) for l in ctx.layers()])
    ref = context(folded, folded_init, x, 3)
    for name in ["norm.log_prod_spectral", "norm.log_prod_frobenius", "norm.frobenius_distance_from_init"]:
        assert _MEASURES[name].fn(ctx) == pytest.approx(_MEASURES[name].fn(ref), rel=1e-6), name
