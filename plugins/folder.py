"""The ``folder`` dataset: your own folder of PNG, JPEG, BMP or WebP images, decoded once and cached as uint8.

``gankit train --dataset folder --data-opt root=DIR``. The layout rules:

- **Classes are the subfolders of** ``root``, labelled as torchvision's ``ImageFolder`` labels them: the subfolder
  names sorted, ``0..K-1`` in that order, and every image anywhere below a class folder belongs to that class. The
  dataset's ``num_classes`` is K, so ``--num-classes K`` trains a conditional model on them.
- **Without subfolders**, the images directly in ``root`` are the dataset, unlabelled (``num_classes`` 0).
- A ``root`` holding both images and subfolders is refused (the loose images would be lost, as ImageFolder loses
  them silently), and so is a class folder without images (as ImageFolder refuses it).
- Names starting with ``.`` are skipped (ImageFolder would make ``.ipynb_checkpoints`` a class); extensions are
  matched case-insensitively; symbolic links are followed, as ImageFolder follows them, each folder visited once.

Each image is turned upright by its EXIF orientation, converted to RGB or grayscale (alpha dropped, 16-bit pixels
scaled to 8), center-cropped to a square and resized (Lanczos) to ``size``. Left open, ``mode`` and ``size`` come from
the images (``resolved_options``): grayscale when every image is, and their median shorter side. The decoded split
is cached under gankit's cache folder, keyed by every file's path and SHA-256 and by the options: a second start
only hashes the files (0.16 s for 3,000 small images, against 2.2 s to decode them). ``holdout`` of each class is
the test split (``held_out_mask``), never trained on, which ``gankit eval`` scores a run against.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import stat
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import Field
from safetensors import safe_open
from safetensors.torch import save

from gankit.errors import DataError
from gankit.files import atomic_write_bytes, cache_dir, one_line, open_regular, sha256_file
from gankit.interfaces import Dataset, DatasetOptions, ImageData, Split
from gankit.registry import host_available_bytes

log = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
"""The image files read, by extension, in any case; any other file is ignored."""

CACHE_FORMAT = "gankit.folder-cache/1"
MAX_AUTO_SIZE = 128
"""The largest side ``size`` takes from the images by itself: the built-in models go to 64, and a cache of larger
images costs memory and disk for nothing. Set ``size`` for more."""
_GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
_SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


class FolderOptions(DatasetOptions):
    root: Path = Field(description="Folder of PNG, JPEG, BMP or WebP images: one subfolder per class, or none.")
    mode: Literal["auto", "rgb", "grayscale"] = Field(
        "auto", description="Channels: rgb (3) or grayscale (1); auto is grayscale when every image is, else rgb."
    )
    size: int | None = Field(
        None,
        ge=4,
        le=1024,
        description="Side in pixels: each image is center-cropped to a square and resized to it; default: the "
        f"images' own, their median shorter side (at most {MAX_AUTO_SIZE}).",
    )
    holdout: float = Field(
        0.1,
        ge=0.0,
        le=0.5,
        description="Share of each class held out as the test split, never trained on, for gankit eval's scores; "
        "0 trains on every image.",
    )
    skip_unreadable: bool = Field(
        False, description="Skip files Pillow cannot read, with a warning, instead of stopping at the first."
    )


class DecodeOptions(FolderOptions):
    """The options decoding works with: ``mode`` and ``size`` resolved (``resolved_options``)."""

    mode: Literal["rgb", "grayscale"]
    size: int = Field(ge=4, le=1024)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of a decoded image: what decoding allocates and a cache must hold."""
        return (1 if self.mode == "grayscale" else 3, self.size, self.size)


@dataclass(frozen=True)
class Listing:
    """The images of a root folder in a fixed order, their labels, and the class names the labels index."""

    root: Path
    files: list[Path]
    labels: list[int]
    classes: list[str]

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


# -- finding the images ---------------------------------------------------------------------------------------------


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _is_image(name: str) -> bool:
    return _visible(name) and name.lower().endswith(EXTENSIONS)


def _raise_unlistable(exc: OSError) -> None:
    raise DataError(f"cannot list {exc.filename}: {exc.strerror or one_line(exc)}; check its permissions")


def _identity(path: Path | str) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino


