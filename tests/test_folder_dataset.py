"""The ``folder`` dataset: your own images, labelled by subfolder, decoded once and cached by content."""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_error_line, assert_user_error, run
from PIL import Image

from gankit.errors import DataError
from gankit.export import read_export_metadata
from gankit.interfaces import ImageData
from gankit.registry import create_plugin
from gankit_plugins import folder

TRAIN = ["--dataset", "folder", "--batch-size", "4", "--max-steps", "2", "--device", "cpu", "--quiet"]
MODELS = ["--gen", "dcgan", "--gen-opt", "width=8", "--disc-opt", "width=8", "--sample-count", "4"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GANKIT_CACHE", str(cache))
    return cache


def picture(path: Path, width: int, height: int, *, mode: str = "RGB", seed: int = 0) -> Path:
    """A random picture of ``width`` x ``height``, in the format its extension names."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Two classes of mixed PNG and JPEG files of mixed, non-square sizes, a nested folder, and things to ignore."""
    root = tmp_path / "images"
    picture(root / "cats" / "a.png", 40, 30)
    picture(root / "cats" / "b.PNG", 20, 50, mode="RGBA", seed=1)
    picture(root / "cats" / "c.jpg", 33, 33, mode="L", seed=2)
    picture(root / "cats" / "d.jpeg", 64, 48, seed=3)
    picture(root / "dogs" / "e.jpg", 50, 40, seed=4)
    picture(root / "dogs" / "f.png", 17, 60, mode="L", seed=5)
    picture(root / "dogs" / "puppies" / "g.png", 28, 28, seed=6)
    picture(root / "dogs" / "puppies" / "h.jpg", 90, 30, seed=7)
    picture(root / ".ipynb_checkpoints" / "x.png", 8, 8)  # hidden: not a class
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root


def load(root: Path, **options: object) -> ImageData:
    data: ImageData = create_plugin("dataset", "folder", {"root": root, **options}).load("train")
    return data


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    decoded: list[Path] = []
    original: Callable[..., np.ndarray] = folder.decode_image

    def counting(path: Path, **kwargs: object) -> np.ndarray:
        decoded.append(path)
        return original(path, **kwargs)

    monkeypatch.setattr(folder, "decode_image", counting)
    return decoded


# -- layout and labels ----------------------------------------------------------------------------------------------


def test_subfolders_are_classes_labelled_as_torchvision_does(images: Path) -> None:
    data = load(images, size=16)
    assert data.images.dtype == torch.uint8 and tuple(data.images.shape) == (8, 3, 16, 16)
    assert data.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and data.num_classes == 2
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.datasets.ImageFolder(str(images), allow_empty=True)
    assert reference.class_to_idx == {".ipynb_checkpoints": 0, "cats": 1, "dogs": 2}  # what hiding avoids
    (images / ".ipynb_checkpoints" / "x.png").unlink()
    (images / ".ipynb_checkpoints").rmdir()
    reference = torchvision.datasets.ImageFolder(str(images))
    assert sorted(reference.targets) == data.labels.tolist()


def test_images_without_subfolders_are_unlabelled_and_grayscale_works(tmp_path: Path) -> None:
    for index in range(3):
        picture(tmp_path / "flat" / f"{index}.bmp", 30 + index, 20, seed=index)
    picture(tmp_path / "flat" / "3.webp", 12, 40, seed=3)
    data = load(tmp_path / "flat", mode="grayscale", size=8)
    assert tuple(data.images.shape) == (4, 1, 8, 8)
    assert data.labels.tolist() == [0, 0, 0, 0] and data.num_classes == 0


def test_center_crop_and_sixteen_bit_pixels(tmp_path: Path) -> None:
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, 10:20] = 200  # the center square is all 200, the sides that the crop removes are black
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert (folder.decode_image(tmp_path / "wide.png", mode="rgb", size=10) == 200).all()
    deep = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    deep.save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert (folder.decode_image(tmp_path / "deep.png", mode="grayscale", size=4) == 128).all()  # scaled, not clipped


def test_a_link_back_up_is_followed_once(images: Path) -> None:
    os.symlink(images / "dogs", images / "dogs" / "puppies" / "loop")
    assert len(load(images, size=8).labels) == 8


# -- training through the CLI ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_trains_end_to_end(images: Path, tmp_path: Path, conditional: bool) -> None:
    out = tmp_path / "run"
    extra = ["--num-classes", "2"] if conditional else []
    result = run(
        "train", *MODELS, *TRAIN, "--data-opt", f"root={images}", "--data-opt", "size=28", *extra, "--out", out
    )
    assert result.exit_code == 0, result.output
    metadata = read_export_metadata(out / "generator.safetensors")
    assert metadata.image_shape == (3, 28, 28) and metadata.num_classes == (2 if conditional else 0)
    assert json.loads((out / "config.json").read_text())["dataset_options"] == {"root": str(images), "size": 28}


