"""Fixed, non-learned feature transforms applied before a closed-form learner.

Zhang et al. (2017), section 5, solve the kernel system on raw pixels and on fixed
preprocessings: a Gabor wavelet transform for MNIST (test error 1.2 % → 0.6 %) and a random
convolutional network for CIFAR-10 (46 % → 17 %). The analogs here:

- ``pixels``: the inputs themselves, flattened.
- ``random-features``: a random convolutional layer (``n_filters`` Gaussian filters of width
  ``kernel_size``, bias, ReLU) average-pooled to ``pool`` bins per spatial axis, flattened:
  the paper's random conv net in one layer, for 1-D signals (L,) or (C, L) and images (C, H, W).
  Its filters are drawn from the run's ``features`` seed, shared by natural and randomized twins.
- ``random-fourier``: random Fourier features √(2/D)·cos(Wᵀx + b) (Rahimi and Recht 2007),
  W ~ N(0, 1/(scale²·d)), b ~ U[0, 2π), D = ``n_features``: an explicit lift whose Gram matrix
  approximates a Gaussian kernel of bandwidth scale·√d (default scale 0.5: about 3.2 on
  MNIST-1D, whose median pairwise distance is about 8.5). Narrow enough that the Gram matrix is
  well conditioned and SGD reaches the minimum-norm solution in a few hundred epochs (relative
  distance 8e-5 at n = 1,000, D = 2,048; at scale 1 it is still 0.9 away after 300 epochs):
  the default lift of the linear learners.
- ``gabor``: for 1-D signals (MNIST-1D), the modulus of a bank of complex Gabor (Morlet)
  filters at ``scales`` dyadic scales, average-pooled to ``pool`` bins, with the pooled signal
  itself as the low-pass channel: a first-order wavelet-modulus transform playing the role of
  the paper's Gabor wavelets (nothing is learned; translation-stable by the pooling).

Every transform is an ``nn.Module`` whose state lives in buffers (saved with a run's weights,
reloaded with ``load_state_dict``) and computes in float64.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gentest.errors import GentestError

# Each transform's options and their defaults.
FEATURES: dict[str, dict[str, Any]] = {
    "pixels": {},
    "random-features": {"n_filters": 256, "kernel_size": 5, "pool": 4},
    "random-fourier": {"n_features": 2048, "scale": 0.5},
    "gabor": {"scales": 4, "pool": 20},
}
_FLOAT_OPTIONS = ("scale",)  # every other option is an integer >= 1


def validate_features(value: Any) -> dict[str, Any]:
    """``"name"`` or ``{name = ..., option = ...}`` → ``{"name": ..., **completed options}``."""
    if isinstance(value, str):
        name, options = value, {}
    elif isinstance(value, dict) and isinstance(value.get("name"), str):
        options = dict(value)
        name = options.pop("name")
    else:
        raise GentestError(f"option 'features' must be a name or a table with a 'name' key, got {value!r}")
    if name not in FEATURES:
        raise GentestError(f"option 'features' must be one of {', '.join(FEATURES)}; got {name!r}")
    allowed = FEATURES[name]
    for key, v in options.items():
        if key not in allowed:
            raise GentestError(
                f"features '{name}' has no option '{key}'; allowed: {', '.join(allowed) or 'none'}"
            )
        if key in _FLOAT_OPTIONS:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise GentestError(f"features option '{key}' must be a number > 0, got {v!r}")
            options[key] = float(v)
        elif not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise GentestError(f"features option '{key}' must be an integer >= 1, got {v!r}")
    return {"name": name, **allowed, **options}


def build_features(spec: dict[str, Any], input_shape: tuple[int, ...], generator: torch.Generator | None = None) -> nn.Module:
    """The transform ``spec`` (from :func:`validate_features`) for inputs of ``input_shape``.

    Random filters are drawn from ``generator`` (a placeholder draw when rebuilding from a
    stored state, which ``load_state_dict`` then overwrites).
    """
    generator = generator if generator is not None else torch.Generator()
    options = {k: v for k, v in spec.items() if k != "name"}
    if spec["name"] == "pixels":
        return Pixels()
    if spec["name"] == "random-features":
        return RandomConvFeatures(input_shape, generator=generator, **options)
    if spec["name"] == "random-fourier":
        return RandomFourierFeatures(input_shape, generator=generator, **options)
    return GaborModulus(input_shape, **options)


class Pixels(nn.Module):
    """φ(x) = x, flattened, in float64."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1).double()


