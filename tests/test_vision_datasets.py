"""The torchvision image datasets, on small files written here in torchvision's on-disk formats.

The files are a few images each and their MD5 sums are not the official ones, so loading them
at all also checks that gentest tests only the files' existence. Nothing touches the network:
the download tests replace urllib's opener with one that fails.
"""

from __future__ import annotations

import importlib
import pickle
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

import gentest
from gentest import datasets
from gentest.datasets import load_dataset
from gentest.errors import GentestError
from gentest.vision_datasets import per_image_standardization

NAMES = ["cifar10", "cifar100", "mnist", "fashion-mnist", "svhn"]
CROPPABLE = ["cifar10", "cifar100", "svhn"]
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10, "fashion-mnist": 10, "svhn": 10}


# ---------------------------------------------------------------------------------------------
# Writers: each returns (x_train, y_train, x_test, y_test) as the loader should give them back,
# images as uint8 (N, C, H, W) and labels as int64.


def _pickle(path: Path, obj: dict) -> None:
    # The official files are Python 2 pickles whose str keys torchvision reads (encoding="latin1")
    # as str: b"data" keys would not be found, so the keys here are str too.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, 2).tolist()
        _pickle(folder / f"data_batch_{i}", {"batch_label": f"batch {i}", "data": x, "labels": y})
        xs.append(x)
        ys += y
    x_test = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    y_test = rng.integers(0, 10, 3).tolist()
    _pickle(folder / "test_batch", {"batch_label": "test", "data": x_test, "labels": y_test})
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})
    # A row of 3072 bytes is the red, green and blue 32x32 planes, each row-major: (3, 32, 32).
    return (np.concatenate(xs).reshape(-1, 3, 32, 32), np.array(ys), x_test.reshape(-1, 3, 32, 32), np.array(y_test))


