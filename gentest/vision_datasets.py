"""Image datasets through torchvision: ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``
and ``svhn``.

Importing this module registers the five loaders with :func:`gentest.datasets.register_dataset`.
Each reads the files from the data root in torchvision's own layout (``cifar-10-batches-py/``,
``cifar-100-python/``, ``MNIST/raw/``, ``FashionMNIST/raw/``, ``train_32x32.mat`` and
``test_32x32.mat`` for SVHN) and returns float32 images of shape (N, C, H, W) in [0, 1] with
int64 labels. The arrays torchvision parsed (``.data`` and ``.targets`` / ``.labels``) are
converted in one go, never image by image through PIL.

Options, all off by default:

* ``whiten`` (all five): per-image standardization as TensorFlow's
  ``tf.image.per_image_standardization``: subtract the image's mean and divide by
  ``max(std, 1 / sqrt(number of elements))``.
* ``crop28`` (``cifar10``, ``cifar100``, ``svhn``): keep the central 28x28 of the 32x32 image
  (rows and columns 2 to 29), done before whitening.

Together they are the CIFAR-10 preprocessing of Zhang et al., "Understanding deep learning
requires rethinking generalization" (ICLR 2017), appendix A: images centre-cropped to 28x28, then
normalized per image by subtracting the mean and dividing by the adjusted standard deviation.

Integrity: torchvision checks the MD5 sums of the CIFAR and SVHN files. gentest deliberately
checks only that the expected files exist, through small subclasses that override
``_check_integrity`` (and the metadata check of CIFAR) and keep the rest of torchvision's parsing;
that way users' own copies and the tests' small files load. MNIST and Fashion-MNIST already
check only existence of their raw files. Files that exist but cannot be parsed still give a
:class:`GentestError`, as do missing files and failed downloads: one sentence that names the
folder and the files expected there.

torchvision is imported only inside the loaders, since it is slow to import and the command line
must start fast.
"""

from __future__ import annotations

import math
import os
import pickle
import tarfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from gentest.datasets import DataSplit, register_dataset
from gentest.errors import GentestError

__all__ = ["per_image_standardization", "center_crop"]

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Exceptions torchvision, pickle, scipy.io and urllib raise for missing, truncated or malformed
# files and failed downloads (URLError, HTTPError, ssl and socket errors are OSErrors; MD5
# mismatches after a download and the MNIST mirror loop raise RuntimeError; the idx reader
# asserts on bad headers). Anything else escaping the loaders is a bug and keeps its traceback.
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    RuntimeError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AssertionError,
    pickle.UnpicklingError,
    tarfile.TarError,
)


@dataclass(frozen=True)
class _Source:
    """Where one dataset's files live under the data root and how to name them to a person."""

    name: str
    folder: str  # sub-folder of the data root that holds the files ("" for SVHN)
    files: tuple[str, ...]
    what: str  # the files as the error message names them
    url: str
    num_classes: int
    image_shape: tuple[int, int, int]
    legacy: tuple[str, ...] = ()  # MNIST's old processed/*.pt files, which torchvision still reads

    def missing(self, root: Path) -> list[str]:
        """The expected files not in ``root``, relative to it; empty when the data is there."""
        if self.legacy and all((root / f).is_file() for f in self.legacy):
            return []
        paths = [f"{self.folder}/{f}" if self.folder else f for f in self.files]
        return [p for p in paths if not (root / p).is_file()]


_SOURCES = {
    s.name: s
    for s in (
        _Source(
            "cifar10",
            "cifar-10-batches-py",
            tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
            "the folder cifar-10-batches-py/ (data_batch_1 to data_batch_5, test_batch, batches.meta)",
            CIFAR_URL,
            10,
            (3, 32, 32),
        ),
        _Source(
            "cifar100",
            "cifar-100-python",
            ("train", "test", "meta"),
            "the folder cifar-100-python/ (train, test, meta)",
            CIFAR_URL,
            100,
            (3, 32, 32),
        ),
        _Source(
            "mnist",
            "MNIST/raw",
            _MNIST_FILES,
            f"the folder MNIST/raw/ ({', '.join(_MNIST_FILES)}, uncompressed)",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            10,
            (1, 28, 28),
            legacy=("MNIST/processed/training.pt", "MNIST/processed/test.pt"),
        ),
        _Source(
            "fashion-mnist",
            "FashionMNIST/raw",
            _MNIST_FILES,
            f"the folder FashionMNIST/raw/ ({', '.join(_MNIST_FILES)}, uncompressed)",
            "https://github.com/zalandoresearch/fashion-mnist",
            10,
            (1, 28, 28),
            legacy=("FashionMNIST/processed/training.pt", "FashionMNIST/processed/test.pt"),
        ),
        _Source(
            "svhn",
            "",
            ("train_32x32.mat", "test_32x32.mat"),
            "the files train_32x32.mat and test_32x32.mat",
            "http://ufldl.stanford.edu/housenumbers/",
            10,
            (3, 32, 32),
        ),
    )
}

