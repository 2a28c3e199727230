"""What the metrics are computed on: a feature extractor, chosen by name (``gankit eval --features NAME``).

Every score of ``gankit.evaluation`` compares two sets of feature vectors (and, where the extractor classifies, two
sets of class probabilities). The extractor is a choice:

- ``classifier`` (the default): a small classifier of the reference data's own classes. For MNIST, the shipped,
  hash-checked digit classifier; for any other labelled dataset (Fashion-MNIST, your folder), one trained once on
  its training split and cached by the data's content (``gankit.evaluation``). It has no answer for unlabelled
  data: nothing tells it what to tell apart.
- ``inception``: the standard FID's network, InceptionV3's 2048-d pool features, through torch-fidelity
  (``pip install torch-fidelity``), with its weights from ``$GANKIT_INCEPTION_WEIGHTS`` when that names a file,
  else as torch-fidelity fetches them. Scores are then comparable with published FIDs; there are no class scores.
- anything registered with ``register_features``: a ``FeatureExtractor`` built from the reference dataset.

``FeatureExtractor`` is the whole contract: ``features`` maps images in ``[-1, 1]`` to ``(N, D)`` vectors, and
``class_probabilities`` maps those to ``(N, K)`` probabilities when the extractor classifies (``num_classes > 0``).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gankit.errors import ConfigError, DataError
from gankit.evaluation._classifier import DigitClassifier, load_classifier
from gankit.evaluation._trained import dataset_classifier
from gankit.interfaces import ImageData

SHIPPED_CLASSIFIER_DATASET = "mnist"
"""The dataset whose classifier ships with gankit; any other labelled dataset gets one trained on it."""


class FeatureExtractor(abc.ABC):
    """Maps images to feature vectors (and, when it classifies, to class probabilities) for the metrics.

    ``name`` says which network in reports (``eval.json`` records it); ``num_classes`` is 0 for an extractor that
    does not classify, which leaves out the class scores. ``device`` is where it runs: batches are moved there.
    """

    name: str
    num_classes: int = 0
    device: torch.device = torch.device("cpu")
    notes: dict[str, Any] = {}  # noqa: RUF012  (read-only: what reports may add about the extractor)

    @abc.abstractmethod
    def features(self, images: Tensor) -> Tensor:
        """``(N, D)`` float features of ``(N, C, H, W)`` images in ``[-1, 1]``, on ``device``."""

    def class_probabilities(self, features: Tensor) -> Tensor:
        """``(N, num_classes)`` probabilities from ``features``; only called when ``num_classes > 0``."""
        raise NotImplementedError


class ClassifierFeatures(FeatureExtractor):
    """A ``DigitClassifier``: its 128 penultimate activations, and its softmax."""

    def __init__(self, classifier: DigitClassifier, *, name: str, notes: dict[str, Any] | None = None) -> None:
        self.classifier = classifier
        self.name = name
        self.num_classes = classifier.num_classes
        self.device = next(classifier.parameters()).device
        self.notes = dict(notes or {})

    @property
    def shipped(self) -> bool:
        """Whether this is gankit's MNIST digit classifier (its class score is the MNIST score)."""
        return self.name == "mnist-classifier"

    def features(self, images: Tensor) -> Tensor:
        return self.classifier.features(images)

    def class_probabilities(self, features: Tensor) -> Tensor:
        return self.classifier.classify(features).softmax(dim=1)


