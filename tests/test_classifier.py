"""The shipped MNIST classifier: its weights are the pinned ones, it reads digits, and tampering is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from gankit.errors import FileFormatError
from gankit.evaluation import FEATURE_DIM, WEIGHTS_PATH, WEIGHTS_SHA256, DigitClassifier, load_classifier


def test_the_shipped_weights_match_the_pinned_hash() -> None:
    assert hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest() == WEIGHTS_SHA256
    assert WEIGHTS_PATH.stat().st_size < 1_000_000


def test_a_tampered_or_missing_weights_file_is_refused(tmp_path: Path) -> None:
    tampered = tmp_path / "weights.safetensors"
    data = bytearray(WEIGHTS_PATH.read_bytes())
    data[-1] ^= 1
    tampered.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="sha256"):
        load_classifier(path=tampered)
    with pytest.raises(FileFormatError, match="cannot read"):
        load_classifier(path=tmp_path / "missing.safetensors")


def test_a_file_with_the_right_hash_but_the_wrong_tensors_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(other))
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    with pytest.raises(FileFormatError, match="does not fit"):
        load_classifier(path=other, sha256=digest)


def test_loaded_classifier_is_frozen_in_eval_mode() -> None:
    model = load_classifier()
    assert not model.training
    assert not any(parameter.requires_grad for parameter in model.parameters())


def test_any_size_and_channel_count_is_brought_to_28x28() -> None:
    model = DigitClassifier().eval()
    for shape in ((2, 1, 28, 28), (2, 1, 64, 64), (2, 3, 32, 32), (2, 1, 8, 8)):
        images = torch.rand(shape) * 2 - 1
        assert DigitClassifier.prepare(images).shape == (2, 1, 28, 28)
        assert model.features(images).shape == (2, FEATURE_DIM)
        assert model(images).shape == (2, 10)
    with pytest.raises(ValueError, match="N, C, H, W"):
        model(torch.zeros(28, 28))


@pytest.mark.slow
def test_accuracy_on_the_mnist_test_set_is_at_least_99_percent() -> None:
    from gankit.evaluation import mnist_test_reference

    reference = mnist_test_reference()
    assert reference.features.shape == (10_000, FEATURE_DIM)
    accuracy = float((reference.probs.argmax(dim=1) == reference.labels).double().mean())
    assert accuracy >= 0.99, accuracy


@pytest.mark.slow
def test_digits_upsampled_to_64_pixels_are_still_read() -> None:
    from gankit.registry import create_plugin, to_unit_range

    test = create_plugin("dataset", "mnist").load("test")
    images = to_unit_range(test.images[:500], 64)
    with torch.no_grad():
        predicted = load_classifier()(images).argmax(dim=1)
    assert float((predicted == test.labels[:500]).double().mean()) >= 0.97
