"""Write Fashion-MNIST as a folder of PNG files, one subfolder per class: a real "your own images" dataset.

    python scripts/fashion_folder.py ~/fashion-1000 --count 1000

takes the first COUNT training images (about COUNT/10 per class) from the IDX files of Debian's
``dataset-fashion-mnist`` (``apt install dataset-fashion-mnist``; ``--idx`` for another folder) and writes them as
28x28 grayscale PNGs under ``OUT/<class>/<index>.png``. docs/results.md's folder measurements and
tests/test_own_images.py use it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from PIL import Image

IDX_DEFAULT = Path("/usr/share/datasets/fashion-mnist")


def write_folder(out: Path, *, count: int, idx: Path = IDX_DEFAULT, offset: int = 0) -> Path:
    """Training images ``offset`` to ``offset + count`` of Fashion-MNIST as PNGs under ``out/<class>/``; ``out``."""
    from gankit.files import read_idx
    from gankit_plugins.datasets import FASHION_MNIST_CLASS_NAMES

    images = read_idx(_idx_file(idx, "train-images-idx3-ubyte"), ndim=3)[offset : offset + count]
    labels = read_idx(_idx_file(idx, "train-labels-idx1-ubyte"), ndim=1)[offset : offset + count]
    names = [re.sub(r"[^A-Za-z0-9-]+", "_", name) for name in FASHION_MNIST_CLASS_NAMES]
    for name in names:
        (out / name).mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        Image.fromarray(image.numpy(), mode="L").save(out / names[label] / f"{offset + index:05d}.png")
    return out


def _idx_file(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"no {name}[.gz] in {folder}; run `apt install dataset-fashion-mnist` or pass --idx")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the folder to write (class subfolders are made in it)")
    parser.add_argument("--count", type=int, default=1000, help="images to write")
    parser.add_argument("--offset", type=int, default=0, help="first training image to take")
    parser.add_argument("--idx", type=Path, default=IDX_DEFAULT, help="folder of the Fashion-MNIST IDX files")
    args = parser.parse_args(argv)
    write_folder(args.out, count=args.count, idx=args.idx, offset=args.offset)
    print(f"wrote {args.count} PNGs to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
