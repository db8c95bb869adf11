"""Models: the paper's parameter counts (Zhang et al. 2017, Table 1), forward shapes, seeded
initialization that touches no global random state, dropout, shift-only BatchNorm, and the
errors a suite author sees."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gentest.errors import GentestError
from gentest.models import (
    MODELS,
    ShiftOnlyBatchNorm2d,
    build_model,
    count_parameters,
    initialize,
    validate_model_args,
)

CIFAR = (3, 28, 28)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- Table 1 parameter counts (input 3×28×28, 10 classes) ----------------------------------


def test_count_mlp_1x512():
    assert count_parameters(build_model("mlp", CIFAR, 10, hidden=[512])) == 1_209_866


def test_count_mlp_3x512():
    assert count_parameters(build_model("mlp", CIFAR, 10, hidden=[512, 512, 512])) == 1_735_178


def test_count_inception_without_batchnorm():
    assert count_parameters(build_model("inception", CIFAR, 10, batchnorm=False)) == 1_649_402


def test_count_inception_shift_only_batchnorm_default():
    # The paper's count with BatchNorm: TF slim's shift-only batch norm replaces the conv bias.
    model = build_model("inception", CIFAR, 10)
    assert count_parameters(model) == 1_649_402
    assert any(isinstance(m, ShiftOnlyBatchNorm2d) for m in model.modules())


def test_count_inception_bn_scale():
    # PyTorch's BatchNorm2d(affine=True): a scale and a shift per channel, convolutions unbiased.
    model = build_model("inception", CIFAR, 10, bn_scale=True)
    assert count_parameters(model) == 1_651_114
    assert not any(isinstance(m, ShiftOnlyBatchNorm2d) for m in model.modules())


def test_count_alexnet():
    assert count_parameters(build_model("alexnet", CIFAR, 10)) == 1_387_786


# --- Counts from the architecture description, by hand --------------------------------------


def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out  # bias, or the BatchNorm shift that stands in for it


def test_counts_match_hand_arithmetic():
    pixels = 3 * 28 * 28
    assert dense(pixels, 512) + dense(512, 10) == 1_209_866
    assert dense(pixels, 512) + 2 * dense(512, 512) + dense(512, 10) == 1_735_178
    alexnet = conv(3, 64, 5) + conv(64, 64, 5) + dense(7 * 7 * 64, 384) + dense(384, 192) + dense(192, 10)
    assert alexnet == 1_387_786

    # The Inception plan as written in appendix A, walked by hand.
    total, channels = conv(3, 96, 3), 96
    plan = ["I32,32", "I32,48", "D80", "I112,48", "I96,64", "I80,80", "I48,96", "D96", "I176,160", "I176,160"]
    n_conv_channels = 96
    for step in plan:
        if step[0] == "I":
            c1, c3 = map(int, step[1:].split(","))
            total += conv(channels, c1, 1) + conv(channels, c3, 3)
            channels, n_conv_channels = c1 + c3, n_conv_channels + c1 + c3
        else:
            c = int(step[1:])
            total += conv(channels, c, 3)
            channels, n_conv_channels = channels + c, n_conv_channels + c
    total += dense(channels, 10)
    assert total == 1_649_402
    assert total + n_conv_channels == 1_651_114  # a learned BatchNorm scale per conv channel

    # The built models agree with the hand counts, layer by layer for the MLP.
    mlp = build_model("mlp", CIFAR, 10, hidden=[512, 512, 512])
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(pixels, 512), (512, 512), (512, 512), (512, 10)]


# --- Forward shapes --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["inception", "alexnet", "mlp"])
def test_image_forward_shape(name):
    model = build_model(name, CIFAR, 10, generator=gen(0)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *CIFAR, generator=gen(1))).shape == (2, 10)


@pytest.mark.parametrize("name", ["cnn1d", "mlp"])
def test_sequence_forward_shape(name):
    model = build_model(name, (40,), 10, generator=gen(0))
    assert model(torch.randn(2, 40, generator=gen(1))).shape == (2, 10)


def test_cnn1d_is_mnist1d_convbase():
    model = build_model("cnn1d", (40,), 10)
    assert count_parameters(model) == (1 * 5 + 1) * 25 + 2 * (25 * 3 + 1) * 25 + dense(25 * 5, 10)
    # (C, L) input needs no Unflatten; the flattened size follows the length.
    model = build_model("cnn1d", (2, 64), 3, channels=8)
    assert model(torch.randn(4, 2, 64)).shape == (4, 3)


def test_top_level_is_sequential():
    for name, shape in [("mlp", CIFAR), ("cnn1d", (40,)), ("alexnet", CIFAR)]:
        model = build_model(name, shape, 10)
        assert type(model) is nn.Sequential
        assert all(not list(m.children()) for m in model)  # flat: BackPACK-friendly


# --- Seeded initialization --------------------------------------------------------------------


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "name,shape,args",
    [("mlp", CIFAR, {"hidden": [64, 32]}), ("cnn1d", (40,), {}), ("alexnet", CIFAR, {}), ("inception", CIFAR, {})],
)
def test_same_seed_same_parameters_different_seed_different(name, shape, args):
    a = build_model(name, shape, 10, generator=gen(7), **args)
    b = build_model(name, shape, 10, generator=gen(7), **args)
    c = build_model(name, shape, 10, generator=gen(8), **args)
    assert same_state(a, b)
    assert not same_state(a, c)
    weights_a = [p for p in a.parameters() if p.dim() > 1]
    weights_c = [p for p in c.parameters() if p.dim() > 1]
    assert all(not torch.equal(p, q) for p, q in zip(weights_a, weights_c))


def test_build_and_initialize_leave_global_rng_untouched():
    before = torch.get_rng_state()
    model = build_model("alexnet", CIFAR, 10, generator=gen(0))
    build_model("mlp", (40,), 10, generator=gen(0), hidden=[16], dropout=0.5)
    initialize(model, gen(1))
    assert torch.equal(torch.get_rng_state(), before)


def test_seeded_build_ignores_global_rng_state():
    state = torch.get_rng_state()
    a = build_model("mlp", (40,), 10, generator=gen(3), hidden=[16])
    torch.rand(1000)  # move the global generator on
    b = build_model("mlp", (40,), 10, generator=gen(3), hidden=[16])
    torch.set_rng_state(state)
    assert same_state(a, b)


def test_initialize_matches_pytorch_default_linear_distribution():
    layer = nn.Linear(1000, 1000)
    initialize(layer, gen(0))
    bound = 1 / math.sqrt(1000)
    for t in (layer.weight, layer.bias):
        assert t.abs().max() <= bound
    assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.01)
    assert layer.weight.mean().item() == pytest.approx(0.0, abs=bound / 100)
    assert layer.bias.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    # ... and it is exactly PyTorch's own draw, weight first, from the given generator.
    g = gen(0)
    expected = torch.empty(1000, 1000)
    nn.init.kaiming_uniform_(expected, a=math.sqrt(5), generator=g)
    assert torch.equal(layer.weight, expected)


def test_initialize_matches_pytorch_default_conv_and_batchnorm():
    model = nn.Sequential(nn.Conv2d(16, 32, 3), nn.BatchNorm2d(32), nn.Conv1d(4, 8, 5), ShiftOnlyBatchNorm2d(8))
    with torch.no_grad():
        for m in (model[1], model[3]):
            m.bias.fill_(3.0)
            m.running_mean.fill_(2.0)
            m.running_var.fill_(5.0)
            m.num_batches_tracked.fill_(9)
        model[1].weight.fill_(4.0)
    initialize(model, gen(0))
    for m, fan_in in ((model[0], 16 * 9), (model[2], 4 * 5)):
        bound = 1 / math.sqrt(fan_in)
        assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound
        assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    for m in (model[1], model[3]):
        assert torch.equal(m.weight, torch.ones_like(m.weight))
        assert torch.equal(m.bias, torch.zeros_like(m.bias))
        assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
        assert torch.equal(m.running_var, torch.ones_like(m.running_var))
        assert m.num_batches_tracked.item() == 0


def test_initialize_refuses_unknown_parameterized_module():
    with pytest.raises(GentestError, match="Embedding"):
        initialize(nn.Sequential(nn.Embedding(10, 4)), gen(0))


# --- Dropout ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,shape,args,expected",
    [
        ("mlp", (40,), {"hidden": [16, 16]}, 2),  # after each hidden ReLU
        ("alexnet", CIFAR, {}, 2),  # after the 384 and 192 hidden layers
        ("cnn1d", (40,), {}, 1),  # before the classifier
        ("inception", (3, 8, 8), {"batchnorm": False}, 1),  # before the classifier
    ],
)
def test_dropout_present_only_when_asked(name, shape, args, expected):
    def dropouts(model):
        return [m for m in model.modules() if isinstance(m, nn.Dropout)]

    assert dropouts(build_model(name, shape, 10, **args)) == []
    found = dropouts(build_model(name, shape, 10, dropout=0.25, **args))
    assert len(found) == expected and all(m.p == 0.25 for m in found)


def test_mlp_dropout_follows_each_hidden_relu():
    model = build_model("mlp", (40,), 10, hidden=[16, 8], dropout=0.5)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]


# --- Shift-only BatchNorm --------------------------------------------------------------------


def test_shift_only_batchnorm_has_fixed_unit_scale():
    bn = ShiftOnlyBatchNorm2d(6)
    assert isinstance(bn, nn.BatchNorm2d)
    assert set(dict(bn.named_parameters())) == {"bias"}
    assert "weight" in dict(bn.named_buffers())
    assert torch.equal(bn.weight, torch.ones(6)) and not bn.weight.requires_grad


def test_shift_only_batchnorm_behaves_like_batchnorm_with_unit_weight():
    shift, ref = ShiftOnlyBatchNorm2d(6), nn.BatchNorm2d(6, affine=True)
    with torch.no_grad():
        bias = torch.randn(6, generator=gen(0))
        shift.bias.copy_(bias)
        ref.bias.copy_(bias)
    x = torch.randn(4, 6, 5, 5, generator=gen(1)) * 3 + 1
    for _ in range(2):  # train mode: batch statistics, running statistics updated alike
        torch.testing.assert_close(shift(x), ref(x))
    torch.testing.assert_close(shift.running_mean, ref.running_mean)
    torch.testing.assert_close(shift.running_var, ref.running_var)
    shift.eval(), ref.eval()
    torch.testing.assert_close(shift(x), ref(x))
    # Gradient reaches the shift only.
    shift.train()
    shift(x).sum().backward()
    assert shift.bias.grad is not None and shift.weight.grad is None


# --- Local response normalization (TF CIFAR-10 tutorial parameters) ----------------------------


def test_alexnet_lrn_is_tf_cifar10_lrn():
    model = build_model("alexnet", CIFAR, 10)
    lrns = [m for m in model if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrns) == 2
    x = torch.randn(2, 64, 3, 3, generator=gen(0))
    # tf.nn.lrn(depth_radius=4, bias=1.0, alpha=0.001/9, beta=0.75), written out.
    padded = nn.functional.pad(x.pow(2), (0, 0, 0, 0, 4, 4))
    sqr_sum = torch.stack([padded[:, c : c + 9].sum(1) for c in range(64)], dim=1)
    expected = x / (1.0 + 0.001 / 9 * sqr_sum).pow(0.75)
    torch.testing.assert_close(lrns[0](x), expected)


# --- Bad input ---------------------------------------------------------------------------------


def one_line_error(call) -> str:
    with pytest.raises(GentestError) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_unknown_model_lists_available():
    message = one_line_error(lambda: build_model("resnet", CIFAR, 10))
    assert "resnet" in message
    assert all(name in message for name in ("mlp", "cnn1d", "inception", "alexnet"))


def test_unknown_option_lists_allowed():
    message = one_line_error(lambda: validate_model_args("mlp", {"width": 3}))
    assert "width" in message and "hidden" in message and "dropout" in message


@pytest.mark.parametrize(
    "name,args,word",
    [
        ("mlp", {"hidden": [0]}, "hidden"),
        ("mlp", {"hidden": 512}, "hidden"),
        ("mlp", {"hidden": [512.0]}, "hidden"),
        ("mlp", {"dropout": 1.0}, "dropout"),
        ("alexnet", {"dropout": -0.1}, "dropout"),
        ("cnn1d", {"channels": 0}, "channels"),
        ("inception", {"batchnorm": "yes"}, "batchnorm"),
        ("inception", {"batchnorm": False, "bn_scale": True}, "bn_scale"),
    ],
)
def test_bad_option_values(name, args, word):
    assert word in one_line_error(lambda: validate_model_args(name, args))


def test_validate_fills_defaults_without_sharing_them():
    args = validate_model_args("mlp", {})
    assert args == {"dropout": 0.0, "hidden": [512]}
    args["hidden"].append(7)
    assert validate_model_args("mlp", {}) == {"dropout": 0.0, "hidden": [512]}
    assert validate_model_args("inception", {"dropout": 0}) == {"dropout": 0.0, "batchnorm": True, "bn_scale": False}
    assert set(MODELS) >= {"mlp", "cnn1d", "inception", "alexnet"}


@pytest.mark.parametrize(
    "name,shape,word",
    [
        ("alexnet", (40,), "image"),
        ("inception", (40,), "image"),
        ("inception", (3, 5, 5), "7x7"),
        ("cnn1d", CIFAR, "sequence"),
        ("mlp", (), "input shape"),
    ],
)
def test_wrong_input_shape(name, shape, word):
    assert word in one_line_error(lambda: build_model(name, shape, 10))


def test_bad_num_classes():
    assert "classes" in one_line_error(lambda: build_model("mlp", (40,), 0))