def test_more_classes_in_the_folder_than_the_model_conditions_on(images: Path, tmp_path: Path) -> None:
    picture(images / "birds" / "z.png", 9, 9)
    result = run(
        "train", *MODELS, *TRAIN, "--data-opt", f"root={images}", "--num-classes", "2", "--out", tmp_path / "r"
    )
    assert_user_error(result, "3 classes", "num_classes=3")


def test_a_flat_folder_cannot_train_a_conditional_model(tmp_path: Path) -> None:
    """Without subfolders there are no labels: a conditional model would learn label 0 only, so it is refused."""
    for index in range(4):
        picture(tmp_path / "flat" / f"{index}.png", 12, 12, seed=index)
    out = tmp_path / "r"
    result = run(
        "train", *MODELS, *TRAIN, "--data-opt", f"root={tmp_path / 'flat'}", "--num-classes", "2", "--out", out
    )
    assert_user_error(result, "dataset 'folder' from 'gankit'", "has no labels", "drop --num-classes", "subfolder")
    assert not out.exists()


# -- the cache ------------------------------------------------------------------------------------------------------


def test_second_start_hits_the_cache(images: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = count_decodes(monkeypatch)
    first = load(images, size=16)
    assert len(decoded) == 8
    (cache_file,) = (private_cache / "folder").glob("*.safetensors")
    written = cache_file.stat().st_mtime_ns

    second = load(images, size=16)
    assert len(decoded) == 8, "the second start decoded images instead of reading the cache"
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.num_classes == 2 and cache_file.stat().st_mtime_ns == written

    picture(images / "cats" / "a.png", 40, 30, seed=99)  # same name and size, new content: the cache is stale
    third = load(images, size=16)
    assert len(decoded) == 16 and not torch.equal(third.images[0], first.images[0])
    assert list((private_cache / "folder").glob("*.safetensors")) == [cache_file]  # replaced, not piled up

    load(images, size=8)  # other options, another cache file
    assert len(decoded) == 24 and len(list((private_cache / "folder").glob("*.safetensors"))) == 2


def test_a_damaged_cache_is_rebuilt(images: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = load(images, size=8)
    (cache_file,) = (private_cache / "folder").glob("*.safetensors")
    cache_file.write_bytes(b"\x00" * 100)
    decoded = count_decodes(monkeypatch)
    assert torch.equal(load(images, size=8).images, expected.images) and len(decoded) == 8


def test_a_cache_that_cannot_be_written_costs_a_warning(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "not-a-folder"))
    with caplog.at_level(logging.WARNING):
        assert len(load(images, size=8).labels) == 8
    (warning,) = [record.getMessage() for record in caplog.records]
    assert "could not cache the decoded images" in warning


# -- bad input ------------------------------------------------------------------------------------------------------


def test_an_unreadable_file_is_named_in_one_line(images: Path, tmp_path: Path, private_cache: Path) -> None:
    (images / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a PNG")
    out = tmp_path / "run"
    result = run("train", *MODELS, *TRAIN, "--data-opt", f"root={images}", "--out", out)
    assert_user_error(result, "cannot read image", str(images / "dogs" / "broken.png"), "skip_unreadable=true")
    assert not out.exists() and not (private_cache / "folder").exists()


def test_unreadable_files_are_skipped_with_a_warning_when_asked(images: Path, caplog: pytest.LogCaptureFixture) -> None:
    (images / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    for _ in range(2):  # built, then from the cache: the warning comes both times
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            data = load(images, size=8, skip_unreadable=True)
        assert len(data.labels) == 8 and data.labels.tolist().count(0) == 4
        (warning,) = [record.getMessage() for record in caplog.records]
        assert "skipped 1 unreadable image" in warning and "cats/broken.jpg" in warning


def huge_png(path: Path, side: int) -> Path:
    """A tiny PNG file whose header claims ``side`` x ``side`` pixels: a decompression bomb."""
    picture(path, 1, 1)
    data = bytearray(path.read_bytes())
    header = struct.pack(">II", side, side) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_is_one_line(images: Path, tmp_path: Path) -> None:
    huge_png(images / "cats" / "bomb.png", 20_000)
    result = run("train", *MODELS, *TRAIN, "--data-opt", f"root={images}", "--out", tmp_path / "run")
    assert_user_error(result, "bomb.png", "too large to decode safely")
    huge_png(images / "cats" / "bomb.png", 12_000)  # over Pillow's limit but under twice it: Pillow only warns
    result = run("train", *MODELS, *TRAIN, "--data-opt", f"root={images}", "--out", tmp_path / "run")
    assert_user_error(result, "bomb.png", "too large to decode safely")


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda root: root.mkdir(), ["holds no images", ".png"]),
        (lambda root: (root.mkdir(), (root / "readme.txt").write_text("hi")), ["holds no images"]),
        (lambda root: None, ["does not exist"]),
        (lambda root: (picture(root / "a.png", 8, 8), picture(root / "cats" / "b.png", 8, 8)), ["both images"]),
        (lambda root: (picture(root / "cats" / "b.png", 8, 8), (root / "dogs").mkdir()), ["dogs holds no images"]),
    ],
    ids=["empty", "no-images", "missing", "mixed", "empty-class"],
)
def test_folders_that_cannot_be_a_dataset(tmp_path: Path, make: Callable[[Path], object], fragments: list[str]) -> None:
    root = tmp_path / "data"
    make(root)
    result = run("train", *MODELS, *TRAIN, "--data-opt", f"root={root}", "--out", tmp_path / "run")
    assert_user_error(result, *fragments)
    assert not (tmp_path / "run").exists()


