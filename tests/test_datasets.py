"""The embedded default and the synthetic dataset: shapes, subsets, and no global side effects."""

from __future__ import annotations

import importlib.metadata
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from gentest.datasets import default_data_root, load_dataset
from gentest.errors import GentestError


def test_mnist1d_is_generated_locally_with_the_documented_shape():
    d = load_dataset("mnist1d")
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.num_classes == 10 and set(d.y_train.unique().tolist()) == set(range(10))
    # mnist1d standardizes the whole dataset: overall mean 0 and std 1 (train and test together).
    both = torch.cat([d.x_train, d.x_test])
    assert both.mean().item() == pytest.approx(0.0, abs=1e-4) and both.std().item() == pytest.approx(1.0, abs=1e-3)


def test_loading_mnist1d_leaves_numpy_and_random_global_state_alone():
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    from gentest.datasets import _generate_mnist1d

    _generate_mnist1d.cache_clear()
    load_dataset("mnist1d")
    assert np.array_equal(np.random.get_state()[1], np_before) and random.getstate() == py_before


def test_loads_are_identical_and_independent_copies():
    a, b = load_dataset("mnist1d"), load_dataset("mnist1d")
    assert torch.equal(a.x_train, b.x_train)
    a.x_train[0, 0] = 123.0
    assert load_dataset("mnist1d").x_train[0, 0] != 123.0


def test_subsets_keep_the_first_examples():
    full, small = load_dataset("mnist1d"), load_dataset("mnist1d", {"train_size": 100, "test_size": 10})
    assert torch.equal(small.x_train, full.x_train[:100]) and torch.equal(small.y_test, full.y_test[:10])
    with pytest.raises(GentestError, match="has 4000 train examples; train_size=5000 asks for more"):
        load_dataset("mnist1d", {"train_size": 5000})
    with pytest.raises(GentestError, match="must be a positive integer"):
        load_dataset("mnist1d", {"train_size": 0})


def test_synthetic_is_seeded_and_separable():
    a = load_dataset("synthetic", {"data_seed": 1})
    assert torch.equal(a.x_train, load_dataset("synthetic", {"data_seed": 1}).x_train)
    assert not torch.equal(a.x_train, load_dataset("synthetic", {"data_seed": 2}).x_train)
    # Nearest class mean on the test set does far better than chance (1/4).
    means = torch.stack([a.x_train[a.y_train == c].mean(0) for c in range(4)])
    pred = torch.cdist(a.x_test, means).argmin(1)
    assert (pred == a.y_test).float().mean() > 0.6


def test_unknown_dataset_and_data_root_default(monkeypatch, tmp_path):
    with pytest.raises(GentestError, match="unknown dataset 'imagenet'; available: cifar10, cifar100, fashion-mnist"):
        load_dataset("imagenet")
    monkeypatch.setenv("GENTEST_DATA_ROOT", str(tmp_path))
    assert default_data_root() == tmp_path


def test_the_tests_data_root_is_a_temporary_folder_holding_mnist1d():
    """No test writes datasets to the user's cache: the session's data root is under the system
    temp dir (tests/conftest.py), and MNIST-1D was generated into it once, for every process."""
    import tempfile

    root = default_data_root()
    assert root.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()), root
    load_dataset("mnist1d", {"train_size": 10, "test_size": 10})
    assert [p.name for p in (root / "mnist1d").iterdir()] == [f"mnist1d-{importlib.metadata.version('mnist1d')}.pt"]


def test_mnist1d_is_kept_on_disk_once_generated_and_a_damaged_copy_is_regenerated(tmp_path):
    import torch

    from gentest.datasets import _generate_mnist1d, load_dataset

    first = load_dataset("mnist1d", data_root=tmp_path)
    (cached,) = (tmp_path / "mnist1d").glob("mnist1d-*.pt")
    again = load_dataset("mnist1d", data_root=tmp_path)  # from the file
    generated = _generate_mnist1d()
    for a, b, g in zip((first.x_train, first.y_train, first.x_test, first.y_test),
                       (again.x_train, again.y_train, again.x_test, again.y_test), generated):
        assert torch.equal(a, b) and torch.equal(a, g)
    cached.write_bytes(b"garbage")
    healed = load_dataset("mnist1d", data_root=tmp_path)
    assert torch.equal(healed.x_train, generated[0]) and cached.stat().st_size > 1000