def write_cifar100(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = []
    for split, n in (("train", 6), ("test", 3)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 100, n).tolist()
        _pickle(folder / split, {"data": x, "fine_labels": y, "coarse_labels": [v // 5 for v in y]})
        out += [x.reshape(-1, 3, 32, 32), np.array(y)]
    _pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": []})
    return tuple(out)


def _write_idx(folder: Path, prefix: str, x: np.ndarray, y: np.ndarray) -> None:
    # idx format: big-endian magic (0x0803 = unsigned bytes, 3 dims / 0x0801 = 1 dim), then sizes.
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, *x.shape) + x.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, len(y)) + y.astype(np.uint8).tobytes())


def _write_mnist_like(root: Path, rng: np.random.Generator, sub: str) -> tuple[np.ndarray, ...]:
    folder = root / sub / "raw"
    folder.mkdir(parents=True)
    out = []
    for prefix, n in (("train", 5), ("t10k", 3)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        _write_idx(folder, prefix, x, y)
        out += [x[:, None], y]
    return tuple(out)


def write_mnist(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return _write_mnist_like(root, rng, "MNIST")


def write_fashion_mnist(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return _write_mnist_like(root, rng, "FashionMNIST")


def write_svhn(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for split, n in (("train", 5), ("test", 4)):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        digits = np.arange(n) % 10  # covers digit 0, which the .mat file stores as label 10
        mat_labels = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
        # The .mat layout is (rows, cols, channels, N).
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": mat_labels})
        out += [x, digits]
    return tuple(out)


WRITERS = {
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "mnist": write_mnist,
    "fashion-mnist": write_fashion_mnist,
    "svhn": write_svhn,
}
EXPECTED_FILES = {
    "cifar10": Path("cifar-10-batches-py/test_batch"),
    "cifar100": Path("cifar-100-python/test"),
    "mnist": Path("MNIST/raw/t10k-images-idx3-ubyte"),
    "fashion-mnist": Path("FashionMNIST/raw/t10k-images-idx3-ubyte"),
    "svhn": Path("test_32x32.mat"),
}


@pytest.fixture
def written(tmp_path):
    """``written(name)`` writes the dataset under tmp_path and returns the expected arrays."""

    def write(name: str) -> tuple[np.ndarray, ...]:
        return WRITERS[name](tmp_path, np.random.default_rng(sum(map(ord, name))))

    return write


@pytest.fixture
def no_network(monkeypatch):
    """Make every download fail the way it does offline, before any socket is opened."""

    def fail(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "_urlretrieve", fail)


def as_uint8(x: torch.Tensor) -> np.ndarray:
    return torch.round(x * 255).to(torch.uint8).numpy()


# ---------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("name", NAMES)
def test_loads_torchvision_files_exactly(name, written, tmp_path):
    x_train, y_train, x_test, y_test = written(name)
    data = load_dataset(name, data_root=tmp_path)

    assert data.name == name
    assert data.num_classes == NUM_CLASSES[name]
    assert data.input_shape == x_train.shape[1:] == ((1, 28, 28) if "mnist" in name else (3, 32, 32))
    splits = ((data.x_train, data.y_train, x_train, y_train), (data.x_test, data.y_test, x_test, y_test))
    for x, y, want_x, want_y in splits:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.is_contiguous()
        assert tuple(x.shape) == want_x.shape
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        np.testing.assert_array_equal(as_uint8(x), want_x)
        np.testing.assert_array_equal(y.numpy(), want_y)


def test_svhn_label_10_is_digit_0(written, tmp_path):
    _, y_train, _, _ = written("svhn")
    data = load_dataset("svhn", data_root=tmp_path)
    assert 0 in data.y_train.tolist() and int(data.y_train.max()) <= 9
    np.testing.assert_array_equal(data.y_train.numpy(), y_train)


@pytest.mark.parametrize("name", NAMES)
def test_train_and_test_size_keep_the_first_examples(name, written, tmp_path):
    x_train, y_train, x_test, y_test = written(name)
    data = load_dataset(name, {"train_size": 4, "test_size": 2}, data_root=tmp_path)
    assert len(data.x_train) == len(data.y_train) == 4
    assert len(data.x_test) == len(data.y_test) == 2
    np.testing.assert_array_equal(as_uint8(data.x_train), x_train[:4])
    np.testing.assert_array_equal(data.y_test.numpy(), y_test[:2])
    with pytest.raises(GentestError, match="train_size"):
        load_dataset(name, {"train_size": len(y_train) + 1}, data_root=tmp_path)


@pytest.mark.parametrize("name", CROPPABLE)
def test_crop28_is_the_centre_of_the_image(name, written, tmp_path):
    written(name)
    full = load_dataset(name, data_root=tmp_path)
    cropped = load_dataset(name, {"crop28": True}, data_root=tmp_path)
    assert cropped.input_shape == (3, 28, 28)
    assert torch.equal(cropped.x_train, full.x_train[:, :, 2:30, 2:30])
    assert torch.equal(cropped.x_test, full.x_test[:, :, 2:30, 2:30])
    assert torch.equal(cropped.y_train, full.y_train)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_has_no_crop_option(name, written, tmp_path):
    written(name)
    with pytest.raises(GentestError, match="crop28"):
        load_dataset(name, {"crop28": True}, data_root=tmp_path)


def _numpy_whiten(images: np.ndarray) -> np.ndarray:
    """TensorFlow's per_image_standardization, independently, in float64."""
    x = images.astype(np.float64) / 255.0
    flat = x.reshape(len(x), -1)
    adjusted = np.maximum(flat.std(axis=1, keepdims=True), 1.0 / np.sqrt(flat.shape[1]))
    return ((flat - flat.mean(axis=1, keepdims=True)) / adjusted).reshape(x.shape)


@pytest.mark.parametrize("name", NAMES)
def test_whiten_standardizes_each_image(name, written, tmp_path):
    x_train, _, x_test, _ = written(name)
    data = load_dataset(name, {"whiten": True}, data_root=tmp_path)
    for x, raw in ((data.x_train, x_train), (data.x_test, x_test)):
        assert x.dtype == torch.float32
        flat = x.reshape(len(x), -1).double()
        np.testing.assert_allclose(flat.mean(1).numpy(), 0.0, atol=1e-5)
        np.testing.assert_allclose(flat.std(1, correction=0).numpy(), 1.0, atol=1e-4)
        np.testing.assert_allclose(x.numpy(), _numpy_whiten(raw), atol=1e-4)


@pytest.mark.parametrize("name", CROPPABLE)
def test_crop_happens_before_whitening(name, written, tmp_path):
    x_train, _, _, _ = written(name)
    data = load_dataset(name, {"crop28": True, "whiten": True}, data_root=tmp_path)
    np.testing.assert_allclose(data.x_train.numpy(), _numpy_whiten(x_train[:, :, 2:30, 2:30]), atol=1e-4)


def test_whitening_a_constant_image_gives_zeros():
    x = torch.full((2, 3, 4, 4), 0.5)
    out = per_image_standardization(x)
    assert torch.equal(out, torch.zeros_like(x))


def test_options_must_be_booleans(written, tmp_path):
    written("cifar10")
    with pytest.raises(GentestError, match="whiten"):
        load_dataset("cifar10", {"whiten": "yes"}, data_root=tmp_path)


# ---------------------------------------------------------------------------------------------
# Missing, incomplete and corrupt data; downloads


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize("name", NAMES)
def test_missing_data_root_names_the_folder_and_files(name, tmp_path):
    root = tmp_path / "no" / "data"
    with pytest.raises(GentestError) as error:
        load_dataset(name, data_root=root)
    message = _one_line(error)
    assert str(root) in message
    assert name in message
    assert EXPECTED_FILES[name].name in message
    assert "--download" in message


@pytest.mark.parametrize("name", NAMES)
def test_incomplete_data_names_the_missing_file(name, written, tmp_path):
    written(name)
    (tmp_path / EXPECTED_FILES[name]).unlink()
    with pytest.raises(GentestError) as error:
        load_dataset(name, data_root=tmp_path)
    message = _one_line(error)
    assert "incomplete" in message and EXPECTED_FILES[name].as_posix() in message


def test_relative_data_root_is_reported_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GentestError) as error:
        load_dataset("cifar10", data_root="rel")
    assert str(tmp_path / "rel") in _one_line(error)


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_file_is_a_gentest_error(name, written, tmp_path):
    written(name)
    (tmp_path / EXPECTED_FILES[name]).write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(GentestError) as error:
        load_dataset(name, data_root=tmp_path)
    message = _one_line(error)
    assert "could not be read" in message and str(tmp_path) in message


def test_label_out_of_range_is_a_gentest_error(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    _write_idx(folder, "train", images, np.array([1, 12]))
    _write_idx(folder, "t10k", images, np.array([0, 1]))
    with pytest.raises(GentestError, match="labels outside 0..9"):
        load_dataset("mnist", data_root=tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_failed_download_is_a_gentest_error(name, tmp_path, no_network):
    root = tmp_path / "fresh"
    with pytest.raises(GentestError) as error:
        load_dataset(name, data_root=root, download=True)
    message = _one_line(error)
    assert "download" in message and "failed" in message and str(root) in message
    assert "URLError" in message or "RuntimeError" in message


@pytest.mark.parametrize("name", NAMES)
def test_download_keeps_files_already_there(name, written, tmp_path, no_network):
    # The files' MD5 sums are not the official ones: torchvision alone would fetch them again.
    _, y_train, _, _ = written(name)
    data = load_dataset(name, data_root=tmp_path, download=True)
    np.testing.assert_array_equal(data.y_train.numpy(), y_train)


# ---------------------------------------------------------------------------------------------
# Import cost


def test_importing_the_module_does_not_import_torchvision(monkeypatch):
    # A fresh import with torchvision made unimportable must still succeed and register all five.
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.delitem(sys.modules, "gentest.vision_datasets", raising=False)
    monkeypatch.setattr(gentest, "vision_datasets", None, raising=False)
    monkeypatch.setattr(datasets, "DATASETS", dict(datasets.DATASETS))
    for name in NAMES:
        datasets.DATASETS.pop(name, None)
    importlib.import_module("gentest.vision_datasets")
    assert set(NAMES) <= set(datasets.DATASETS)
    common = {"train_size": None, "test_size": None}
    assert datasets.DATASETS["cifar10"].options == {**common, "whiten": False, "crop28": False}
    assert datasets.DATASETS["mnist"].options == {**common, "whiten": False}
