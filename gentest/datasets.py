"""Datasets: a registry name gives train and test tensors, the number of classes and the
input shape.

``mnist1d`` is the embedded default (Greydanus 2020): generated locally by the ``mnist1d``
package, 4,000 train / 1,000 test sequences of 40 features in 10 classes; nothing is
downloaded. ``synthetic`` is a seeded Gaussian-cluster problem for fast tests. The image
datasets (``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``, ``svhn``) come through
torchvision, see :mod:`gentest.vision_datasets`.

Every dataset accepts ``train_size`` and ``test_size``: keep the first N examples of each
split (the splits are already shuffled), so a suite can run on a few hundred examples.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gentest.errors import GentestError


@dataclass(frozen=True)
class DataSplit:
    """Train and test tensors of one dataset, already on the CPU and in float32 / int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


Loader = Callable[..., DataSplit]


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: its loader and the options a suite may set (with defaults)."""

    name: str
    loader: Loader
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    generated: bool = False  # made locally from code alone: always available, nothing to check
    test_points: int | None = None  # size of the whole test split (pair weights need it; test_size may cut it)


COMMON_OPTIONS = {"train_size": None, "test_size": None}

DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, options: dict[str, Any] | None = None, description: str = "", generated: bool = False,
                     test_points: int | None = None):
    """Decorator: register ``loader(data_root, download, **options) -> DataSplit``; ``test_points``
    is the size of its whole test split, where it is fixed."""

    def wrap(loader: Loader) -> Loader:
        DATASETS[name] = DatasetInfo(name, loader, {**COMMON_OPTIONS, **(options or {})}, description, generated,
                                     test_points)
        return loader

    return wrap


def default_data_root() -> Path:
    """``$GENTEST_DATA_ROOT``, else ``$XDG_CACHE_HOME/gentest/data``, else ``~/.cache/gentest/data``."""
    if os.environ.get("GENTEST_DATA_ROOT"):
        return Path(os.environ["GENTEST_DATA_ROOT"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "gentest" / "data"


def validate_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Return ``options`` completed with defaults, or raise naming the unknown option."""
    info = dataset_info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise GentestError(
            f"dataset '{name}' has no option '{unknown[0]}'; allowed: {', '.join(sorted(info.options))}"
        )
    for key in ("train_size", "test_size"):
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise GentestError(f"dataset option '{key}' must be a positive integer, got {value!r}")
    return {**info.options, **options}


def dataset_info(name: str) -> DatasetInfo:
    _register_builtins()
    if name not in DATASETS:
        raise GentestError(f"unknown dataset '{name}'; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def load_dataset(
    name: str,
    options: dict[str, Any] | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
) -> DataSplit:
    """Load dataset ``name`` with suite ``options``; raise :class:`GentestError` on bad input."""
    options = validate_options(name, dict(options or {}))
    root = Path(data_root) if data_root is not None else default_data_root()
    train_size, test_size = options.pop("train_size"), options.pop("test_size")
    data = dataset_info(name).loader(data_root=root, download=download, **options)
    return subset(data, train_size, test_size)


def subset(data: DataSplit, train_size: int | None, test_size: int | None) -> DataSplit:
    """Keep the first ``train_size`` / ``test_size`` examples; refuse to ask for more than exist."""
    for split, size, have in (("train", train_size, len(data.y_train)), ("test", test_size, len(data.y_test))):
        if size is not None and size > have:
            raise GentestError(f"dataset '{data.name}' has {have} {split} examples; {split}_size={size} asks for more")
    return DataSplit(
        data.name,
        data.x_train[:train_size].contiguous(),
        data.y_train[:train_size].contiguous(),
        data.x_test[:test_size].contiguous(),
        data.y_test[:test_size].contiguous(),
        data.num_classes,
    )


def _register_builtins() -> None:
    # The vision datasets import torchvision, which is slow; register them on first use.
    if "cifar10" not in DATASETS:
        from gentest import vision_datasets  # noqa: F401  (registers on import)


@register_dataset("mnist1d", description="MNIST-1D (Greydanus 2020), generated locally: 4,000/1,000 x 40, 10 classes",
                  generated=True, test_points=1000)
def load_mnist1d(data_root: Path, download: bool) -> DataSplit:
    x, y, x_test, y_test = _mnist1d_from_disk_cache(data_root)
    return DataSplit("mnist1d", x.clone(), y.clone(), x_test.clone(), y_test.clone(), num_classes=10)


def _mnist1d_from_disk_cache(data_root: Path) -> tuple[torch.Tensor, ...]:
    """MNIST-1D as generated, kept in the data root once made: generating it takes seconds of
    pure Python, and every worker process would pay them again. The file is keyed by the
    mnist1d package version and written atomically; one that fails to load or has the wrong
    shapes is ignored and regenerated. (Runs also check their training data's sha256.)"""
    import importlib.metadata
    import uuid

    try:
        version = importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    path = Path(data_root) / "mnist1d" / f"mnist1d-{version}.pt"
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
        tensors = tuple(cached[k] for k in ("x", "y", "x_test", "y_test"))
        if tensors[0].shape == (4000, 40) and tensors[2].shape == (1000, 40):
            return tensors
    except Exception:  # missing, partial or foreign: regenerate
        pass
    tensors = _generate_mnist1d()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        torch.save(dict(zip(("x", "y", "x_test", "y_test"), tensors)), tmp)
        os.replace(tmp, path)
    except OSError:  # an unwritable data root only costs the regeneration next time
        pass
    return tensors


@lru_cache(maxsize=1)
def _generate_mnist1d() -> tuple[torch.Tensor, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds the global `random` and numpy generators (seed 42); put them back so
    # loading data never changes the caller's random state.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return (
        torch.as_tensor(raw["x"], dtype=torch.float32),
        torch.as_tensor(raw["y"], dtype=torch.int64),
        torch.as_tensor(raw["x_test"], dtype=torch.float32),
        torch.as_tensor(raw["y_test"], dtype=torch.int64),
    )


@register_dataset(
    "synthetic",
    options={"features": 20, "classes": 4, "separation": 3.0, "data_seed": 0},
    description="seeded Gaussian clusters, 1,000/500 examples, for fast tests",
    generated=True,
    test_points=500,
)
def load_synthetic(
    data_root: Path, download: bool, features: int, classes: int, separation: float, data_seed: int
) -> DataSplit:
    """One isotropic unit Gaussian per class around a centre drawn at scale ``separation``."""
    if classes < 2 or features < 1:
        raise GentestError(f"synthetic needs classes >= 2 and features >= 1, got {classes} and {features}")
    gen = torch.Generator().manual_seed(data_seed)
    centres = torch.randn(classes, features, generator=gen) * separation / np.sqrt(features)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,), generator=gen)
        return centres[y] + torch.randn(n, features, generator=gen), y

    x, y = draw(1000)
    x_test, y_test = draw(500)
    return DataSplit("synthetic", x, y, x_test, y_test, num_classes=classes)