_DOWNLOAD_HINT = "or pass --download on a machine with internet access"


# ---------------------------------------------------------------------------------------------
# Preprocessing


def per_image_standardization(x: torch.Tensor) -> torch.Tensor:
    """Whiten each image of ``x`` (N, ...) as TensorFlow's ``per_image_standardization``.

    ``(image - mean) / max(std, 1 / sqrt(image.numel()))``, with the population standard
    deviation; the floor keeps constant images finite (they become all zeros).
    """
    flat = x.reshape(len(x), -1)
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, correction=0, keepdim=True)
    out = flat - mean
    out.div_(std.clamp_(min=1.0 / math.sqrt(flat.shape[1])))
    return out.reshape(x.shape)


def center_crop(x: torch.Tensor, size: int = 28) -> torch.Tensor:
    """The central ``size`` x ``size`` pixels of images ``x`` (N, C, H, W)."""
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top : top + size, left : left + size].contiguous()


# ---------------------------------------------------------------------------------------------
# torchvision, imported lazily


@cache
def _torchvision_classes() -> dict[str, type]:
    """torchvision's dataset classes with the MD5 checks replaced by existence checks."""
    from torchvision import datasets as tvd

    class _FilesOnlyCifar:
        # torchvision's own check computes the MD5 of every batch file.
        def _check_integrity(self) -> bool:
            folder = os.path.join(self.root, self.base_folder)
            return all(os.path.isfile(os.path.join(folder, name)) for name, _ in self.train_list + self.test_list)

    class CIFAR10(_FilesOnlyCifar, tvd.CIFAR10):
        # _load_meta checks the metadata file with check_integrity(path, md5); md5=None means
        # "exists".
        meta = {**tvd.CIFAR10.meta, "md5": None}

    class CIFAR100(_FilesOnlyCifar, tvd.CIFAR100):
        meta = {**tvd.CIFAR100.meta, "md5": None}

    class SVHN(tvd.SVHN):
        def _check_integrity(self) -> bool:
            return os.path.isfile(os.path.join(self.root, self.filename))

        def download(self) -> None:
            # torchvision's download_url re-downloads a file whose MD5 differs; keep users' copies.
            if not self._check_integrity():
                super().download()

    # MNIST and FashionMNIST: _check_exists only tests that the raw files exist.
    return {
        "cifar10": CIFAR10,
        "cifar100": CIFAR100,
        "mnist": tvd.MNIST,
        "fashion-mnist": tvd.FashionMNIST,
        "svhn": SVHN,
    }