def _regular(path: Path, special: list[str]) -> bool:
    """Whether an image name is a regular file (links followed). A FIFO, a device or a socket is noted in ``special``
    and skipped: opening a FIFO waits for a writer for ever, and ``/dev/zero`` never ends. A path that cannot be
    looked at (a dangling link) is kept, so that decoding names it and why."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return True
    if stat.S_ISREG(mode):
        return True
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special"
    special.append(f"{path} ({kind})")
    return False


def _images_below(folder: Path, seen: set[tuple[int, int]], special: list[str]) -> Iterator[Path]:
    """Every image file below ``folder``, sorted folder by folder; links followed, no folder visited twice (``seen``
    holds every class folder from the start, so a link to another class is not walked into), and nothing but regular
    files (the rest noted in ``special``)."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=_raise_unlistable):
        kept = []
        for name in sorted(filter(_visible, dirnames)):
            identity = _identity(os.path.join(dirpath, name))
            if identity not in seen:  # a link back up would loop forever; one to a sibling would label twice
                seen.add(identity)
                kept.append(name)
        dirnames[:] = kept
        names = sorted(filter(_is_image, filenames))
        yield from (path for path in (Path(dirpath, name) for name in names) if _regular(path, special))


def _first_five(paths: list[str]) -> str:
    """A warning names a few of the files it is about, not thousands."""
    return "; ".join(paths[:5]) + ("; ..." if len(paths) > 5 else "")


def _say_special(root: Path, special: list[str]) -> None:
    if special:
        log.warning(
            "warning: skipped %d file(s) under %s that are not regular files, never opened: %s",
            len(special),
            root,
            _first_five(special),
        )


def list_images(root: Path) -> Listing:
    """The images under ``root`` with their labels, by the layout rules of the module docstring."""
    if not root.exists():
        raise DataError(f"{root} does not exist; pass --data-opt root=FOLDER, the folder holding your images")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass --data-opt root=FOLDER, the folder holding your images")
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError as exc:
        raise DataError(f"cannot list {root}: {exc.strerror or one_line(exc)}; check its permissions") from None
    special: list[str] = []
    classes = [entry.name for entry in entries if _visible(entry.name) and entry.is_dir()]
    loose = [Path(entry.path) for entry in entries if _is_image(entry.name) and not entry.is_dir()]
    loose = [path for path in loose if _regular(path, special)]
    kinds = ", ".join(EXTENSIONS)
    if classes and loose:
        raise DataError(
            f"{root} holds both images ({len(loose)}, e.g. {loose[0].name}) and subfolders ({', '.join(classes[:3])}"
            f"{', ...' if len(classes) > 3 else ''}); move the images into a class subfolder or out of {root}, "
            f"since subfolders are classes and then images directly in root would be left out"
        )
    if not classes:
        _say_special(root, special)
        if not loose:
            raise DataError(f"{root} holds no images ({kinds}); put your images in it, or one subfolder per class")
        return Listing(root, loose, [0] * len(loose), [])
    seen = {_identity(root)}
    class_of: dict[tuple[int, int], str] = {}
    for name in classes:
        identity = _identity(root / name)
        if identity in class_of:
            raise DataError(
                f"class folders {root / class_of[identity]} and {root / name} are the same folder (one links to the "
                "other); remove one, since every image must have one label"
            )
        class_of[identity] = name
    seen |= set(class_of)
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        below = list(_images_below(root / name, seen, special))
        if not below:
            raise DataError(
                f"class folder {root / name} holds no images ({kinds}); add some or remove it (every subfolder of "
                f"root is a class)"
            )
        files += below
        labels += [label] * len(below)
    _say_special(root, special)
    return Listing(root, files, labels, classes)


# -- decoding -------------------------------------------------------------------------------------------------------


def decode_image(path: Path, *, mode: str, size: int) -> np.ndarray:
    """One image file as uint8 pixels ``(size, size)`` (grayscale) or ``(size, size, 3)`` (rgb), or raises."""
    with _open_regular(path) as stream, Image.open(stream) as opened:
        opened.draft(opened.mode, (2 * size, 2 * size))  # JPEG only: decode at a reduced scale when much larger
        image = ImageOps.exif_transpose(opened)
        if image.mode in _SIXTEEN_BIT:  # Pillow's own conversion clips these to 255 instead of scaling
            image = Image.fromarray((np.asarray(image, dtype=np.int64).clip(0, 65535) >> 8).astype(np.uint8))
        image = image.convert("L" if mode == "grayscale" else "RGB")
        fitted = ImageOps.fit(image, (size, size), method=Image.Resampling.LANCZOS)
        return np.array(fitted, dtype=np.uint8)  # a writable copy, for torch.from_numpy


