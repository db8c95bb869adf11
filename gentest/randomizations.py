"""Randomizations: the six kinds of Zhang et al. (ICLR 2017), section 2 ("Randomization tests").

Each is a pure function of (data, p, seeded ``torch.Generator``): the same seed gives the same
randomized data, bit for bit, and nothing touches a global random state.

- ``none``: the data as it is (the natural twin).
- ``labels``: each training label is, with probability ``p``, replaced by a class drawn
  uniformly from all K classes (the paper's "partially corrupted labels"; ``p = 1`` is "random
  labels"). A redrawn label keeps its true class with probability 1/K, so the expected
  fraction of labels that actually change is p·(K−1)/K; both that and the realized fraction
  are recorded.
- ``shuffled-pixels``: one random permutation of the pixels, the same for every image, train
  and test.
- ``random-pixels``: a fresh random permutation of the pixels for each image, train and test.

  A pixel of a colour image is its position with all its channel values (the RGB triple moves
  as one, as the paper's "pixels"); the option ``unit = "value"`` permutes the C·H·W values on
  their own instead. Sequences and one-channel images have one value per position, where the
  two are the same.
- ``gaussian``: every input replaced by Gaussian noise with the training set's per-feature
  mean and standard deviation (train and test).

Test labels stay clean (the paper's choice, and the one that makes the test error of a
random-label run chance) unless ``corrupt_test_labels`` is set; then test labels are corrupted
with the same probability, from the same generator.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from gentest.datasets import DataSplit
from gentest.errors import GentestError


@dataclass(frozen=True)
class Randomized:
    """Randomized data and the record of exactly what was applied.

    ``record`` is JSON-ready. ``tensors`` holds what the store keeps to show the applied
    randomization (labels used, the shared permutation); kinds whose draw is too large to keep
    (a permutation per image, Gaussian inputs) are reproduced exactly from the seed instead,
    and ``record["train_inputs_sha256"]`` lets anyone check the regeneration.
    """

    data: DataSplit
    record: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


RandomizeFn = Callable[[DataSplit, float, torch.Generator], tuple[DataSplit, dict[str, Any], dict[str, torch.Tensor]]]

RANDOMIZATIONS: dict[str, RandomizeFn] = {}

# Kinds for which p is meaningful; the others randomize the whole dataset (p is fixed to 1,
# and to 0 for `none`).
PARTIAL_KINDS = frozenset({"labels"})
PIXEL_KINDS = frozenset({"shuffled-pixels", "random-pixels"})
# What a pixel randomization permutes in a colour image (C, H, W), C > 1: "pixel" moves the H·W
# positions and keeps each pixel's C values together (the paper's pixels); "value" permutes
# all C·H·W values on their own. Sequences and single-channel images have one value per
# position, so both units are the same permutation of the same draws there.
PIXEL_UNITS = ("pixel", "value")


def register_randomization(name: str):
    def wrap(fn: RandomizeFn) -> RandomizeFn:
        RANDOMIZATIONS[name] = fn
        return fn

    return wrap


def canonical_p(kind: str, p: float | None) -> float:
    """The corruption level a spec records for ``kind``: p for ``labels`` (default 1)."""
    if kind not in RANDOMIZATIONS:
        raise GentestError(f"unknown randomization '{kind}'; available: {', '.join(RANDOMIZATIONS)}")
    if kind in PARTIAL_KINDS:
        p = 1.0 if p is None else p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise GentestError(f"randomization '{kind}' needs p in [0, 1], got {p!r}")
        return float(p)
    if p is not None and p != (0.0 if kind == "none" else 1.0):
        raise GentestError(f"randomization '{kind}' takes no p (only 'labels' is partial), got p={p!r}")
    return 0.0 if kind == "none" else 1.0


def randomize(
    data: DataSplit, kind: str, p: float | None, seed: int, corrupt_test_labels: bool = False,
    pixel_unit: str = "pixel",
) -> Randomized:
    """Apply randomization ``kind`` at level ``p`` with a generator seeded by ``seed``
    (``pixel_unit``: what the pixel kinds permute, see :data:`PIXEL_UNITS`)."""
    p = canonical_p(kind, p)
    gen = torch.Generator().manual_seed(seed)
    options = {"unit": pixel_unit} if kind in PIXEL_KINDS else {}
    out, record, tensors = RANDOMIZATIONS[kind](data, p, gen, **options)
    if corrupt_test_labels and kind in PARTIAL_KINDS:
        y_test, _ = _corrupt(data.y_test, p, data.num_classes, gen)
        out = _replace(out, y_test=y_test)
        tensors["y_test"] = y_test
    record = {
        "kind": kind,
        "p": p,
        "seed": seed,
        "corrupt_test_labels": bool(corrupt_test_labels and kind in PARTIAL_KINDS),
        **record,
        "train_inputs_sha256": tensor_digest(out.x_train),
        "train_labels_sha256": tensor_digest(out.y_train),
    }
    return Randomized(out, record, tensors)


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's bytes: a fingerprint to check that data regenerates exactly."""
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def replace_fields(data: DataSplit, **changes: torch.Tensor) -> DataSplit:
    """A copy of ``data`` with some tensors replaced."""
    return _replace(data, **changes)


