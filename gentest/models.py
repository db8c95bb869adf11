"""Models: a registry name and keyword options give an ``nn.Module``.

The image architectures are those of Zhang et al., "Understanding deep learning requires
rethinking generalization" (ICLR 2017), appendix A, for 28×28×3 CIFAR-10 crops; the readings
that reproduce the parameter counts of the paper's Table 1 exactly are in
``shared/reference/paper-architectures.md``. For input (3, 28, 28) and 10 classes:

==========================================  ===========
``mlp`` hidden=[512] (MLP 1×512)              1,209,866
``mlp`` hidden=[512, 512, 512] (MLP 3×512)    1,735,178
``inception`` batchnorm=False                 1,649,402
``inception`` (shift-only BatchNorm)          1,649,402
``inception`` bn_scale=True                   1,651,114
``alexnet``                                   1,387,786
==========================================  ===========

``cnn1d`` is the ConvBase of MNIST-1D (Greydanus 2020) for the embedded ``mnist1d`` data.

Every model is an ``nn.Sequential`` at the top level (BackPACK and the per-layer measures walk
layers); only the Inception blocks, whose branches are concatenated, are small custom modules.

Every model takes ``dropout`` (default 0.0, no ``nn.Dropout`` at all): a dropout layer on the
output of each hidden fully connected layer, after its ReLU (``mlp``, ``alexnet``); a model
without hidden fully connected layers (``cnn1d``, ``inception``) gets one dropout layer on the
flattened features just before the classifier.

Initialization: :func:`build_model` with a ``generator`` redraws every parameter from that
generator alone with PyTorch's default distributions (:func:`initialize`) and leaves the
global random state of the caller exactly as it was. Without a generator the model keeps
PyTorch's default initialization, drawn from the global generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from gentest.errors import GentestError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its builder, the options a suite may set (with defaults), and an
    optional ``check(options)`` for constraints between options."""

    name: str
    builder: Builder
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    check: Callable[[dict[str, Any]], None] | None = None


COMMON_OPTIONS: dict[str, Any] = {"dropout": 0.0}

MODELS: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    options: dict[str, Any] | None = None,
    description: str = "",
    check: Callable[[dict[str, Any]], None] | None = None,
):
    """Decorator: register ``builder(input_shape, num_classes, dropout, **options) -> nn.Module``.

    ``options`` maps each option to its default; every model also takes ``dropout``. ``check``
    receives the completed options and raises :class:`GentestError` on a bad combination.
    """

    def wrap(builder: Builder) -> Builder:
        MODELS[name] = ModelInfo(name, builder, {**COMMON_OPTIONS, **(options or {})}, description, check)
        return builder

    return wrap


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; raise :class:`GentestError` listing the known models."""
    if name not in MODELS:
        raise GentestError(f"unknown model '{name}'; available: {', '.join(sorted(MODELS))}")
    return MODELS[name]


# ---------------------------------------------------------------------------------------------
# Option validation


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_dropout(model: str, key: str, value: Any) -> float:
    if not (_is_int(value) or isinstance(value, float)) or not 0.0 <= value < 1.0:
        raise GentestError(f"model '{model}' option '{key}' must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_hidden(model: str, key: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) and v > 0 for v in value):
        raise GentestError(
            f"model '{model}' option '{key}' must be a list of positive integers (layer widths), got {value!r}"
        )
    return list(value)


def _check_positive_int(model: str, key: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise GentestError(f"model '{model}' option '{key}' must be a positive integer, got {value!r}")
    return value


def _check_bool(model: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise GentestError(f"model '{model}' option '{key}' must be true or false, got {value!r}")
    return value


# Checks by option name, shared by the built-in models; an option without one is checked
# against the type of its default (see _check_like_default).
_OPTION_CHECKS: dict[str, Callable[[str, str, Any], Any]] = {
    "dropout": _check_dropout,
    "hidden": _check_hidden,
    "channels": _check_positive_int,
    "batchnorm": _check_bool,
    "bn_scale": _check_bool,
}


def _check_like_default(model: str, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        return _check_bool(model, key, value)
    if _is_int(default) and not _is_int(value):
        raise GentestError(f"model '{model}' option '{key}' must be an integer, got {value!r}")
    if isinstance(default, float) and not (_is_int(value) or isinstance(value, float)):
        raise GentestError(f"model '{model}' option '{key}' must be a number, got {value!r}")
    return float(value) if isinstance(default, float) else value


def validate_model_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Return ``args`` completed with the model's defaults, or raise :class:`GentestError`
    naming the unknown model, the unknown option or the bad value."""
    info = model_info(name)
    unknown = sorted(set(args) - set(info.options))
    if unknown:
        raise GentestError(
            f"model '{name}' has no option '{unknown[0]}'; allowed: {', '.join(sorted(info.options))}"
        )
    completed: dict[str, Any] = {}
    for key, default in info.options.items():
        value = args.get(key, default)
        if key in _OPTION_CHECKS:
            value = _OPTION_CHECKS[key](name, key, value)
        else:
            value = _check_like_default(name, key, value, default)
        completed[key] = list(value) if isinstance(value, list) else value  # never share a default list
    if info.check is not None:
        info.check(completed)
    return completed