def _channels_first(input_shape: tuple[int, ...], name: str) -> tuple[int, tuple[int, ...]]:
    """(channels, spatial shape) of an input: (L,) is one channel of length L."""
    if len(input_shape) == 1:
        return 1, tuple(input_shape)
    if len(input_shape) in (2, 3):
        return input_shape[0], tuple(input_shape[1:])
    raise GentestError(f"features '{name}' apply to 1-D signals or images, not inputs of shape {input_shape}")


class RandomConvFeatures(nn.Module):
    """ReLU(conv(x; W) + b), average-pooled: W ~ N(0, 1/(C·k^dims)), b ~ N(0, 1); fixed."""

    def __init__(self, input_shape: tuple[int, ...], n_filters: int, kernel_size: int, pool: int, generator: torch.Generator):
        super().__init__()
        channels, spatial = _channels_first(tuple(input_shape), "random-features")
        self.input_shape, self.spatial, self.pool = tuple(input_shape), spatial, pool
        fan_in = channels * kernel_size ** len(spatial)
        shape = (n_filters, channels, *([kernel_size] * len(spatial)))
        self.register_buffer("weight", torch.randn(shape, generator=generator, dtype=torch.float64) / math.sqrt(fan_in))
        self.register_buffer("bias", torch.randn(n_filters, generator=generator, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double().reshape(len(x), -1, *self.spatial)
        conv = F.conv1d if len(self.spatial) == 1 else F.conv2d
        pool = F.adaptive_avg_pool1d if len(self.spatial) == 1 else F.adaptive_avg_pool2d
        h = torch.relu(conv(x, self.weight, self.bias, padding=self.weight.shape[-1] // 2))
        return pool(h, self.pool).reshape(len(x), -1)


class RandomFourierFeatures(nn.Module):
    """√(2/D)·cos(Wᵀ vec(x) + b), W ~ N(0, 1/(scale²·d)) (d × D), b ~ U[0, 2π); fixed."""

    def __init__(self, input_shape: tuple[int, ...], n_features: int, scale: float, generator: torch.Generator):
        super().__init__()
        d = math.prod(input_shape)
        self.register_buffer("weight", torch.randn(d, n_features, generator=generator, dtype=torch.float64) / (scale * math.sqrt(d)))
        self.register_buffer("bias", torch.rand(n_features, generator=generator, dtype=torch.float64) * 2 * math.pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double().reshape(len(x), -1)
        return math.sqrt(2 / self.weight.shape[1]) * torch.cos(x @ self.weight + self.bias)


class GaborModulus(nn.Module):
    """|x ⋆ ψ_j| average-pooled, j = 0..scales−1, plus the pooled signal (1-D inputs only).

    ψ_j(t) = exp(−t²/(2σ_j²))·(exp(iξ_j t) − κ_j), σ_j = 0.8·2^j, ξ_j = (3π/4)/2^j, with κ_j
    making each filter zero-mean (a Morlet wavelet), normalized to unit ℓ1 norm.
    """

    def __init__(self, input_shape: tuple[int, ...], scales: int, pool: int):
        super().__init__()
        channels, spatial = _channels_first(tuple(input_shape), "gabor")
        if len(spatial) != 1 or channels != 1:
            raise GentestError(f"features 'gabor' apply to 1-D single-channel signals (MNIST-1D), not inputs of shape {tuple(input_shape)}")
        self.length, self.pool = spatial[0], pool
        half = math.ceil(3 * 0.8 * 2 ** (scales - 1))
        t = torch.arange(-half, half + 1, dtype=torch.float64)
        real, imag = [], []
        for j in range(scales):
            sigma, xi = 0.8 * 2**j, (3 * math.pi / 4) / 2**j
            envelope = torch.exp(-(t**2) / (2 * sigma**2))
            kappa = (envelope * torch.cos(xi * t)).sum() / envelope.sum()  # imaginary part is odd: mean 0
            re, im = envelope * (torch.cos(xi * t) - kappa), envelope * torch.sin(xi * t)
            norm = torch.sqrt(re**2 + im**2).sum()
            real.append(re / norm)
            imag.append(im / norm)
        self.register_buffer("real", torch.stack(real)[:, None, :])
        self.register_buffer("imag", torch.stack(imag)[:, None, :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double().reshape(len(x), 1, self.length)
        pad = self.real.shape[-1] // 2
        re = F.conv1d(x, self.real, padding=pad)[..., : self.length]
        im = F.conv1d(x, self.imag, padding=pad)[..., : self.length]
        modulus = torch.sqrt(re**2 + im**2)
        channels = torch.cat([x, modulus], dim=1)
        return F.adaptive_avg_pool1d(channels, self.pool).reshape(len(x), -1)
