"""Shared fixtures: tiny data and tiny suites that train in about a second on a CPU."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from gentest.datasets import DataSplit

TINY_SUITE = """
[suite]
name = "tiny"

[base]
dataset = {{ name = "synthetic", features = 8, classes = 3, train_size = 120, test_size = 60 }}
model = {{ name = "mlp", hidden = [32] }}
lr = 0.1
batch_size = 32
max_epochs = {max_epochs}

[axes]
randomization = {randomizations}
seed = {seeds}
"""


def write_suite(folder: Path, randomizations=("none", "labels"), seeds=(0, 1), max_epochs=60, name="tiny.toml") -> Path:
    path = folder / name
    # Names are quoted; inline tables ('{ name = "labels", p = 0.5 }') go in as written.
    rnd = "[" + ", ".join(r if r.startswith("{") else f'"{r}"' for r in randomizations) + "]"
    path.write_text(TINY_SUITE.format(randomizations=rnd, seeds=list(seeds), max_epochs=max_epochs))
    return path


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path)


@pytest.fixture
def image_data() -> DataSplit:
    """Six 3x4x4 'images' with 3 classes: big enough to see permutations, small to reason about."""
    gen = torch.Generator().manual_seed(123)
    return DataSplit(
        "toy-images",
        torch.rand(30, 3, 4, 4, generator=gen),
        torch.randint(0, 3, (30,), generator=gen),
        torch.rand(12, 3, 4, 4, generator=gen),
        torch.randint(0, 3, (12,), generator=gen),
        num_classes=3,
    )


@pytest.fixture(scope="session", autouse=True)
def temporary_data_root(tmp_path_factory):
    """Tests write nothing outside the repository and the system temp dir: datasets (and
    matplotlib's font cache) go to a session temp folder, which every subprocess a test starts
    inherits. MNIST-1D is generated into it once, here, so no test or worker pays it again."""
    from gentest.datasets import _mnist1d_from_disk_cache

    root = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENTEST_DATA_ROOT", str(root))
        mp.setenv("MPLCONFIGDIR", str(tmp_path_factory.mktemp("matplotlib")))
        _mnist1d_from_disk_cache(root)
        yield root


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()


@pytest.fixture
def clean_registry():
    """Measures registered inside a test are forgotten after it."""
    from gentest import registry

    saved, plugins = dict(registry._MEASURES), set(registry._loaded_plugins)
    yield registry
    registry._MEASURES.clear()
    registry._MEASURES.update(saved)
    registry._loaded_plugins.clear()
    registry._loaded_plugins.update(plugins)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A store holding the tiny suite's four runs (natural and random labels, two seeds)."""
    from gentest.runner import train_missing
    from gentest.store import RunStore
    from gentest.suites import load_suite

    folder = tmp_path_factory.mktemp("tiny-store")
    suite = load_suite(str(write_suite(folder)))
    store = RunStore(folder / "store")
    runs = train_missing(suite.specs, store, torch.device("cpu"))
    return suite, store, runs