def _check_input(input_shape: Any, num_classes: Any) -> tuple[int, ...]:
    if (
        not isinstance(input_shape, (tuple, list, torch.Size))
        or len(input_shape) == 0
        or not all(_is_int(d) and d > 0 for d in input_shape)
    ):
        raise GentestError(f"input shape must be a non-empty tuple of positive integers, got {input_shape!r}")
    if not _is_int(num_classes) or num_classes < 1:
        raise GentestError(f"number of classes must be a positive integer, got {num_classes!r}")
    return tuple(input_shape)


# ---------------------------------------------------------------------------------------------
# Building and initialization


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    generator: torch.Generator | None = None,
    **args: Any,
) -> nn.Module:
    """Build model ``name`` for inputs of shape ``input_shape`` (one example, no batch axis).

    With a ``generator`` every parameter is drawn from it alone (:func:`initialize`): the same
    generator state gives bit-identical parameters, and the caller's global random state is the
    same after the call as before (the throwaway default initialization that ``nn.Linear`` and
    ``nn.Conv*`` do on construction runs inside :func:`torch.random.fork_rng`). Without one the
    model keeps PyTorch's default initialization, drawn from the global generator.
    """
    options = validate_model_args(name, dict(args))
    shape = _check_input(input_shape, num_classes)
    builder = model_info(name).builder
    if generator is None:
        return builder(shape, num_classes, **options)
    with torch.random.fork_rng(devices=[]):
        model = builder(shape, num_classes, **options)
    initialize(model, generator)
    return model


_SUPPORTED = "Linear, Conv1d/2d/3d (and transposed), BatchNorm, InstanceNorm, LayerNorm, GroupNorm"


@torch.no_grad()
def initialize(model: nn.Module, generator: torch.Generator) -> None:
    """Redraw every parameter of ``model`` from ``generator`` with PyTorch's default
    distributions, touching no other random state.

    Modules are visited in ``model.modules()`` order (registration order), weight before bias,
    exactly as their own ``reset_parameters`` would: for Linear and convolutions the weight
    from ``kaiming_uniform_(a=sqrt(5))`` (uniform in ±1/sqrt(fan_in)) and the bias from
    uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)); normalization layers get scale 1, shift 0 and
    reset running statistics. Values are drawn on the generator's device and copied, so a model
    on another device gets the same numbers. A module with parameters of another kind raises
    :class:`GentestError`.
    """
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            _draw(module.weight, generator, lambda t: nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=generator))
            if module.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                _draw(module.bias, generator, lambda t: nn.init.uniform_(t, -bound, bound, generator=generator))
        elif isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.reset_running_stats()
            if isinstance(getattr(module, "weight", None), torch.Tensor):
                module.weight.fill_(1.0)  # a Parameter, or the fixed buffer of ShiftOnlyBatchNorm2d
            if isinstance(getattr(module, "bias", None), torch.Tensor):
                module.bias.zero_()
        elif any(True for _ in module.parameters(recurse=False)):
            where = f" ('{module_name}')" if module_name else ""
            raise GentestError(
                f"initialize cannot draw the parameters of {type(module).__name__}{where}; supported: {_SUPPORTED}"
            )


def _draw(tensor: torch.Tensor, generator: torch.Generator, fill: Callable[[torch.Tensor], Any]) -> None:
    if tensor.device == generator.device:
        fill(tensor)
    else:
        scratch = torch.empty(tensor.shape, dtype=tensor.dtype, device=generator.device)
        fill(scratch)
        tensor.copy_(scratch)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable-or-not parameters (``nn.Parameter`` elements, buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Building blocks


class ShiftOnlyBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with a learned shift and a scale fixed at 1.

    TensorFlow slim's default ``batch_norm`` (``center=True, scale=False``), which the paper's
    Inception used: the shift stands in for the convolution bias, so the parameter count is
    that of the network without BatchNorm. ``weight`` is a buffer of ones (not a Parameter), so
    the module still computes exactly what ``nn.BatchNorm2d(affine=True)`` with weight 1 does
    and ``isinstance(m, nn.BatchNorm2d)`` holds.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine=True, track_running_stats=True, device=device, dtype=dtype)
        weight = self.weight
        del self.weight  # drop the Parameter ...
        self.register_buffer("weight", torch.ones_like(weight, requires_grad=False))  # ... keep a fixed scale

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, scale=False"


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling window along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def _conv_unit(in_c: int, out_c: int, kernel: int, stride: int, batchnorm: bool, bn_scale: bool) -> list[nn.Module]:
    """The paper's ``Conv(c, k, s)``: convolution ("same" padding at stride 1, none at stride 2),
    BatchNorm, ReLU. Without BatchNorm the convolution carries a bias instead."""
    padding = kernel // 2 if stride == 1 else 0
    layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, kernel, stride, padding, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_c) if bn_scale else ShiftOnlyBatchNorm2d(out_c))
    layers.append(nn.ReLU())
    return layers


