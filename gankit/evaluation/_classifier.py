"""The MNIST digit classifier whose features and probabilities every evaluation metric is computed on.

A small LeNet-style CNN, trained by ``scripts/train_classifier.py`` on the 60,000 MNIST training images (99.11% on
the 10,000 test images) and shipped beside this module as ``mnist_classifier.safetensors``. The file's sha256 is
pinned in ``WEIGHTS_SHA256`` and checked before a single byte of it is parsed, so every score gankit prints comes
from the same network.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import Tensor, nn

from gankit.errors import FileFormatError
from gankit.files import failure, sha256_file

WEIGHTS_PATH = Path(__file__).with_name("mnist_classifier.safetensors")
WEIGHTS_SHA256 = "b551359da61e90af59b6bad401b586ac4d14fc7d8565ade200ca42b5908663e3"
"""sha256 of ``WEIGHTS_PATH``, printed by ``scripts/train_classifier.py``; update both together."""

IMAGE_SIDE = 28
NUM_CLASSES = 10
FEATURE_DIM = 128


class DigitClassifier(nn.Module):
    """A LeNet-style CNN: three strided conv layers with batch norm, 128 hidden units (the features), one logit per
    class.

    The defaults are the shipped MNIST classifier (1 channel, 28x28, 10 digits); ``train_classifier`` makes one of
    the same design for any labelled dataset (``gankit.evaluation``), at that data's channels, side and classes.
    Inputs are images in ``[-1, 1]`` of shape ``(N, C, H, W)``: any side is resized to ``side`` (bilinear,
    antialiased), and a one-channel classifier averages several channels to one, so every built-in image size can be
    scored.
    """

    def __init__(self, *, channels: int = 1, side: int = IMAGE_SIDE, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.channels, self.side, self.num_classes = channels, side, num_classes
        # Strided convolutions subsample where LeNet pools: a network this small is bound by memory traffic on a
        # CPU, and they never write full-resolution activations (about 30% faster than a pooled LeNet here).
        self.conv1 = nn.Conv2d(channels, 32, 5, stride=2, padding=2, bias=False)  # 28 -> 14
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False)  # 14 -> 7
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)  # 7 -> 4
        self.bn3 = nn.BatchNorm2d(64)
        reduced = side
        for _ in range(3):
            reduced = (reduced + 1) // 2
        self.fc1 = nn.Linear(64 * reduced * reduced, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, num_classes)
        self.dropout = nn.Dropout(0.3)

    @staticmethod
    def prepare(images: Tensor, side: int = IMAGE_SIDE, channels: int = 1) -> Tensor:
        """Bring ``(N, C, H, W)`` images in ``[-1, 1]`` to float32 ``(N, channels, side, side)``."""
        if images.dim() != 4:
            raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
        batch = images.float()
        if batch.shape[1] != channels:
            if channels != 1:
                raise ValueError(f"expected images of {channels} channels, got {batch.shape[1]}")
            batch = batch.mean(dim=1, keepdim=True)
        if batch.shape[-2:] != (side, side):
            batch = F.interpolate(batch, size=(side, side), mode="bilinear", antialias=True)
        return batch

    def features(self, images: Tensor) -> Tensor:
        """The penultimate layer: ``(N, 128)`` non-negative activations (after ReLU)."""
        x = self.prepare(images, self.side, self.channels)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return F.relu(self.fc1(x.flatten(1)))

    def classify(self, features: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` from the output of ``features``."""
        return self.fc2(self.dropout(features))  # type: ignore[no-any-return]

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(N, num_classes)``."""
        return self.classify(self.features(images))


def load_classifier(
    device: str | torch.device = "cpu", *, path: Path = WEIGHTS_PATH, sha256: str = WEIGHTS_SHA256
) -> DigitClassifier:
    """The shipped classifier in eval mode on ``device``, after checking the weights file's sha256.

    ``path`` and ``sha256`` are there for ``scripts/train_classifier.py`` and tests; a mismatch, a missing file or
    a file that does not fit the network is a ``FileFormatError`` naming the fix.
    """
    fix = "reinstall gankit, or rerun scripts/train_classifier.py and update WEIGHTS_SHA256"
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise FileFormatError(
            f"cannot read the MNIST classifier weights {path}: {exc.strerror or exc}; {fix}"
        ) from None
    if actual != sha256:
        raise FileFormatError(f"the MNIST classifier weights {path} have sha256 {actual}, expected {sha256}; {fix}")
    model = DigitClassifier()
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            keys = set(handle.keys())
            if keys != set(expected):
                raise FileFormatError(f"{path} does not fit the MNIST classifier (tensors {sorted(keys)}); {fix}")
            state = {key: handle.get_tensor(key) for key in expected}
    except FileFormatError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise failure(path, exc, fix=fix) from None
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape or tensor.dtype != expected[key].dtype:
            raise FileFormatError(f"{path} does not fit the MNIST classifier (tensor '{key}'); {fix}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval().requires_grad_(False)
