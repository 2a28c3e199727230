"""Train the MNIST digit classifier that gankit's evaluation metrics are computed on, reproducibly.

    python scripts/train_classifier.py --overwrite

writes ``gankit/evaluation/mnist_classifier.safetensors`` and prints its test accuracy and sha256; put the sha256
into ``WEIGHTS_SHA256`` in ``gankit/evaluation/_classifier.py``. Seeded, single-threaded and with deterministic
algorithms, so the same torch version on the same kind of CPU writes the same bytes. 3 epochs of Adam with a cosine
learning-rate decay on the 60,000 training images: about 2 minutes of CPU time (torch 2.14.1 wrote the shipped file,
99.11% test accuracy).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from gankit.evaluation import WEIGHTS_PATH, DigitClassifier
from gankit.files import atomic_output
from gankit.interfaces import ImageData
from gankit.registry import create_plugin, to_unit_range


def accuracy(model: DigitClassifier, data: ImageData, *, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data.images), batch_size):
            logits = model(to_unit_range(data.images[start : start + batch_size]))
            correct += int((logits.argmax(1) == data.labels[start : start + batch_size]).sum())
    return correct / len(data.images)


def train(*, epochs: int, batch_size: int, lr: float, seed: int) -> tuple[DigitClassifier, ImageData]:
    """The trained classifier and the test split it is to be measured on."""
    mnist = create_plugin("dataset", "mnist")
    train_data, test_data = mnist.load("train"), mnist.load("test")
    images = to_unit_range(train_data.images)
    torch.manual_seed(seed)
    model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = len(images) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    order_rng = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(images), generator=order_rng)
        total = 0.0
        for step in range(steps_per_epoch):
            picked = order[step * batch_size : (step + 1) * batch_size]
            loss = F.cross_entropy(model(images[picked]), train_data.labels[picked])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        print(
            f"epoch {epoch + 1}/{epochs}: mean training loss {total / steps_per_epoch:.4f} "
            f"({time.perf_counter() - started:.0f} s)"
        )
    return model, test_data


def write_weights(state: dict[str, torch.Tensor], path: Path, info: dict[str, Any]) -> None:
    """The weights as safetensors, with ``info`` as one JSON metadata string.

    One metadata key, because safetensors writes its metadata map in an order that changes from run to run, and
    the file's bytes (and so its sha256) must not.
    """
    tensors = {key: tensor.detach().contiguous() for key, tensor in state.items()}  # float32 weights
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={"gankit.mnist_classifier": json.dumps(info, sort_keys=True)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH, help="where to write the weights")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; results are pinned for 1")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists; pass --overwrite")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    model, test_data = train(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    test_accuracy = accuracy(model, test_data)
    info = {
        "format": "gankit.mnist_classifier",
        "test_accuracy": f"{test_accuracy:.4f}",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "torch_version": torch.__version__,
    }
    write_weights(model.state_dict(), args.out, info)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"test accuracy: {test_accuracy:.4f} on {len(test_data.images)} MNIST test images")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) in {time.perf_counter() - started:.0f} s")
    print(f"sha256: {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
