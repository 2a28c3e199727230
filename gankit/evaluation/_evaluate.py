"""Score a generator against a real dataset (MNIST by default) with every metric of ``gankit.evaluation``.

    pass  # merged
    scores = evaluate_generator(generator, n=10_000, seed=0)   # {"frechet_distance": ..., "kid": ..., ...}
    floor = reference_metrics(n=10_000, seed=0)                # real training images scored the same way

Samples are drawn with ``gankit.pictures.sample_images`` (latents from ``seed``), passed through the shipped digit
classifier, and compared with the classifier's outputs on the reference dataset's test split (``dataset=``, any
dataset plugin; the 10,000 MNIST test images by default). Those real outputs are computed once per process, device
and dataset and kept (``mnist_test_reference``); nothing else is global. ``check_reference_fits`` refuses a
generator whose images cannot be compared with the reference's. The same seed
gives the same numbers, and nothing touches the global random generators, so evaluating during training does not
change the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

import torch
from torch import Tensor

from gankit.errors import ConfigError, GankitError
from gankit.evaluation._classifier import NUM_CLASSES, DigitClassifier, load_classifier
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
    "frechet_distance": ("lower", "Frechet distance of the classifier features to those of the real test images"),
    "kid": ("lower", "kernel inception distance: unbiased MMD^2, cubic kernel, mean over 100 subsets"),
    "kid_std": ("", "standard deviation of KID over the subsets"),
    "precision": ("higher", "share of samples inside the manifold of real images (k=3)"),
    "recall": ("higher", "share of real images inside the manifold of the samples (k=3)"),
    "mnist_score": ("higher", "exp(E[KL(p(y|x) || p(y))]), between 1 and 10"),
    "modes_covered": ("higher", "digits making up at least 1% of the samples (of 10)"),
    "mode_kl": ("lower", "KL divergence of the predicted digit histogram from uniform, in nats"),
    "class_accuracy": ("higher", "how often the classifier reads the digit asked for (conditional only)"),
}
"""Every metric ``evaluate_generator`` may return -> (which direction is better, one-line description)."""

REFERENCE_DATASET = "mnist"
"""The dataset plugin whose test split samples are compared with unless told otherwise (``--reference-dataset``)."""

BATCH_SIZE = 500
"""Images per batch through the classifier (and the generator) unless told otherwise."""

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3


@dataclass
class Reference:
    """The classifier's outputs on a set of real images: what samples are compared with.

    Precision and recall compare equally many real and generated samples (the k-NN radii depend on the set's
    size), so for ``n`` samples they use ``n`` real images drawn with the evaluation seed; their radii are cached.
    """

    features: Tensor
    probs: Tensor
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


_CACHE: dict[tuple[str, str], tuple[DigitClassifier, Reference]] = {}
"""(device, dataset) -> (classifier, its outputs on the dataset's test split): the one state kept between calls."""


def _real_images(dataset: str, split: Split) -> ImageData:
    """A split of the dataset plugin ``dataset``, checked against the contract."""
    return load_split(dataset, split)


def classify_images(images: Tensor, classifier: DigitClassifier, *, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """Features ``(N, 128)`` and class probabilities ``(N, 10)`` of images in ``[-1, 1]`` (or uint8), float32.

    Batches are moved to the classifier's device; the results stay there.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(classifier.parameters()).device
    features, probs = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device)
            if batch.dtype == torch.uint8:
                batch = to_unit_range(batch)
            batch_features = classifier.features(batch)
            features.append(batch_features)
            probs.append(classifier.classify(batch_features).softmax(dim=1))
    return torch.cat(features), torch.cat(probs)


def _classifier_and_reference(
    device: str | torch.device, batch_size: int, dataset: str = REFERENCE_DATASET
) -> tuple[DigitClassifier, Reference]:
    key = (str(torch.device(device)), dataset)
    if key not in _CACHE:
        classifier = load_classifier(device)
        test = _real_images(dataset, "test")
        _CACHE[key] = (classifier, _reference(classifier, test.images, test.labels, batch_size=batch_size))
    return _CACHE[key]


def _reference(classifier: DigitClassifier, images: Tensor, labels: Tensor, *, batch_size: int) -> Reference:
    features, probs = classify_images(images, classifier, batch_size=batch_size)
    return Reference(features, probs, labels.to(features.device), tuple(images.shape[1:]))


def mnist_test_reference(
    device: str | torch.device = "cpu", *, batch_size: int = 500, dataset: str = REFERENCE_DATASET
) -> Reference:
    """The classifier's outputs on the test split of ``dataset`` (10,000 MNIST digits by default) on ``device``,
    computed once per process."""
    return _classifier_and_reference(device, batch_size, dataset)[1]


def check_reference_fits(
    generator: Generator,
    *,
    dataset: str = REFERENCE_DATASET,
    recorded_dataset: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 500,
) -> None:
    """``ConfigError`` (one line) unless ``generator``'s samples can be compared with ``dataset``'s test images.

    Refused: a generator recorded as trained on another dataset (``recorded_dataset``, from its run or export); a
    channel count other than the reference's; non-square images; and a reference that is not single-channel, since
    the shipped classifier reads digits. Image sides may differ: samples and real images are both resized to 28x28.
    """
    force = "; pass --force to score it anyway"
    if recorded_dataset and split_name(recorded_dataset)[1] != split_name(dataset)[1]:
        raise ConfigError(
            f"the generator was trained on dataset '{recorded_dataset}' but would be scored against '{dataset}'; "
            f"pass --reference-dataset {split_name(recorded_dataset)[1]}{force}"
        )
    reference_shape = mnist_test_reference(device, batch_size=batch_size, dataset=dataset).image_shape or ()
    channels, height, width = generator.image_shape
    if reference_shape and channels != reference_shape[0]:
        raise ConfigError(
            f"the generator makes images of shape {tuple(generator.image_shape)} but the reference dataset "
            f"'{dataset}' holds {tuple(reference_shape)}: {channels} channel(s) against {reference_shape[0]}; score "
            f"it against a dataset like the one it was trained on{force}"
        )
    if height != width:
        raise ConfigError(
            f"the generator makes non-square images {tuple(generator.image_shape)}; the evaluation "
            f"classifier reads square 28x28 digits{force}"
        )
    if reference_shape and reference_shape[0] != 1:
        raise ConfigError(
            f"the reference dataset '{dataset}' has {reference_shape[0]} channels, but gankit's evaluation "
            f"classifier is an MNIST digit classifier for 1-channel images{force}"
        )


def reference_from_images(
    images: Tensor, labels: Tensor, *, device: str | torch.device = "cpu", batch_size: int = 500
) -> Reference:
    """A ``Reference`` from other real images (uint8 or ``[-1, 1]``, at least 4), to pass as ``reference=``."""
    if images.dim() != 4 or images.shape[0] < PR_NEIGHBOURS + 1 or labels.shape != (images.shape[0],):
        raise ValueError(f"need (N, C, H, W) images with N >= {PR_NEIGHBOURS + 1} and N labels")
    classifier = _classifier_and_reference(device, batch_size)[0]
    return _reference(classifier, images, labels, batch_size=batch_size)


class Scoring(TypedDict, total=False):
    """How images are scored: the keywords of ``evaluate_images`` that ``evaluate_generator`` and
    ``reference_metrics`` pass on (defaults there)."""

    batch_size: int
    device: str | torch.device
    reference: Reference | None
    dataset: str


def evaluate_images(
    images: Tensor,
    *,
    labels: Tensor | None = None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    device: str | torch.device = "cpu",
    reference: Reference | None = None,
    dataset: str = REFERENCE_DATASET,
) -> dict[str, float]:
    """Every metric of ``METRICS`` for ``(N, C, H, W)`` images in ``[-1, 1]`` or uint8 (any side, N >= 4).

    ``labels`` are the digits the images were meant to show (adds ``class_accuracy``). ``reference`` defaults to
    the test split of ``dataset`` (MNIST); ``seed`` picks the KID subsets and the real images precision and recall
    compare with.
    """
    if images.dim() != 4 or images.shape[0] < PR_NEIGHBOURS + 1:
        raise ValueError(f"need at least {PR_NEIGHBOURS + 1} images (N, C, H, W), got shape {tuple(images.shape)}")
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise GankitError("the images to score contain NaN or infinite values: the generator has diverged")
    classifier, test_reference = _classifier_and_reference(device, batch_size, dataset)
    if reference is None:
        reference = test_reference
    features, probs = classify_images(images, classifier, batch_size=batch_size)
    n = features.shape[0]

    kid, kid_std = kernel_inception_distance(
        features,
        reference.features,
        subsets=KID_SUBSETS,
        subset_size=KID_SUBSET_SIZE,
        generator=torch.Generator().manual_seed(seed),
    )
    real, real_radii = reference.manifold(n, seed=seed)
    precision, recall = precision_recall(real, features, k=PR_NEIGHBOURS, real_radii=real_radii)
    covered, kl = mode_coverage(probs)
    scores = {
        "frechet_distance": frechet_distance_from_statistics(
            *feature_statistics(features), reference.mean, reference.cov
        ),
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "mnist_score": mnist_score(probs),
        "modes_covered": float(covered),
        "mode_kl": kl,
    }
    if labels is not None:
        scores["class_accuracy"] = conditional_accuracy(probs, labels)
    return scores


def evaluate_generator(
    generator: Generator, *, n: int = 10_000, seed: int = 0, **scoring: Unpack[Scoring]
) -> dict[str, float]:
    """Draw ``n`` samples from ``generator`` with latents from ``seed`` and score them (see ``METRICS``) against
    ``dataset``'s test split (see ``check_reference_fits`` for what fits). ``scoring`` is ``evaluate_images``'s
    ``batch_size`` (also the generator's), ``device``, ``reference`` and ``dataset``.

    The generator runs where it is and is left in the mode it was in; ``device`` is where the classifier and
    the statistics run. A conditional generator over 10 classes is asked for each digit in turn and also gets
    ``class_accuracy``. For n = 10,000 on a busy 2-core CPU the classifier and the metrics take about 20 s on top
    of drawing the samples; the first call of a process adds about 10 s for the test set's features.
    """
    labels = None  # other conditional generators get their classes in turn, but those are not digits to check
    if generator.num_classes == NUM_CLASSES:
        labels = torch.arange(n, dtype=torch.int64) % NUM_CLASSES
    images = sample_images(generator, n, seed=seed, labels=labels, batch_size=scoring.get("batch_size", BATCH_SIZE))
    return evaluate_images(images, labels=labels, seed=seed, **scoring)


def reference_metrics(*, n: int = 10_000, seed: int = 0, **scoring: Unpack[Scoring]) -> dict[str, float]:
    """The floor: ``n`` training images of ``dataset`` (MNIST) drawn with ``seed`` scored as if they were samples.

    What a perfect generator of MNIST digits would get; ``class_accuracy`` is the classifier's accuracy on them.
    ``scoring`` is ``evaluate_images``'s ``batch_size``, ``device``, ``reference`` and ``dataset``.
    """
    train = _real_images(scoring.get("dataset", REFERENCE_DATASET), "train")
    if not 0 < n <= len(train.images):
        raise ValueError(f"n must be in [1, {len(train.images)}], got {n}")
    picked = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(seed))[:n]
    return evaluate_images(train.images[picked], labels=train.labels[picked], seed=seed, **scoring)
