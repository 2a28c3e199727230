"""A classifier for any labelled dataset, trained once on its own training split and cached by the data's content.

The shipped MNIST classifier reads digits; scores of clothes, faces or your own folder need a network that knows
those classes. ``dataset_classifier`` trains one of the same design (``DigitClassifier`` at the data's channels,
side and classes) with the recipe that made the shipped one (``scripts/train_classifier.py`` calls
``train_classifier`` too: Adam 2e-3 with a cosine decay, batch 128, seed 0), for at least as many steps as 3 MNIST
epochs (``MIN_STEPS``) and between 3 and 30 epochs. The weights are cached in gankit's cache folder
(``classifiers/<sha256>.safetensors``), keyed by the SHA-256 of the training images, labels and recipe: the same data
gets the same network on every later call, whatever the dataset's name or path; changed data gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save

from gankit.errors import DataError
from gankit.evaluation._classifier import DigitClassifier
from gankit.files import atomic_write_bytes, cache_dir, one_line
from gankit.interfaces import ImageData
from gankit.registry import to_unit_range

log = logging.getLogger(__name__)

FORMAT = "gankit.dataset-classifier/1"
MIN_STEPS = 1400
"""Optimizer steps at least (3 epochs of the 60,000 MNIST digits at batch 128 are 1,404), within 3 to 30 epochs."""
MAX_SIDE = 64
"""The classifier reads images at the data's side, at most this: the built-in generators go to 64."""


@dataclass(frozen=True)
class Recipe:
    """How a classifier is trained: the shipped MNIST classifier's recipe by default."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


def recipe_for(count: int) -> Recipe:
    """The recipe for ``count`` training images: enough epochs for ``MIN_STEPS`` steps, 3 at least, 30 at most."""
    batch_size = max(1, min(Recipe.batch_size, count))
    steps_per_epoch = max(1, count // batch_size)
    return Recipe(epochs=max(3, min(30, math.ceil(MIN_STEPS / steps_per_epoch))), batch_size=batch_size)


def train_classifier(
    data: ImageData, *, recipe: Recipe = Recipe(), side: int | None = None, report: bool = False
) -> DigitClassifier:
    """A ``DigitClassifier`` for ``data``'s channels and classes, trained on ``data`` by ``recipe``, in eval mode.

    Deterministic for the same data, recipe and torch version on one kind of CPU; the global random generators are
    left as they were. ``side`` defaults to the data's (at most ``MAX_SIDE``); ``report`` prints each epoch's loss.
    """
    count, channels = len(data.images), int(data.images.shape[1])
    side = side or min(int(data.images.shape[-1]), MAX_SIDE)
    steps_per_epoch = count // recipe.batch_size
    if steps_per_epoch < 1 or data.num_classes < 2:
        raise DataError(f"a classifier needs labelled images of at least 2 classes and {recipe.batch_size} images")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = DigitClassifier(channels=channels, side=side, num_classes=data.num_classes)
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs * steps_per_epoch)
        order_rng = torch.Generator().manual_seed(recipe.seed)
        for epoch in range(recipe.epochs):
            model.train()
            started = time.perf_counter()
            order = torch.randperm(count, generator=order_rng)
            total = 0.0
            for step in range(steps_per_epoch):
                picked = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
                loss = F.cross_entropy(model(to_unit_range(data.images[picked])), data.labels[picked])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                schedule.step()
                total += float(loss.detach())
            if report:
                print(
                    f"epoch {epoch + 1}/{recipe.epochs}: mean training loss {total / steps_per_epoch:.4f} "
                    f"({time.perf_counter() - started:.0f} s)"
                )
    return model.eval().requires_grad_(False)


def accuracy(model: DigitClassifier, data: ImageData, *, batch_size: int = 1000) -> float:
    """The share of ``data``'s images ``model`` classifies as labelled."""
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data.images), batch_size):
            logits = model(to_unit_range(data.images[start : start + batch_size]))
            correct += int((logits.argmax(1) == data.labels[start : start + batch_size]).sum())
    return correct / max(len(data.images), 1)


def data_key(data: ImageData, recipe: Recipe, side: int) -> str:
    """The SHA-256 of the training images, their labels, the classes and the recipe: the cache key."""
    digest = hashlib.sha256(
        json.dumps({"format": FORMAT, "recipe": vars(recipe), "side": side, "classes": data.num_classes}).encode()
    )
    digest.update(str(tuple(data.images.shape)).encode())
    digest.update(data.images.contiguous().numpy().tobytes())
    digest.update(data.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class TrainedClassifier:
    """A dataset's classifier and what is known of it: the cache file and its accuracy on the held-out images."""

    model: DigitClassifier
    path: Path
    test_accuracy: float | None


def dataset_classifier(train: ImageData, test: ImageData | None, *, what: str) -> TrainedClassifier:
    """The classifier of the data ``train`` (``what`` names it in messages), from the cache or trained now and cached.

    ``test`` (held-out images of the same classes) measures its accuracy once, recorded with the weights.
    """
    recipe = recipe_for(len(train.images))
    side = min(int(train.images.shape[-1]), MAX_SIDE)
    key = data_key(train, recipe, side)
    path = cache_dir() / "classifiers" / f"{key}.safetensors"
    channels = int(train.images.shape[1])
    found = _read(path, channels=channels, side=side, classes=train.num_classes)
    if found is not None:
        return found
    log.info(
        "Training a classifier on the %d training images of %s for its scores, once (%d epochs; cached in %s)",
        len(train.images),
        what,
        recipe.epochs,
        path.parent,
    )
    started = time.perf_counter()
    model = train_classifier(train, recipe=recipe, side=side)
    test_accuracy = accuracy(model, test) if test is not None and len(test.images) else None
    metadata = {"format": FORMAT, "test_accuracy": json.dumps(test_accuracy), "what": what[:200]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save({k: v.contiguous() for k, v in model.state_dict().items()}, metadata=metadata))
    except OSError as exc:
        log.warning("warning: could not cache the classifier in %s (%s); the next evaluation trains it anew", path, exc)
    shown = f"; {test_accuracy:.1%} right on the held-out images" if test_accuracy is not None else ""
    log.info("Trained the classifier of %s in %.0f s%s", what, time.perf_counter() - started, shown)
    return TrainedClassifier(model, path, test_accuracy)


def _read(path: Path, *, channels: int, side: int, classes: int) -> TrainedClassifier | None:
    """The cached classifier at ``path``, or None when absent or unusable (then it is trained again)."""
    if not path.is_file():
        return None
    model = DigitClassifier(channels=channels, side=side, num_classes=classes)
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT or set(handle.keys()) != set(expected):
                return None
            state = {key: handle.get_tensor(key) for key in expected}
        test_accuracy = json.loads(metadata.get("test_accuracy", "null"))
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # safetensors' own errors, a shape that does not fit: a cache is only ever rebuilt
        log.warning("warning: the cached classifier %s is damaged (%s); training it again", path, one_line(exc))
        return None
    accuracy_found = float(test_accuracy) if isinstance(test_accuracy, (int, float)) else None
    return TrainedClassifier(model.eval().requires_grad_(False), path, accuracy_found)