def _open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading only if it is a regular file (links followed): a file replaced by a FIFO or a
    device after it was listed is refused instead of hanging or reading without end."""
    return os.fdopen(open_regular(path, os.O_RDONLY, follow_links=True), "rb")


def _why_unreadable(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "Pillow does not recognise it as an image"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"it is too large to decode safely ({one_line(exc)})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {one_line(exc)}"


def _decode_or_reason(path: Path, mode: str, size: int) -> np.ndarray | str:
    try:
        return decode_image(path, mode=mode, size=size)
    except Exception as exc:  # Pillow's decoders raise many types on malformed files; each is "unreadable"
        return _why_unreadable(exc)


def _names(classes: Sequence[str]) -> tuple[str, ...] | None:
    return tuple(classes) or None


@contextlib.contextmanager
def _thread_pool() -> Iterator[ThreadPoolExecutor]:
    """Threads for Pillow and hashlib, which work without the GIL; on an error, work not yet started is dropped."""
    pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def decode_all(listing: Listing, options: DecodeOptions) -> tuple[ImageData, list[str]]:
    """Decode every image of ``listing`` (in threads: Pillow decodes without the GIL); return the data and skips."""
    channels = options.image_shape[0]
    check_cache_fits(len(listing.files), channels, options.size)
    try:
        images = torch.empty((len(listing.files), *options.image_shape), dtype=torch.uint8)
    except RuntimeError as exc:  # the allocator: an address-space limit the estimate could not see
        raise DataError(f"cannot hold the decoded images of {listing.root} in memory ({one_line(exc)})") from None
    kept: list[int] = []
    skipped: list[str] = []
    with warnings.catch_warnings(), _thread_pool() as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit at all: refused, not warned
        decoded = pool.map(lambda path: _decode_or_reason(path, options.mode, options.size), listing.files)
        for index, (path, result) in enumerate(zip(listing.files, decoded, strict=True)):
            if isinstance(result, str):
                if not options.skip_unreadable:
                    raise DataError(
                        f"cannot read image {path}: {result}; fix or remove the file, or pass --data-opt "
                        f"skip_unreadable=true to skip such files"
                    )
                skipped.append(f"{listing.relative(path)} ({result})")
                continue
            images[len(kept)] = torch.from_numpy(result.reshape(options.size, options.size, channels)).permute(2, 0, 1)
            kept.append(index)
    if not kept:
        raise DataError(f"none of the {len(listing.files)} images in {listing.root} could be read; first: {skipped[0]}")
    labels = torch.tensor([listing.labels[index] for index in kept], dtype=torch.int64)
    return ImageData(images[: len(kept)].contiguous(), labels, len(listing.classes), _names(listing.classes)), skipped


# -- the cache ------------------------------------------------------------------------------------------------------

CACHE_COPIES = 2
"""Copies of the decoded images held at once while the cache is built: the tensor, and its bytes for the file."""


def check_cache_fits(count: int, channels: int, size: int) -> None:
    """Refuse, in one line and before anything is decoded, a decoded split this process cannot hold (with its cache
    file's bytes), as the models are sized before they are built: a failed allocation deep in Pillow, torch or
    safetensors is a traceback, or a Rust panic."""
    needed = CACHE_COPIES * count * channels * size * size
    available = host_available_bytes()
    if available is not None and needed > available:
        raise DataError(
            f"decoding {count:,} images at size {size} needs about {needed / 1e9:.1f} GB to build their cache; this "
            f"process has {available / 1e9:.1f} GB available; lower --data-opt size, or use fewer images"
        )


def _sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or one_line(exc)}"  # decoding then names the file and the reason


def content_key(listing: Listing, options: FolderOptions) -> str:
    """The SHA-256 of the options, the classes and every file's relative path, label and content hash."""
    header = {"format": CACHE_FORMAT, "options": options.model_dump(mode="json", exclude={"root"})}
    digest = hashlib.sha256(json.dumps({**header, "classes": listing.classes}, sort_keys=True).encode())
    with _thread_pool() as pool:
        for path, label, sha in zip(listing.files, listing.labels, pool.map(_sha256, listing.files), strict=True):
            digest.update(f"{listing.relative(path)}\0{label}\0{sha}\n".encode())
    return digest.hexdigest()


def cache_path(root: Path, options: FolderOptions) -> Path:
    """Where the decoded images of ``root`` with these options are cached: one file, replaced when they change."""
    name = json.dumps({"root": str(root.resolve()), **options.model_dump(mode="json", exclude={"root"})})
    return cache_dir() / "folder" / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.safetensors"


def read_cache(path: Path, key: str, options: DecodeOptions) -> tuple[ImageData, list[str]] | None:
    """The cached data when ``path`` holds it for ``key``; None when absent, stale or damaged (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as cached:
            metadata = cached.metadata() or {}
            if metadata.get("format") != CACHE_FORMAT or metadata.get("key") != key:
                return None
            images, labels = cached.get_tensor("images"), cached.get_tensor("labels")
            classes, skipped = json.loads(metadata["classes"]), json.loads(metadata["skipped"])
    except Exception as exc:  # safetensors raises its own error types; a cache is only ever rebuilt, never trusted
        log.warning("warning: the image cache %s is damaged (%s); decoding the folder again", path, one_line(exc))
        return None
    if (
        images.dtype != torch.uint8
        or tuple(images.shape[1:]) != options.image_shape
        or labels.dtype != torch.int64
        or tuple(labels.shape) != (images.shape[0],)
    ):
        log.warning("warning: the image cache %s does not hold what its header says; decoding the folder again", path)
        return None
    return ImageData(images.contiguous(), labels, len(classes), _names(classes)), skipped


def write_cache(path: Path, key: str, data: ImageData, classes: Sequence[str], skipped: Sequence[str]) -> None:
    """Store the decoded data atomically; a cache that cannot be written costs a warning, never the run."""
    metadata = {"format": CACHE_FORMAT, "key": key, "classes": json.dumps(classes), "skipped": json.dumps(skipped)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save({"images": data.images, "labels": data.labels}, metadata=metadata))
    except (OSError, MemoryError) as exc:
        log.warning("warning: could not cache the decoded images in %s (%s); the next run decodes again", path, exc)
    except BaseException as exc:  # safetensors panics (pyo3's PanicException, not an Exception) when memory runs out
        if type(exc).__name__ != "PanicException":
            raise
        log.warning(
            "warning: could not cache the decoded images in %s (out of memory); the next run decodes again", path
        )


# -- the plugin -----------------------------------------------------------------------------------------------------


class ImageFolder(Dataset):
    """Your own images: every PNG, JPEG, BMP and WebP file under ``root``, labelled by class subfolder.

    Subfolders of ``root`` are the classes, sorted by name, as torchvision's ``ImageFolder`` labels them; without
    subfolders the images in ``root`` are used unlabelled. Each image is center-cropped and resized to ``size`` once
    (by default the images' own, in their own mode); the result is cached, keyed by the files' content, so later runs
    start at once. The test split is ``holdout`` of each class, held out of the training split.
    """

    Options: ClassVar[type[FolderOptions]] = FolderOptions
    options: FolderOptions

    def load(self, split: Split = "train") -> ImageData:
        root = self.options.root.expanduser()
        listing = list_images(root)
        options = resolved_options(listing, self.options)
        key = content_key(listing, options)
        path = cache_path(root, options)
        started = time.perf_counter()
        cached = read_cache(path, key, options)
        if cached is not None:
            data, skipped = cached
            how = f"decoded images reused from {path}"
        else:
            log.info("Decoding %d images from %s once into %s", len(listing.files), root, path)
            data, skipped = decode_all(listing, options)
            write_cache(path, key, data, listing.classes, skipped)
            how = f"decoded once into {path} in {time.perf_counter() - started:.1f} s"
        if skipped:
            log.warning(
                "warning: skipped %d unreadable image(s) in %s (skip_unreadable=true): %s",
                len(skipped),
                root,
                _first_five(skipped),
            )
        held_out = held_out_mask(data, options.holdout)
        part = _part(data, held_out if split == "test" else ~held_out, split=split, root=root, holdout=options.holdout)
        log.info("%s", start_line(root, data, part, split=split, options=options, given=self.options, how=how))
        return part


# -- what the options leave to the images ------------------------------------------------------------------------


def _header(path: Path) -> tuple[bool, int] | None:
    """Whether an image is grayscale, and its shorter side, from its header alone; None when Pillow cannot tell."""
    try:
        with Image.open(path) as image:
            gray = image.mode in _GRAY_MODES
            if image.mode == "P":  # a palette image is grayscale when every colour of its palette is a grey
                palette = image.getpalette() or []
                gray = all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
            return gray, min(image.size)
    except Exception:  # unreadable: decoding names the file, or skips it
        return None


def resolved_options(listing: Listing, options: FolderOptions) -> DecodeOptions:
    """``options`` with ``mode`` and ``size`` taken from the images where they are left open (``auto``, unset):
    grayscale when every readable image is, and the median of their shorter sides, at most ``MAX_AUTO_SIZE``."""
    given = options.model_dump()
    if options.mode != "auto" and options.size is not None:
        return DecodeOptions(**given)
    with _thread_pool() as pool:
        headers = [found for found in pool.map(_header, listing.files) if found is not None]
    if not headers:  # nothing readable: decoding says why, file by file
        return DecodeOptions(**{**given, "mode": "rgb", "size": options.size or MAX_AUTO_SIZE})
    mode = options.mode
    if mode == "auto":
        mode = "grayscale" if all(gray for gray, _ in headers) else "rgb"
    sides = sorted(side for _, side in headers)
    size = options.size or min(max(sides[(len(sides) - 1) // 2], 4), MAX_AUTO_SIZE)
    return DecodeOptions(**{**given, "mode": mode, "size": size})


# -- the held-out test split --------------------------------------------------------------------------------------


def held_out_mask(data: ImageData, holdout: float) -> torch.Tensor:
    """Which images form the test split: in each class, the ``round(holdout * count)`` whose pixels hash lowest.

    Chosen by content, not by name or order, so adding or renaming files never moves an image from one side to the
    other, and exact duplicates always land on the same side.
    """
    mask = torch.zeros(len(data.images), dtype=torch.bool)
    if holdout <= 0:
        return mask
    flat = data.images.reshape(len(data.images), -1).numpy()
    digests = [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in flat]
    for label in sorted(set(data.labels.tolist())):
        members = (data.labels == label).nonzero().flatten().tolist()
        count = int(holdout * len(members) + 0.5)
        members.sort(key=lambda index: (digests[index], index))
        mask[members[:count]] = True
    return mask


def _part(data: ImageData, chosen: torch.Tensor, *, split: Split, root: Path, holdout: float) -> ImageData:
    if not bool(chosen.any()):
        if split == "test" and holdout == 0:
            raise DataError(
                f"the folder {root} has no test split: holdout=0 trains on every image; set --data-opt holdout=0.1 "
                "(the default) when training, to keep a part aside for gankit eval"
            )
        raise DataError(
            f"the folder {root} has too few images for a {split} split with holdout={holdout}; add images, or "
            f"{'raise' if split == 'test' else 'lower'} holdout"
        )
    return dataclasses.replace(data, images=data.images[chosen].contiguous(), labels=data.labels[chosen])


def start_line(
    root: Path,
    data: ImageData,
    part: ImageData,
    *,
    split: Split,
    options: FolderOptions,
    given: FolderOptions,
    how: str,
) -> str:
    """The folder's line at the start: images, classes, shape and where the shape came from, the split, the cache."""
    classes = "unlabelled"
    if data.class_names:
        names = ", ".join(data.class_names[:4]) + (", ..." if len(data.class_names) > 4 else "")
        classes = f"{data.num_classes} classes ({names})"
    chosen = [f"mode {options.mode}" for _ in [0] if given.mode == "auto"]
    chosen += [f"size {options.size}" for _ in [0] if given.size is None]
    origin = f" ({' and '.join(chosen)} from the images)" if chosen else ""
    channels, height, width = data.images.shape[1:]
    held = len(data.images) - len(part.images) if split == "train" else len(part.images)
    use = (
        f"{len(part.images):,} to train, {held:,} held out for gankit eval"
        if split == "train"
        else f"the {len(part.images):,} held out for evaluation"
    )
    return (
        f"folder {root}: {len(data.images):,} images, {classes}, {options.mode} {channels}x{height}x{width}{origin}; "
        f"{use}; {how}"
    )