class InceptionFeatures(FeatureExtractor):
    """A network of the standard FID's interface: uint8 RGB images ``(N, 3, H, W)`` in, ``(N, 2048)`` out (or a tuple
    whose first item is that, as torch-fidelity's ``FeatureExtractorInceptionV3`` returns); it resizes itself.

    Grayscale images are given as three equal channels, and ``[-1, 1]`` pixels are quantised to uint8 first, as
    the reference images' are, so both sides go through the same rounding.
    """

    def __init__(self, network: Callable[[Tensor], Any], *, name: str, device: torch.device) -> None:
        self.network = network
        self.name = name
        self.device = device

    def features(self, images: Tensor) -> Tensor:
        pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        elif pixels.shape[1] != 3:
            raise ConfigError(f"the inception features read 1- or 3-channel images, not {pixels.shape[1]} channels")
        found = self.network(pixels.to(self.device))
        if isinstance(found, (tuple, list)):
            found = found[0]
        return found.float().flatten(1)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ReferenceData:
    """What an extractor may be built from: the reference dataset's name, its training split (for an extractor that
    learns from it) and its held-out test split, and where to run."""

    dataset: str
    train: Callable[[], ImageData]
    test: ImageData | None
    device: torch.device


FeatureFactory = Callable[[ReferenceData], FeatureExtractor]


def _classifier(reference: ReferenceData) -> FeatureExtractor:
    """The shipped classifier for MNIST; for other labelled data, its own classifier (trained once, cached)."""
    if reference.dataset.rpartition(":")[2] == SHIPPED_CLASSIFIER_DATASET:
        return ClassifierFeatures(load_classifier(reference.device), name="mnist-classifier")
    train = reference.train()
    if train.num_classes < 2:
        raise DataError(
            f"dataset '{reference.dataset}' is unlabelled, so gankit cannot train a classifier of its classes: no "
            "Frechet distance, KID or precision/recall on its features, and no class score or coverage. Label it "
            "(for a folder: one subfolder per class), or score with --features inception (pip install "
            "torch-fidelity): FD, KID and precision/recall on InceptionV3 features, still without class scores"
        )
    trained = dataset_classifier(train, reference.test, what=f"dataset '{reference.dataset}'")
    notes = {"classifier_file": str(trained.path), "classifier_test_accuracy": trained.test_accuracy}
    model = trained.model.to(reference.device)
    return ClassifierFeatures(model, name=f"classifier of {reference.dataset} ({trained.path.stem[:12]})", notes=notes)


INCEPTION_WEIGHTS_ENV = "GANKIT_INCEPTION_WEIGHTS"
"""Names a local file of torch-fidelity's InceptionV3 weights (``weights-inception-2015-12-05-6726825d.pth``)."""


def _inception(reference: ReferenceData) -> FeatureExtractor:
    """InceptionV3's pool features through torch-fidelity: the standard FID's network."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise ConfigError(
            "--features inception needs torch-fidelity: pip install torch-fidelity (its InceptionV3 weights come "
            f"from ${INCEPTION_WEIGHTS_ENV}, a local file, or are fetched once by torch-fidelity)"
        ) from None
    weights = os.environ.get(INCEPTION_WEIGHTS_ENV)
    if weights and not Path(weights).is_file():
        raise ConfigError(f"${INCEPTION_WEIGHTS_ENV} names {weights}, which is not a file")
    network: nn.Module = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=weights or None
    )
    network = network.to(reference.device).eval().requires_grad_(False)
    return InceptionFeatures(network, name="inception-v3 (torch-fidelity)", device=reference.device)


FEATURES: dict[str, FeatureFactory] = {"classifier": _classifier, "inception": _inception}
"""Feature extractors by name: what ``gankit eval --features`` chooses from."""


def register_features(name: str, factory: FeatureFactory) -> None:
    """Make ``factory`` (``ReferenceData`` -> ``FeatureExtractor``) available as ``--features NAME``; replaces one of
    that name (so a test or a notebook can swap in its own network)."""
    FEATURES[name] = factory


def feature_names() -> list[str]:
    """The names ``--features`` accepts."""
    return list(FEATURES)


def build_features(name: str, reference: ReferenceData) -> FeatureExtractor:
    """The extractor ``name`` for ``reference``; ``ConfigError`` naming the choices for an unknown one."""
    if name not in FEATURES:
        raise ConfigError(f"unknown feature extractor '{name}'; choose one of {', '.join(FEATURES)}")
    return FEATURES[name](reference)
