"""Randomizations: the six kinds of Zhang et al. (ICLR 2017), section 2 ("Randomization tests").

Each is a pure function of (data, p, seeded ``torch.Generator``): the same seed gives the same
randomized data, bit for bit, and nothing touches a global random state.

- ``none``: the data as it is (the natural twin).
- ``labels``: each training label is, with probability ``p``, replaced by a class drawn
  uniformly from all K classes (the paper's "partially corrupted labels"; ``p = 1`` is "random
  labels"). A redrawn label keeps its true class with probability 1/K, so the expected
  fraction of labels that actually change is p·(K−1)/K; both that and the realized fraction
  are recorded.
- ``shuffled-pixels``: one random permutation of the input features, the same for every
  image, train and test.
- ``random-pixels``: a fresh random permutation for each image, train and test.
- ``gaussian``: every input replaced by Gaussian noise with the training set's per-feature
  mean and standard deviation (train and test).

Test labels stay clean (the paper's choice, and the one that makes the test error of a
random-label run chance) unless ``corrupt_test_labels`` is set; then test labels are corrupted
with the same probability, from the same generator.
"""

from __future__ import annotations

import hashlib
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
    data: DataSplit, kind: str, p: float | None, seed: int, corrupt_test_labels: bool = False
) -> Randomized:
    """Apply randomization ``kind`` at level ``p`` with a generator seeded by ``seed``."""
    p = canonical_p(kind, p)
    gen = torch.Generator().manual_seed(seed)
    out, record, tensors = RANDOMIZATIONS[kind](data, p, gen)
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


@register_randomization("shuffled-pixels")
def _shuffled_pixels(data: DataSplit, p: float, gen: torch.Generator):
    n_features = data.x_train[0].numel()
    perm = torch.randperm(n_features, generator=gen)

    def apply(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1)[:, perm].reshape(x.shape)

    out = _replace(data, x_train=apply(data.x_train), x_test=apply(data.x_test))
    return out, {"effective_corruption": 1.0}, {"permutation": perm}


@register_randomization("random-pixels")
def _random_pixels(data: DataSplit, p: float, gen: torch.Generator):
    def apply(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1)
        # argsort of i.i.d. uniforms: an independent uniform permutation per row, in one call.
        perms = torch.rand(flat.shape, generator=gen).argsort(dim=1)
        return flat.gather(1, perms).reshape(x.shape)

    out = _replace(data, x_train=apply(data.x_train), x_test=apply(data.x_test))
    return out, {"effective_corruption": 1.0}, {}


@register_randomization("gaussian")
def _gaussian(data: DataSplit, p: float, gen: torch.Generator):
    mean, std = data.x_train.mean(dim=0), data.x_train.std(dim=0)

    def draw(n: int) -> torch.Tensor:
        noise = torch.randn((n, *data.input_shape), generator=gen, dtype=data.x_train.dtype)
        return mean + std * noise

    out = _replace(data, x_train=draw(len(data.x_train)), x_test=draw(len(data.x_test)))
    return out, {"effective_corruption": 1.0}, {}