def _read_split(name: str, root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as uint8 images (N, C, H, W) and int64 labels, from torchvision's parsed arrays."""
    cls = _torchvision_classes()[name]
    if name in ("cifar10", "cifar100"):
        ds = cls(root, train=train, download=download)
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # torchvision keeps CIFAR as N, H, W, C
        y = torch.as_tensor(ds.targets, dtype=torch.int64)
    elif name == "svhn":
        ds = cls(root, split="train" if train else "test", download=download)
        x = torch.from_numpy(ds.data)  # already N, C, H, W; labels already map digit 0 to 0
        y = torch.as_tensor(ds.labels, dtype=torch.int64).reshape(-1)
    else:
        ds = cls(root, train=train, download=download)
        x = ds.data.unsqueeze(1)
        y = ds.targets.to(torch.int64)
    return x.contiguous(), y


def _message(reason: str, source: _Source, root: Path, error: BaseException | None = None, by_hand: str = "") -> str:
    detail = ""
    if error is not None:
        text = " ".join(str(error).split())  # one line: torchvision's messages span several
        if len(text) > 200:
            text = text[:200].rsplit(" ", 1)[0] + " ..."
        detail = f" ({type(error).__name__}: {text})" if text else f" ({type(error).__name__})"
    return f"{reason}{detail}: put {source.what} from {source.url} in {root}{by_hand}"


def _load(name: str, data_root: Path, download: bool, whiten: bool, crop28: bool = False) -> DataSplit:
    source = _SOURCES[name]
    for option, value in (("whiten", whiten), ("crop28", crop28)):
        if not isinstance(value, bool):
            raise GentestError(f"dataset option '{option}' must be true or false, got {value!r}")
    root = Path(data_root).expanduser().absolute()
    missing = source.missing(root)
    if missing and not download:
        if len(missing) == len(source.files):
            where = f"{name} is not in {root}"
        else:
            where = f"{name} is incomplete in {root} (missing {', '.join(missing)})"
        raise GentestError(f"{where}: put {source.what} from {source.url} there, {_DOWNLOAD_HINT}")

    errors = _DATA_ERRORS
    if name == "svhn":
        from scipy.io.matlab import MatReadError

        errors += (MatReadError,)
    fetch = bool(missing)  # with download=True, only ask torchvision to fetch what is absent
    try:
        x_train, y_train = _read_split(name, str(root), train=True, download=fetch)
        x_test, y_test = _read_split(name, str(root), train=False, download=fetch)
    except errors as e:
        if fetch:
            raise GentestError(_message(f"downloading {name} into {root} failed", source, root, e, " by hand")) from e
        raise GentestError(_message(f"{name} in {root} could not be read", source, root, e)) from e

    for x, y in ((x_train, y_train), (x_test, y_test)):
        # torchvision parses whatever the files hold; refuse shapes and labels the models can't use.
        bad = None
        if tuple(x.shape[1:]) != source.image_shape or len(x) != len(y) or len(y) == 0:
            bad = f"images of shape {tuple(x.shape)} with {len(y)} labels"
        elif int(y.min()) < 0 or int(y.max()) >= source.num_classes:
            bad = f"labels outside 0..{source.num_classes - 1}"
        if bad:
            raise GentestError(
                f"{name} in {root} holds {bad}, expected {source.image_shape} images: "
                f"put intact copies of {source.what} from {source.url} there"
            )

    def prepare(x: torch.Tensor) -> torch.Tensor:
        if crop28:
            x = center_crop(x, 28)  # on uint8, before the float copy: less memory
        x = x.to(torch.float32).div_(255.0)
        return per_image_standardization(x) if whiten else x

    return DataSplit(name, prepare(x_train), y_train, prepare(x_test), y_test, source.num_classes)


# ---------------------------------------------------------------------------------------------
# Registrations

_WHITEN = {"whiten": False}
_CROP_WHITEN = {"whiten": False, "crop28": False}


@register_dataset(
    "cifar10",
    options=_CROP_WHITEN,
    description="CIFAR-10 via torchvision: 50,000/10,000 3x32x32 colour images, 10 classes",
    test_points=10000,
)
def load_cifar10(data_root: Path, download: bool, whiten: bool = False, crop28: bool = False) -> DataSplit:
    return _load("cifar10", data_root, download, whiten, crop28)


@register_dataset(
    "cifar100",
    options=_CROP_WHITEN,
    description="CIFAR-100 via torchvision: 50,000/10,000 3x32x32 colour images, 100 fine classes",
    test_points=10000,
)
def load_cifar100(data_root: Path, download: bool, whiten: bool = False, crop28: bool = False) -> DataSplit:
    return _load("cifar100", data_root, download, whiten, crop28)


@register_dataset(
    "mnist",
    options=_WHITEN,
    description="MNIST via torchvision: 60,000/10,000 1x28x28 digits, 10 classes",
    test_points=10000,
)
def load_mnist(data_root: Path, download: bool, whiten: bool = False) -> DataSplit:
    return _load("mnist", data_root, download, whiten)


@register_dataset(
    "fashion-mnist",
    options=_WHITEN,
    description="Fashion-MNIST via torchvision: 60,000/10,000 1x28x28 clothing images, 10 classes",
    test_points=10000,
)
def load_fashion_mnist(data_root: Path, download: bool, whiten: bool = False) -> DataSplit:
    return _load("fashion-mnist", data_root, download, whiten)


@register_dataset(
    "svhn",
    options=_CROP_WHITEN,
    description="SVHN via torchvision: 73,257/26,032 3x32x32 house-number digits, 10 classes",
    test_points=26032,
)
def load_svhn(data_root: Path, download: bool, whiten: bool = False, crop28: bool = False) -> DataSplit:
    return _load("svhn", data_root, download, whiten, crop28)
