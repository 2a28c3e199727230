"""Score a generator against a real dataset (MNIST by default) with every metric of ``gankit.evaluation``.

    scores = evaluate_generator(generator, n=10_000, seed=0)   # {"frechet_distance": ..., "kid": ..., ...}
    floor = reference_metrics(n=10_000, seed=0)                # real training images scored the same way
    evaluate_generator(generator, dataset="folder", dataset_options={"root": "~/pictures"})

Samples are drawn with ``gankit.pictures.sample_images`` (latents from ``seed``), passed through a feature
extractor (``features=``, ``gankit.evaluation``: by default the reference dataset's classifier, the shipped digit
classifier for MNIST), and compared with the extractor's outputs on the reference dataset's test split
(``dataset=`` and ``dataset_options=``, any dataset plugin; the 10,000 MNIST test images by default; a folder's
held-out images). Those real outputs are computed once per process, device, dataset and extractor and kept; nothing
else is global. ``check_reference_fits`` refuses a generator whose images cannot be compared with the reference's.
The same seed gives the same numbers, and nothing touches the global random generators, so evaluating during
training does not change the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import torch
from torch import Tensor

from gankit.errors import ConfigError, GankitError
from gankit.evaluation._features import (
    ClassifierFeatures,
    FeatureExtractor,
    ReferenceData,
    build_features,
)
from gankit.evaluation._metrics import (
    conditional_accuracy,
    feature_statistics,
    frechet_distance_from_statistics,
    kernel_inception_distance,
    knn_radii,
    mnist_score,
    mode_coverage,
    precision_recall,
)
from gankit.interfaces import Generator, ImageData, Split
from gankit.pictures import sample_images
from gankit.registry import load_split, split_name, to_unit_range

if TYPE_CHECKING:
    from typing_extensions import Unpack

METRICS: dict[str, tuple[str, str]] = {
    "frechet_distance": ("lower", "Frechet distance of the features to those of the real test images"),
    "kid": ("lower", "kernel inception distance: unbiased MMD^2, cubic kernel, mean over 100 subsets"),
    "kid_std": ("", "standard deviation of KID over the subsets"),
    "precision": ("higher", "share of samples inside the manifold of real images (k=3)"),
    "recall": ("higher", "share of real images inside the manifold of the samples (k=3)"),
    "mnist_score": ("higher", "exp(E[KL(p(y|x) || p(y))]) with the digit classifier, between 1 and 10"),
    "class_score": ("higher", "exp(E[KL(p(y|x) || p(y))]) with the dataset's classifier, between 1 and its classes"),
    "modes_covered": ("higher", "classes making up at least 1/10 of their fair share of the samples"),
    "mode_kl": ("lower", "KL divergence of the predicted class histogram from uniform, in nats"),
    "class_accuracy": ("higher", "how often the classifier reads the class asked for (conditional only)"),
}
"""Every metric ``evaluate_generator`` may return -> (which direction is better, one-line description). The class
score is ``mnist_score`` with the shipped digit classifier and ``class_score`` with any other dataset's; an extractor
that does not classify (``--features inception``) gives neither, nor the coverage."""

REFERENCE_DATASET = "mnist"
"""The dataset plugin whose test split samples are compared with unless told otherwise (``--reference-dataset``)."""

DEFAULT_FEATURES = "classifier"
"""The feature extractor unless told otherwise (``--features``; ``gankit.evaluation``)."""

BATCH_SIZE = 500
"""Images per batch through the extractor (and the generator) unless told otherwise."""

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3


@dataclass
class Reference:
    """The extractor's outputs on a set of real images: what samples are compared with.

    Precision and recall compare equally many real and generated samples (the k-NN radii depend on the set's
    size), so for ``n`` samples they use ``n`` real images drawn with the evaluation seed; their radii are cached.
    ``probs`` is None for an extractor that does not classify.
    """

    features: Tensor
    probs: Tensor | None
    labels: Tensor
    image_shape: tuple[int, ...] | None = None
    """``(C, H, W)`` of the real images, when known."""
    mean: Tensor = field(init=False, repr=False)
    cov: Tensor = field(init=False, repr=False)
    _manifolds: dict[tuple[int, int], tuple[Tensor, Tensor]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.mean, self.cov = feature_statistics(self.features)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def manifold(self, n: int, *, seed: int) -> tuple[Tensor, Tensor]:
        """``n`` real feature rows (all of them when ``n >= len(self)``) and their k-NN radii, cached."""
        n = min(n, len(self))
        key = (n, seed if n < len(self) else 0)
        if key not in self._manifolds:
            if len(self._manifolds) >= 8:  # a training loop uses one; keep a CLI session from hoarding them
                self._manifolds.clear()
            features = self.features
            if n < len(self):
                picked = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
                features = features[picked.to(features.device)]
            self._manifolds[key] = (features, knn_radii(features, k=PR_NEIGHBOURS))
        return self._manifolds[key]


_CACHE: dict[tuple[str, str, str, str], tuple[FeatureExtractor, Reference]] = {}
"""(device, dataset, its options, extractor) -> (extractor, its outputs on the dataset's test split): the one state
kept between calls."""


def _real_images(dataset: str, split: Split, options: Mapping[str, Any] | None = None) -> ImageData:
    """A split of the dataset plugin ``dataset`` with ``options``, checked against the contract."""
    return load_split(dataset, split, options)


def classify_images(
    images: Tensor, extractor: FeatureExtractor, *, batch_size: int = 500
) -> tuple[Tensor, Tensor | None]:
    """Features ``(N, D)`` and class probabilities ``(N, K)`` (None when the extractor does not classify) of images
    in ``[-1, 1]`` (or uint8), float32.

    Batches are moved to the extractor's device; the results stay there.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    features, probs = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(extractor.device)
            if batch.dtype == torch.uint8:
                batch = to_unit_range(batch)
            batch_features = extractor.features(batch).float()
            features.append(batch_features)
            if extractor.num_classes:
                probs.append(extractor.class_probabilities(batch_features).float())
    return torch.cat(features), (torch.cat(probs) if probs else None)


def _extractor_and_reference(
    device: str | torch.device,
    batch_size: int,
    dataset: str = REFERENCE_DATASET,
    options: Mapping[str, Any] | None = None,
    features: str = DEFAULT_FEATURES,
) -> tuple[FeatureExtractor, Reference]:
    resolved = torch.device(device)
    key = (str(resolved), dataset, json.dumps(dict(options or {}), sort_keys=True, default=str), features)
    if key not in _CACHE:
        test = _real_images(dataset, "test", options)
        reference_data = ReferenceData(
            dataset=dataset, train=lambda: _real_images(dataset, "train", options), test=test, device=resolved
        )
        extractor = build_features(features, reference_data)
        _CACHE[key] = (extractor, _reference(extractor, test.images, test.labels, batch_size=batch_size))
    return _CACHE[key]


def _reference(extractor: FeatureExtractor, images: Tensor, labels: Tensor, *, batch_size: int) -> Reference:
    features, probs = classify_images(images, extractor, batch_size=batch_size)
    if len(features) < PR_NEIGHBOURS + 1:
        raise GankitError(
            f"the reference holds {len(features)} images, too few to compare samples with; it needs "
            f"{PR_NEIGHBOURS + 1} at least (a folder: more images, or a larger holdout)"
        )
    return Reference(features, probs, labels.to(features.device), tuple(images.shape[1:]))


def feature_extractor(
    device: str | torch.device = "cpu",
    *,
    batch_size: int = BATCH_SIZE,
    dataset: str = REFERENCE_DATASET,
    dataset_options: Mapping[str, Any] | None = None,
    features: str = DEFAULT_FEATURES,
) -> FeatureExtractor:
    """The extractor ``features`` for ``dataset`` on ``device``: what its scores are computed with (cached)."""
    return _extractor_and_reference(device, batch_size, dataset, dataset_options, features)[0]


def mnist_test_reference(
    device: str | torch.device = "cpu",
    *,
    batch_size: int = 500,
    dataset: str = REFERENCE_DATASET,
    dataset_options: Mapping[str, Any] | None = None,
    features: str = DEFAULT_FEATURES,
) -> Reference:
    """The extractor's outputs on the test split of ``dataset`` (10,000 MNIST digits by default) on ``device``,
    computed once per process."""
    return _extractor_and_reference(device, batch_size, dataset, dataset_options, features)[1]


def check_reference_fits(
    generator: Generator,
    *,
    dataset: str = REFERENCE_DATASET,
    recorded_dataset: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 500,
    dataset_options: Mapping[str, Any] | None = None,
    features: str = DEFAULT_FEATURES,
) -> None:
    """``ConfigError`` (one line) unless ``generator``'s samples can be compared with ``dataset``'s test images.

    Refused: a generator recorded as trained on another dataset (``recorded_dataset``, from its run or export); a
    channel count other than the reference's; non-square images. Image sides may differ: samples and real images are
    both resized to what the extractor reads.
    """
    force = "; pass --force to score it anyway"
    if recorded_dataset and split_name(recorded_dataset)[1] != split_name(dataset)[1]:
        raise ConfigError(
            f"the generator was trained on dataset '{recorded_dataset}' but would be scored against '{dataset}'; "
            f"pass --reference-dataset {split_name(recorded_dataset)[1]}{force}"
        )
    channels, height, width = generator.image_shape
    if height != width:
        raise ConfigError(
            f"the generator makes non-square images {tuple(generator.image_shape)}; the evaluation "
            f"classifier reads square images{force}"
        )
    reference = mnist_test_reference(
        device, batch_size=batch_size, dataset=dataset, dataset_options=dataset_options, features=features
    )
    reference_shape = reference.image_shape or ()
    if reference_shape and channels != reference_shape[0]:
        raise ConfigError(
            f"the generator makes images of shape {tuple(generator.image_shape)} but the reference dataset "
            f"'{dataset}' holds {tuple(reference_shape)}: {channels} channel(s) against {reference_shape[0]}; score "
            f"it against a dataset like the one it was trained on{force}"
        )


def reference_from_images(
    images: Tensor, labels: Tensor, *, device: str | torch.device = "cpu", batch_size: int = 500
) -> Reference:
    """A ``Reference`` from other real images (uint8 or ``[-1, 1]``, at least 4), to pass as ``reference=`` with the
    default (MNIST) extractor."""
    if images.dim() != 4 or images.shape[0] < PR_NEIGHBOURS + 1 or labels.shape != (images.shape[0],):
        raise ValueError(f"need (N, C, H, W) images with N >= {PR_NEIGHBOURS + 1} and N labels")
    extractor = _extractor_and_reference(device, batch_size)[0]
    return _reference(extractor, images, labels, batch_size=batch_size)


class Scoring(TypedDict, total=False):
    """How images are scored: the keywords of ``evaluate_images`` that ``evaluate_generator`` and
    ``reference_metrics`` pass on (defaults there)."""

    batch_size: int
    device: str | torch.device
    reference: Reference | None
    dataset: str
    dataset_options: Mapping[str, Any] | None
    features: str


def evaluate_images(
    images: Tensor,
    *,
    labels: Tensor | None = None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    device: str | torch.device = "cpu",
    reference: Reference | None = None,
    dataset: str = REFERENCE_DATASET,
    dataset_options: Mapping[str, Any] | None = None,
    features: str = DEFAULT_FEATURES,
) -> dict[str, float]:
    """Every metric of ``METRICS`` the extractor allows for ``(N, C, H, W)`` images in ``[-1, 1]`` or uint8 (any
    side, N >= 4).

    ``labels`` are the classes the images were meant to show (adds ``class_accuracy``). ``reference`` defaults to
    the test split of ``dataset`` with ``dataset_options`` (MNIST's); ``features`` names the extractor; ``seed``
    picks the KID subsets and the real images precision and recall compare with.
    """
    if images.dim() != 4 or images.shape[0] < PR_NEIGHBOURS + 1:
        raise ValueError(f"need at least {PR_NEIGHBOURS + 1} images (N, C, H, W), got shape {tuple(images.shape)}")
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise GankitError("the images to score contain NaN or infinite values: the generator has diverged")
    extractor, test_reference = _extractor_and_reference(device, batch_size, dataset, dataset_options, features)
    if reference is None:
        reference = test_reference
    found, probs = classify_images(images, extractor, batch_size=batch_size)
    n = found.shape[0]

    kid, kid_std = kernel_inception_distance(
        found,
        reference.features,
        subsets=KID_SUBSETS,
        subset_size=KID_SUBSET_SIZE,
        generator=torch.Generator().manual_seed(seed),
    )
    real, real_radii = reference.manifold(n, seed=seed)
    precision, recall = precision_recall(real, found, k=PR_NEIGHBOURS, real_radii=real_radii)
    scores = {
        "frechet_distance": frechet_distance_from_statistics(*feature_statistics(found), reference.mean, reference.cov),
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
    }
    if probs is not None:
        covered, kl = mode_coverage(probs)
        shipped = isinstance(extractor, ClassifierFeatures) and extractor.shipped
        scores["mnist_score" if shipped else "class_score"] = mnist_score(probs)
        scores["modes_covered"] = float(covered)
        scores["mode_kl"] = kl
        if labels is not None:
            scores["class_accuracy"] = conditional_accuracy(probs, labels)
    return scores


def evaluate_generator(
    generator: Generator, *, n: int = 10_000, seed: int = 0, **scoring: Unpack[Scoring]
) -> dict[str, float]:
    """Draw ``n`` samples from ``generator`` with latents from ``seed`` and score them (see ``METRICS``) against
    ``dataset``'s test split (see ``check_reference_fits`` for what fits). ``scoring`` is ``evaluate_images``'s
    ``batch_size`` (also the generator's), ``device``, ``reference``, ``dataset``, ``dataset_options`` and
    ``features``.

    The generator runs where it is and is left in the mode it was in; ``device`` is where the extractor and the
    statistics run. A conditional generator with as many classes as the extractor is asked for each class in turn
    and also gets ``class_accuracy``. For n = 10,000 on a busy 2-core CPU the classifier and the metrics take about
    20 s on top of drawing the samples; the first call of a process adds about 10 s for the test set's features (and,
    for a dataset other than MNIST, the first call ever trains its classifier, once).
    """
    extractor = feature_extractor(
        scoring.get("device", "cpu"),
        batch_size=scoring.get("batch_size", BATCH_SIZE),
        dataset=scoring.get("dataset", REFERENCE_DATASET),
        dataset_options=scoring.get("dataset_options"),
        features=scoring.get("features", DEFAULT_FEATURES),
    )
    labels = None  # other conditional generators get their classes in turn, but those are not classes to check
    if generator.num_classes and generator.num_classes == extractor.num_classes:
        labels = torch.arange(n, dtype=torch.int64) % generator.num_classes
    images = sample_images(generator, n, seed=seed, labels=labels, batch_size=scoring.get("batch_size", BATCH_SIZE))
    return evaluate_images(images, labels=labels, seed=seed, **scoring)


def reference_metrics(*, n: int = 10_000, seed: int = 0, **scoring: Unpack[Scoring]) -> dict[str, float]:
    """The floor: ``n`` training images of ``dataset`` (MNIST) drawn with ``seed`` scored as if they were samples.

    What a perfect generator of the dataset would get; ``class_accuracy`` is the classifier's accuracy on them.
    ``scoring`` is ``evaluate_images``'s ``batch_size``, ``device``, ``reference``, ``dataset``, ``dataset_options``
    and ``features``. For a dataset whose classifier was trained on these very images, it is its training accuracy.
    """
    train = _real_images(scoring.get("dataset", REFERENCE_DATASET), "train", scoring.get("dataset_options"))
    n = min(n, len(train.images))
    if n < PR_NEIGHBOURS + 1:
        raise ValueError(f"n must be at least {PR_NEIGHBOURS + 1}, got {n}")
    picked = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(seed))[:n]
    return evaluate_images(train.images[picked], labels=train.labels[picked], seed=seed, **scoring)