class InceptionBlock(nn.Module):
    """The paper's ``Inception(c1, c3)``: ``Conv(c1, 1, 1)`` and ``Conv(c3, 3, 1)`` of the same
    input, concatenated along channels (c1 first)."""

    concatenates_children = True  # the support query measures use (gentest.context.concatenates_children)

    def __init__(self, in_c: int, c1: int, c3: int, batchnorm: bool, bn_scale: bool):
        super().__init__()
        self.branch1x1 = nn.Sequential(*_conv_unit(in_c, c1, 1, 1, batchnorm, bn_scale))
        self.branch3x3 = nn.Sequential(*_conv_unit(in_c, c3, 3, 1, batchnorm, bn_scale))
        self.out_channels = c1 + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x)], dim=1)


class DownsampleBlock(nn.Module):
    """The paper's ``Downsample(c)``: ``Conv(c, 3, 2)`` and a 3×3 stride-2 max-pool of the same
    input, concatenated along channels (convolution first)."""

    concatenates_children = True

    def __init__(self, in_c: int, c: int, batchnorm: bool, bn_scale: bool):
        super().__init__()
        self.conv = nn.Sequential(*_conv_unit(in_c, c, 3, 2, batchnorm, bn_scale))
        self.pool = nn.MaxPool2d(3, stride=2)
        self.out_channels = c + in_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


def _image_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise GentestError(
            f"model '{model}' needs image inputs of shape (channels, height, width), got input shape {input_shape}"
        )
    return input_shape  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# The models