def _replace(data: DataSplit, **changes: torch.Tensor) -> DataSplit:
    fields = {k: getattr(data, k) for k in ("name", "x_train", "y_train", "x_test", "y_test", "num_classes")}
    return DataSplit(**{**fields, **changes})


def corrupt_labels(y: torch.Tensor, p: float, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Each label redrawn uniformly from all classes with probability ``p``."""
    return _corrupt(y, p, num_classes, gen)[0]


def _corrupt(y: torch.Tensor, p: float, num_classes: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # Draw the mask and the replacement for every example, so the draw for example i does not
    # depend on p: raising p only ever adds corrupted examples (nested corruption sets).
    u = torch.rand(len(y), generator=gen)
    replacement = torch.randint(0, num_classes, (len(y),), generator=gen)
    redrawn = u < p
    return torch.where(redrawn, replacement, y), redrawn


@register_randomization("none")
def _none(data: DataSplit, p: float, gen: torch.Generator):
    return data, {"effective_corruption": 0.0}, {}


@register_randomization("labels")
def _labels(data: DataSplit, p: float, gen: torch.Generator):
    y, redrawn = _corrupt(data.y_train, p, data.num_classes, gen)
    k = data.num_classes
    record = {
        "redrawn_fraction": redrawn.float().mean().item(),
        "expected_effective_corruption": p * (k - 1) / k,
        "effective_corruption": (y != data.y_train).float().mean().item(),
    }
    return _replace(data, y_train=y), record, {"y_train": y}


def _pixel_layout(input_shape: tuple[int, ...], unit: str) -> tuple[int, int]:
    """(channels kept together, positions permuted) of one input for a pixel ``unit``."""
    if unit not in PIXEL_UNITS:
        raise GentestError(f"pixel unit must be one of {', '.join(PIXEL_UNITS)}, got {unit!r}")
    n_values = math.prod(input_shape)
    if unit == "pixel" and len(input_shape) == 3 and input_shape[0] > 1:
        return input_shape[0], n_values // input_shape[0]
    return 1, n_values


@register_randomization("shuffled-pixels")
def _shuffled_pixels(data: DataSplit, p: float, gen: torch.Generator, unit: str = "pixel"):
    channels, positions = _pixel_layout(tuple(data.x_train.shape[1:]), unit)
    perm = torch.randperm(positions, generator=gen)

    def apply(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), channels, positions)[:, :, perm].reshape(x.shape)

    out = _replace(data, x_train=apply(data.x_train), x_test=apply(data.x_test))
    return out, {"effective_corruption": 1.0, "unit": unit, "values_per_position": channels}, {"permutation": perm}


@register_randomization("random-pixels")
def _random_pixels(data: DataSplit, p: float, gen: torch.Generator, unit: str = "pixel"):
    channels, positions = _pixel_layout(tuple(data.x_train.shape[1:]), unit)

    def apply(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), channels, positions)
        # argsort of i.i.d. uniforms: an independent uniform permutation per image, in one call,
        # the same for every channel of the image (a pixel's values move together).
        perms = torch.rand((len(x), positions), generator=gen).argsort(dim=1)
        return flat.gather(2, perms[:, None, :].expand(-1, channels, -1)).reshape(x.shape)

    out = _replace(data, x_train=apply(data.x_train), x_test=apply(data.x_test))
    return out, {"effective_corruption": 1.0, "unit": unit, "values_per_position": channels}, {}


@register_randomization("gaussian")
def _gaussian(data: DataSplit, p: float, gen: torch.Generator):
    mean, std = data.x_train.mean(dim=0), data.x_train.std(dim=0)

    def draw(n: int) -> torch.Tensor:
        noise = torch.randn((n, *data.input_shape), generator=gen, dtype=data.x_train.dtype)
        return mean + std * noise

    out = _replace(data, x_train=draw(len(data.x_train)), x_test=draw(len(data.x_test)))
    return out, {"effective_corruption": 1.0}, {}
