"""Sample-quality metrics as pure functions of feature and probability tensors.

Statistics are computed in float64 on the device the inputs are on; the large matrix products of KID and of the
k-nearest-neighbour searches run in float32, which halves their time on a CPU. Features are ``(N, D)`` tensors (the
classifier's penultimate layer), probabilities ``(N, K)`` tensors whose rows sum to one.

- ``frechet_distance``: the Frechet distance between Gaussians fitted to two feature sets (FID's formula).
- ``kernel_inception_distance``: KID, the unbiased MMD^2 with the cubic polynomial kernel, over random subsets.
- ``precision_recall``: Kynkaanniemi et al. (2019), "Improved Precision and Recall Metric for Assessing Generative
  Models": each set's manifold is the union of balls reaching every sample's k-th nearest neighbour.
- ``mnist_score``: TF-GAN's ``mnist_score``, the Inception score computed with an MNIST classifier.
- ``mode_coverage``: how many classes the samples contain at a meaningful rate, and how far the class histogram is
  from uniform.
- ``conditional_accuracy``: how often the classifier agrees with the label a conditional generator was given.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_MIN_FRACTION = 0.1
"""A class counts as covered when its share of the samples is at least this fraction of the uniform share (10%
of 1/10 = 1% of the samples for MNIST): real MNIST covers all ten, a collapsed generator's stray misclassified
samples do not."""


def _features(features: Tensor, name: str, *, minimum: int = 2) -> Tensor:
    if features.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) tensor, got shape {tuple(features.shape)}")
    if features.shape[0] < minimum:
        raise ValueError(f"{name} needs at least {minimum} rows, got {features.shape[0]}")
    return features.to(torch.float64)


def _same_width(a: Tensor, b: Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets differ in width: {a.shape[1]} and {b.shape[1]}")


# -- Frechet distance --------------------------------------------------------------------------------------------------


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``(N, D)`` features, in float64."""
    x = _features(features, "features")
    mean = x.mean(dim=0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix, through its eigendecomposition."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    root: Tensor = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
    return root


def frechet_distance_from_statistics(mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor) -> float:
    """``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` for two Gaussians given by mean and covariance.

    ``Tr((S_a S_b)^(1/2))`` is computed as the sum of the square roots of the eigenvalues of the symmetric matrix
    ``S_a^(1/2) S_b S_a^(1/2)``, which has the eigenvalues of ``S_a S_b``; unlike scipy's ``sqrtm`` of the
    non-symmetric product this never produces complex parts or NaN for singular covariances. Tiny negative
    results of rounding are clipped to 0.
    """
    mean_a, mean_b = mean_a.to(torch.float64), mean_b.to(torch.float64)
    cov_a, cov_b = cov_a.to(torch.float64), cov_b.to(torch.float64)
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return max(float(distance), 0.0)


def frechet_distance(feats_a: Tensor, feats_b: Tensor) -> float:
    """The Frechet distance between Gaussians fitted to two ``(N, D)`` feature sets (FID's formula)."""
    _same_width(feats_a, feats_b)
    return frechet_distance_from_statistics(*feature_statistics(feats_a), *feature_statistics(feats_b))


# -- KID ---------------------------------------------------------------------------------------------------------------


def _cubic_kernel_sums(x: Tensor, y: Tensor) -> Tensor:
    """``sum_ij (x_i.y_j / D + 1)^3`` for each of a batch of subsets ``(S, m, D)``, as float64 ``(S,)``.

    The products run in float32, the sums in float64.
    """
    kernel = torch.bmm(x, y.transpose(1, 2))
    kernel.mul_(1.0 / x.shape[2]).add_(1.0).pow_(3)
    return kernel.sum(dim=(1, 2), dtype=torch.float64)


def _cubic_kernel_diagonal(x: Tensor) -> Tensor:
    return ((x.double().square().sum(dim=2) / x.shape[2] + 1) ** 3).sum(dim=1)


_KERNEL_CHUNK = 1 << 24
"""At most this many kernel values are held at once (64 MB of float32): subsets are batched up to it."""


def kernel_inception_distance(
    feats_a: Tensor,
    feats_b: Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """KID: mean and standard deviation over ``subsets`` random subsets of the unbiased MMD^2 estimate.

    The kernel is ``k(x, y) = (x.y / D + 1)^3`` (Binkowski et al. 2018). Each subset draws
    ``min(subset_size, N_a, N_b)`` rows of each set without replacement with ``generator`` (a CPU generator; the
    global one when None). The estimate is unbiased, so it can be slightly negative for sets from one distribution.
    The standard deviation is that of the subset estimates (0 for a single subset). The kernel matrices are
    computed in float32 (twice as fast on a CPU), several subsets at a time, and summed in float64.
    """
    a, b = _features(feats_a, "feats_a").to(torch.float32), _features(feats_b, "feats_b").to(torch.float32)
    _same_width(a, b)
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    picks = [
        (torch.randperm(a.shape[0], generator=generator)[:m], torch.randperm(b.shape[0], generator=generator)[:m])
        for _ in range(subsets)
    ]
    chunk = max(1, _KERNEL_CHUNK // (m * m))
    estimates = []
    for start in range(0, subsets, chunk):
        rows_a = torch.stack([pick[0] for pick in picks[start : start + chunk]]).to(a.device)
        rows_b = torch.stack([pick[1] for pick in picks[start : start + chunk]]).to(b.device)
        x, y = a[rows_a], b[rows_b]  # (S, m, D)
        within = _cubic_kernel_sums(x, x) + _cubic_kernel_sums(y, y)
        within -= _cubic_kernel_diagonal(x) + _cubic_kernel_diagonal(y)
        estimates.append(within / (m * (m - 1)) - 2 * _cubic_kernel_sums(x, y) / (m * m))
    values = torch.cat(estimates)
    std = float(values.std()) if subsets > 1 else 0.0
    return float(values.mean()), std


# -- precision and recall --------------------------------------------------------------------------------------------


def _points(features: Tensor, name: str, *, k: int) -> Tensor:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return _features(features, name, minimum=k + 1).to(torch.float32)


def _squared_distances(x: Tensor, y: Tensor, y_norms: Tensor) -> Tensor:
    distances = x @ y.T
    return distances.mul_(-2).add_(x.square().sum(dim=1, keepdim=True)).add_(y_norms).clamp_min_(0)


def knn_radii(features: Tensor, *, k: int = 3, batch_size: int = 1000) -> Tensor:
    """Squared distance from each row of ``(N, D)`` features to its ``k``-th nearest other row, ``(N,)`` float32.

    Distances are computed ``batch_size`` rows at a time, so memory stays at ``batch_size x N`` numbers. They are
    float32: the k-NN tests only compare distances, and float32 is twice as fast on a CPU.
    """
    x = _points(features, "features", k=k)
    norms = x.square().sum(dim=1)
    radii = [
        # k + 1: each row is its own nearest neighbour, at distance 0
        _squared_distances(x[start : start + batch_size], x, norms).topk(k + 1, dim=1, largest=False).values[:, k]
        for start in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(radii)


def precision_recall(
    real: Tensor,
    fake: Tensor,
    *,
    k: int = 3,
    batch_size: int = 1000,
    real_radii: Tensor | None = None,
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of ``fake`` features against ``real`` ones.

    Precision is the fraction of fake samples inside the real manifold (the union of the balls around each real
    sample reaching its ``k``-th nearest real neighbour); recall is the fraction of real samples inside the fake
    manifold. Pass ``real_radii`` (from ``knn_radii(real, k=k)``) to reuse them across calls. Memory is bounded by
    ``batch_size x N_real`` distances.
    """
    r, f = _points(real, "real", k=k), _points(fake, "fake", k=k)
    _same_width(r, f)
    if real_radii is None:
        real_radii = knn_radii(r, k=k, batch_size=batch_size)
    elif real_radii.shape != (r.shape[0],):
        raise ValueError(f"real_radii must have shape ({r.shape[0]},), got {tuple(real_radii.shape)}")
    real_radii = real_radii.to(device=r.device, dtype=torch.float32)
    fake_radii = knn_radii(f, k=k, batch_size=batch_size)
    real_norms = r.square().sum(dim=1)
    fake_inside = 0
    real_inside = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    for start in range(0, f.shape[0], batch_size):
        distances = _squared_distances(f[start : start + batch_size], r, real_norms)  # (batch, N_real)
        fake_inside += int((distances <= real_radii).any(dim=1).sum())
        real_inside |= (distances <= fake_radii[start : start + batch_size, None]).any(dim=0)
    return fake_inside / f.shape[0], float(real_inside.double().mean())


# -- class probabilities -----------------------------------------------------------------------------------------------


def _probabilities(probs: Tensor) -> Tensor:
    if probs.dim() != 2 or probs.shape[0] < 1:
        raise ValueError(f"probs must be a non-empty 2-D (N, K) tensor, got shape {tuple(probs.shape)}")
    return probs.to(torch.float64)


def mnist_score(probs: Tensor) -> float:
    """``exp(E_x[KL(p(y|x) || p(y))])`` with ``p(y)`` the mean of the rows: between 1 and K (10 for MNIST).

    1 when every sample gets the same class distribution (one digit, or nothing recognisable); K when each sample
    is classified with certainty and the classes are equally frequent. TF-GAN's ``mnist_score``.
    """
    p = _probabilities(probs)
    marginal = p.mean(dim=0, keepdim=True)
    kl = (torch.xlogy(p, p) - torch.xlogy(p, marginal)).sum(dim=1)
    return float(kl.mean().exp())


def class_histogram(probs: Tensor) -> Tensor:
    """The share of samples whose most probable class is each class, ``(K,)`` float64 summing to 1."""
    p = _probabilities(probs)
    counts = torch.bincount(p.argmax(dim=1), minlength=p.shape[1])
    return counts.to(torch.float64) / p.shape[0]


def mode_coverage(probs: Tensor, *, min_fraction: float = DEFAULT_MIN_FRACTION) -> tuple[int, float]:
    """How many classes are covered, and ``KL(histogram || uniform)`` in nats (0 when uniform, log K at worst).

    A class is covered when at least ``min_fraction / K`` of the samples are classified as it (by default 10% of
    its uniform share, 1% of the samples for ten classes).
    """
    histogram = class_histogram(probs)
    classes = histogram.shape[0]
    covered = int((histogram >= min_fraction / classes).sum())
    kl = float(torch.xlogy(histogram, histogram * classes).sum())
    return covered, max(kl, 0.0)


def conditional_accuracy(probs: Tensor, labels: Tensor) -> float:
    """The fraction of samples whose most probable class is the label they were generated for."""
    p = _probabilities(probs)
    if labels.shape != (p.shape[0],):
        raise ValueError(f"labels must have shape ({p.shape[0]},), got {tuple(labels.shape)}")
    return float((p.argmax(dim=1) == labels.to(p.device)).double().mean())