@register_model("mlp", options={"hidden": [512]}, description="multilayer perceptron; the paper's 1x512 and 3x512")
def build_mlp(input_shape: tuple[int, ...], num_classes: int, dropout: float, hidden: list[int]) -> nn.Sequential:
    """Flatten → [Linear → ReLU (→ Dropout)] per width in ``hidden`` → Linear(num_classes).

    Any input shape (flattened). ``hidden=[512]`` is the paper's MLP 1×512 (1,209,866
    parameters on 3×28×28), ``hidden=[512, 512, 512]`` its MLP 3×512 (1,735,178); ``hidden=[]``
    is a linear classifier.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@register_model("cnn1d", options={"channels": 25}, description="MNIST-1D ConvBase: three strided 1-D convolutions")
def build_cnn1d(input_shape: tuple[int, ...], num_classes: int, dropout: float, channels: int) -> nn.Sequential:
    """MNIST-1D's ConvBase (Greydanus 2020) for sequences of shape (L,) or (C, L).

    (Unflatten to (1, L) for 1-D input) → Conv1d(C, channels, 5, stride 2, padding 1) → ReLU →
    Conv1d(channels, channels, 3, 2, 1) → ReLU → Conv1d(channels, channels, 3, 2, 1) → ReLU →
    Flatten → (Dropout) → Linear(num_classes). On mnist1d (L = 40) the features are 25 × 5.
    """
    if len(input_shape) not in (1, 2):
        raise GentestError(
            f"model 'cnn1d' needs sequence inputs of shape (length,) or (channels, length), got input shape {input_shape}"
        )
    in_c, length = (1, input_shape[0]) if len(input_shape) == 1 else input_shape
    layers: list[nn.Module] = [nn.Unflatten(1, (1, length))] if len(input_shape) == 1 else []
    for kernel in (5, 3, 3):
        size = _conv_out(length, kernel, 2, 1)
        if size < 1:
            raise GentestError(f"model 'cnn1d' needs sequences of length at least 3, got input shape {input_shape}")
        layers += [nn.Conv1d(in_c, channels, kernel, stride=2, padding=1), nn.ReLU()]
        in_c, length = channels, size
    layers.append(nn.Flatten())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(channels * length, num_classes))
    return nn.Sequential(*layers)


def _check_inception(options: dict[str, Any]) -> None:
    if options["bn_scale"] and not options["batchnorm"]:
        raise GentestError("model 'inception' option 'bn_scale' needs batchnorm = true")


# (kind, widths) after the stem Conv(96, 3, 1): Zhang et al. 2017, appendix A, figure 3.
_INCEPTION_PLAN: list[tuple[str, tuple[int, ...]]] = [
    ("inception", (32, 32)),
    ("inception", (32, 48)),
    ("downsample", (80,)),
    ("inception", (112, 48)),
    ("inception", (96, 64)),
    ("inception", (80, 80)),
    ("inception", (48, 96)),
    ("downsample", (96,)),
    ("inception", (176, 160)),
    ("inception", (176, 160)),
]


@register_model(
    "inception",
    options={"batchnorm": True, "bn_scale": False},
    description="the paper's small Inception for 28x28 images (1,649,402 parameters)",
    check=_check_inception,
)
def build_inception(
    input_shape: tuple[int, ...], num_classes: int, dropout: float, batchnorm: bool, bn_scale: bool
) -> nn.Sequential:
    """The paper's small Inception: Conv(96, 3, 1) → Inception(32, 32) → Inception(32, 48) →
    Downsample(80) → Inception(112, 48) → Inception(96, 64) → Inception(80, 80) →
    Inception(48, 96) → Downsample(96) → Inception(176, 160) → Inception(176, 160) → global mean
    pool → Flatten → (Dropout) → Linear(num_classes).

    Images (C, H, W) of at least 7×7. ``batchnorm=False``: convolutions with biases, no
    BatchNorm (1,649,402 parameters on 3×28×28, 10 classes). ``batchnorm=True`` (default):
    convolutions without biases, each followed by :class:`ShiftOnlyBatchNorm2d` (TF slim's
    default, as in the paper; 1,649,402 too). ``bn_scale=True``: plain ``nn.BatchNorm2d`` with
    a learned scale as well (1,651,114).
    """
    channels, height, width = _image_shape("inception", input_shape)
    size = min(height, width)
    for _ in range(2):  # the two downsamples: 3×3 windows at stride 2, no padding
        size = _conv_out(size, 3, 2, 0) if size >= 3 else 0
    if size < 1:
        raise GentestError(f"model 'inception' needs images of at least 7x7 pixels, got input shape {input_shape}")
    layers: list[nn.Module] = _conv_unit(channels, 96, 3, 1, batchnorm, bn_scale)
    in_c = 96
    for kind, widths in _INCEPTION_PLAN:
        block = (
            InceptionBlock(in_c, *widths, batchnorm, bn_scale)
            if kind == "inception"
            else DownsampleBlock(in_c, *widths, batchnorm, bn_scale)
        )
        layers.append(block)
        in_c = block.out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_c, num_classes))
    return nn.Sequential(*layers)


# Local response normalization of the TensorFlow CIFAR-10 tutorial / cuda-convnet that the
# paper's AlexNet follows: tf.nn.lrn(depth_radius=4, bias=1.0, alpha=0.001/9, beta=0.75), i.e.
# x / (1 + 0.001/9 * sum of the 9 neighbouring channels' squares)^0.75. PyTorch divides alpha by
# the window size, so the same function is LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1).
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 9, 0.001, 0.75, 1.0


@register_model("alexnet", description="the paper's small AlexNet for 28x28 images (1,387,786 parameters)")
def build_alexnet(input_shape: tuple[int, ...], num_classes: int, dropout: float) -> nn.Sequential:
    """The paper's small AlexNet: two modules of Conv2d(5×5, 64, padding 2) → ReLU →
    MaxPool2d(3, stride 2, padding 1) → LocalResponseNorm, then Flatten → Linear(384) → ReLU
    (→ Dropout) → Linear(192) → ReLU (→ Dropout) → Linear(num_classes).

    Images (C, H, W); on 28×28 the features are 64 × 7 × 7 and the model has 1,387,786
    parameters for 10 classes. The normalization is TF's CIFAR-10 tutorial LRN (see
    ``LRN_SIZE`` and friends): depth radius 4, bias 1, alpha 0.001/9, beta 0.75.
    """
    channels, height, width = _image_shape("alexnet", input_shape)
    layers: list[nn.Module] = []
    for _ in range(2):
        layers += [
            nn.Conv2d(channels, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K),
        ]
        channels, height, width = 64, _conv_out(height, 3, 2, 1), _conv_out(width, 3, 2, 1)
    layers.append(nn.Flatten())
    in_features = channels * height * width
    for out_features in (384, 192):
        layers += [nn.Linear(in_features, out_features), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = out_features
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)