def test_root_is_required_and_holdout_0_leaves_no_test_split(images: Path) -> None:
    result = run("train", *MODELS, *TRAIN)
    assert_user_error(result, "root", "required")
    with pytest.raises(DataError, match="no test split: holdout=0 trains on every image"):
        create_plugin("dataset", "folder", {"root": images, "holdout": 0}).load("test")


# -- what is not a regular file, links that loop, a cache too large (issue 22, classes 2 and 7) ----------------------


def test_a_fifo_or_a_device_among_the_images_is_skipped_in_one_line_and_never_opened(
    images: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO named x.png made `gankit train` wait for ever, and so did a link to /dev/zero: neither is opened."""
    os.mkfifo(images / "cats" / "x.png")
    os.symlink("/dev/zero", images / "dogs" / "zero.jpg")
    with caplog.at_level(logging.WARNING):
        listing = folder.list_images(images)
    assert [path.name for path in listing.files] == [
        "a.png",
        "b.PNG",
        "c.jpg",
        "d.jpeg",
        "e.jpg",
        "f.png",
        "g.png",
        "h.jpg",
    ]
    said = [record.getMessage() for record in caplog.records if "not regular files" in record.getMessage()]
    assert len(said) == 1 and "skipped 2 file(s)" in said[0] and "x.png (a FIFO)" in said[0]
    assert "zero.jpg (a device)" in said[0]
    command = [sys.executable, "-m", "gankit", "train", *TRAIN, *MODELS, "--data-opt", f"root={images}"]
    command += ["--data-opt", "size=8", "--out", str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)  # never a hang
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_a_link_to_a_sibling_class_labels_its_images_once(images: Path) -> None:
    """``cats/todogs -> dogs`` gave the dogs two labels, although each folder is visited once."""
    os.symlink(images / "dogs", images / "cats" / "todogs")
    listing = folder.list_images(images)
    assert len(listing.files) == 8 and listing.labels == [0, 0, 0, 0, 1, 1, 1, 1]
    os.symlink(images / "dogs", images / "wolves")  # a class that is another class: which label would be right?
    with pytest.raises(DataError, match="are the same folder"):
        folder.list_images(images)


def test_a_cache_larger_than_memory_is_refused_before_decoding(tmp_path: Path) -> None:
    """Under an address-space limit, caching a folder at size=1024 ended in pyo3's PanicException."""
    resource = pytest.importorskip("resource")
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to measure the address space a gankit process starts with")
    probe = "import torch, PIL.Image, gankit.cli, gankit_plugins.folder; print(open('/proc/self/status').read())"
    status = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    started = int(next(line for line in status.splitlines() if line.startswith("VmSize:")).split()[1]) * 1024
    limit = started + (1 << 30)  # what a gankit process starts with, and 1 GiB more
    root = tmp_path / "many"
    for index in range(400):  # 400 x 3 x 1024 x 1024 bytes, twice: 2.5 GB
        picture(root / f"{index:03d}.png", 4, 4, seed=index)
    command = [sys.executable, "-m", "gankit", "train", *TRAIN, "--gen", "mlp", "--data-opt", f"root={root}"]
    command += ["--data-opt", "size=1024", "--data-opt", "mode=rgb", "--out", str(tmp_path / "run")]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    assert_error_line(
        done.returncode, done.stderr, "decoding 400 images at size 1024 needs about", "lower --data-opt size"
    )
    assert not (tmp_path / "run").exists()


def test_a_resume_on_images_that_all_changed_says_so(images: Path, tmp_path: Path) -> None:
    """Issue 22: `--resume` of a folder run whose images were all replaced said nothing."""
    out = tmp_path / "run"
    base = [*TRAIN, *MODELS, "--data-opt", f"root={images}", "--data-opt", "size=8", "--data-opt", "mode=rgb"]
    assert run("train", *base, "--checkpoint-every", "1", "--out", out).exit_code == 0
    same = run("train", "--resume", out, "--max-steps", "3")
    assert same.exit_code == 0 and "training data" not in same.output
    for index, path in enumerate(sorted(p for p in images.rglob("*") if folder._is_image(p.name))):
        picture(path, 20, 20, seed=100 + index)
    changed = run("train", "--resume", out, "--max-steps", "4")
    assert changed.exit_code == 0, changed.output
    said = [line for line in changed.output.splitlines() if "the training data is not what" in line]
    assert len(said) == 1 and str(out) in said[0]
