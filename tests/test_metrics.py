"""The evaluation metrics against cases with known answers, then on real MNIST through the shipped classifier."""

from __future__ import annotations

import math

import pytest
import torch

from gankit.evaluation import (
    class_histogram,
    conditional_accuracy,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
    kernel_inception_distance,
    knn_radii,
    mnist_score,
    mode_coverage,
    precision_recall,
)


def gaussian(n: int, mean: list[float], std: list[float], *, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(mean), generator=generator, dtype=torch.float64) * torch.tensor(std) + torch.tensor(mean)


def closed_form(mean_a: list[float], var_a: list[float], mean_b: list[float], var_b: list[float]) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for diagonal covariances."""
    return sum((a - b) ** 2 for a, b in zip(mean_a, mean_b, strict=True)) + sum(
        a + b - 2 * math.sqrt(a * b) for a, b in zip(var_a, var_b, strict=True)
    )


# -- Frechet distance ------------------------------------------------------------------------------------------------


def test_frechet_distance_of_a_set_to_itself_is_zero() -> None:
    feats = torch.rand(500, 32, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians() -> None:
    mean_a, var_a = [0.0, 1.0, -2.0, 0.5], [1.0, 4.0, 0.25, 2.0]
    mean_b, var_b = [1.0, -1.0, 0.0, 0.5], [2.0, 1.0, 1.0, 0.5]
    exact = frechet_distance_from_statistics(
        torch.tensor(mean_a), torch.diag(torch.tensor(var_a)), torch.tensor(mean_b), torch.diag(torch.tensor(var_b))
    )
    assert exact == pytest.approx(closed_form(mean_a, var_a, mean_b, var_b), rel=1e-12)

    # the same from samples, up to sampling error
    a = gaussian(50_000, mean_a, [math.sqrt(v) for v in var_a], seed=1)
    b = gaussian(50_000, mean_b, [math.sqrt(v) for v in var_b], seed=2)
    assert frechet_distance(a, b) == pytest.approx(closed_form(mean_a, var_a, mean_b, var_b), rel=0.03)


def test_frechet_distance_of_a_shifted_set_is_the_squared_shift() -> None:
    feats = torch.randn(300, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    shift = torch.linspace(-1, 1, 16, dtype=torch.float64)
    assert frechet_distance(feats, feats + shift) == pytest.approx(float(shift.square().sum()), rel=1e-9)


def test_frechet_distance_agrees_with_the_eigenvalues_of_the_product_for_full_covariances() -> None:
    generator = torch.Generator().manual_seed(4)
    factor_a = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    factor_b = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    cov_a, cov_b = factor_a @ factor_a.T, factor_b @ factor_b.T
    mean_a, mean_b = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    trace_sqrt = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0).sqrt().sum()
    expected = float(6 + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt)
    assert frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_survives_singular_covariances() -> None:
    feats = torch.zeros(100, 8)
    feats[:, 0] = torch.arange(100.0)  # rank one, like dead ReLU units
    value = frechet_distance(feats, feats + 1)
    assert math.isfinite(value) and value == pytest.approx(8.0, rel=1e-9)


def test_feature_statistics_are_mean_and_unbiased_covariance() -> None:
    feats = torch.randn(50, 3, generator=torch.Generator().manual_seed(5))
    mean, cov = feature_statistics(feats)
    assert mean.dtype == torch.float64
    torch.testing.assert_close(cov, torch.cov(feats.double().T))


# -- KID -------------------------------------------------------------------------------------------------------------


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    a = gaussian(1000, [0.0] * 8, [1.0] * 8, seed=6)
    b = gaussian(1000, [0.0] * 8, [1.0] * 8, seed=7)
    generator = torch.Generator().manual_seed(0)
    same, same_std = kernel_inception_distance(a, a, subsets=10, subset_size=300, generator=generator)
    independent, _ = kernel_inception_distance(a, b, subsets=10, subset_size=300, generator=generator)
    shifted, shifted_std = kernel_inception_distance(a, b + 1.0, subsets=10, subset_size=300, generator=generator)
    assert shifted > 0.1 and shifted_std < shifted / 5
    assert abs(same) < shifted / 100 and abs(independent) < shifted / 100
    assert same_std > 0


def test_kid_is_reproducible_from_the_generator_and_has_no_std_for_one_subset() -> None:
    a = gaussian(300, [0.0] * 4, [1.0] * 4, seed=8)
    b = gaussian(200, [0.5] * 4, [1.0] * 4, seed=9)
    first = kernel_inception_distance(a, b, subsets=5, subset_size=100, generator=torch.Generator().manual_seed(1))
    again = kernel_inception_distance(a, b, subsets=5, subset_size=100, generator=torch.Generator().manual_seed(1))
    assert first == again
    assert kernel_inception_distance(a, b, subsets=1, subset_size=50)[1] == 0.0


def test_kid_of_whole_sets_is_the_unbiased_mmd() -> None:
    a = gaussian(40, [0.0] * 3, [1.0] * 3, seed=10)
    b = gaussian(40, [1.0] * 3, [1.0] * 3, seed=11)

    def k(x: torch.Tensor, y: torch.Tensor) -> float:
        return float((x @ y / 3 + 1) ** 3)

    m = 40
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    kid, _ = kernel_inception_distance(a, b, subsets=3, subset_size=40)  # subsets of the whole set: all equal
    assert kid == pytest.approx(xx + yy - 2 * xy, rel=1e-5)  # the kernel matrices are float32


def test_metrics_refuse_mismatched_widths() -> None:
    with pytest.raises(ValueError, match="width"):
        frechet_distance(torch.zeros(10, 3), torch.zeros(10, 4))
    with pytest.raises(ValueError, match="2-D"):
        kernel_inception_distance(torch.zeros(10), torch.zeros(10, 4))


# -- precision and recall --------------------------------------------------------------------------------------------


def test_knn_radii_on_a_line() -> None:
    points = torch.arange(10.0).unsqueeze(1)
    assert torch.equal(knn_radii(points, k=1, batch_size=3), torch.ones(10, dtype=torch.float64))
    assert knn_radii(points, k=2)[0] == 4.0  # the ends reach two steps for their second neighbour


def test_precision_recall_of_identical_sets_is_one_and_of_disjoint_sets_zero() -> None:
    real = gaussian(500, [0.0] * 8, [1.0] * 8, seed=12)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_precision_recall_of_two_samples_of_one_distribution_is_high() -> None:
    real = gaussian(1000, [0.0] * 8, [1.0] * 8, seed=13)
    fake = gaussian(1000, [0.0] * 8, [1.0] * 8, seed=14)
    precision, recall = precision_recall(real, fake)
    assert precision > 0.8 and recall > 0.8


def test_precision_recall_detect_a_dropped_mode() -> None:
    left = gaussian(500, [-20.0, 0.0], [1.0, 1.0], seed=15)
    right = gaussian(500, [20.0, 0.0], [1.0, 1.0], seed=16)
    real = torch.cat([left, right])
    fake = gaussian(1000, [-20.0, 0.0], [1.0, 1.0], seed=17)  # all samples in one of the two modes
    precision, recall = precision_recall(real, fake)
    assert precision > 0.9
    assert 0.4 < recall <= 0.5


def test_precision_recall_do_not_depend_on_the_batch_size_and_reuse_radii() -> None:
    real = gaussian(300, [0.0] * 4, [1.0] * 4, seed=18)
    fake = gaussian(200, [0.3] * 4, [1.2] * 4, seed=19)
    expected = precision_recall(real, fake, batch_size=1000)
    assert precision_recall(real, fake, batch_size=7) == expected
    assert precision_recall(real, fake, real_radii=knn_radii(real, k=3)) == expected


# -- class probabilities ---------------------------------------------------------------------------------------------


def one_hot(classes: list[int], num_classes: int = 10) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), num_classes).double()


def test_mnist_score_bounds() -> None:
    assert mnist_score(one_hot(list(range(10)) * 5)) == pytest.approx(10.0)
    assert mnist_score(one_hot([3] * 50)) == pytest.approx(1.0)
    assert mnist_score(torch.full((20, 10), 0.1)) == pytest.approx(1.0)
    random = torch.rand(1000, 10, generator=torch.Generator().manual_seed(20)).softmax(dim=1)
    assert 1.0 <= mnist_score(random) <= 10.0


def test_mode_coverage_and_kl_from_uniform() -> None:
    covered, kl = mode_coverage(one_hot(list(range(10)) * 10))
    assert covered == 10 and kl == pytest.approx(0.0, abs=1e-12)
    covered, kl = mode_coverage(one_hot([7] * 100))
    assert covered == 1 and kl == pytest.approx(math.log(10))
    # 1% of the samples is the threshold: 1 of 100 counts, 1 of 101 does not
    assert mode_coverage(one_hot([0] * 99 + [1]))[0] == 2
    assert mode_coverage(one_hot([0] * 100 + [1]))[0] == 1
    assert mode_coverage(one_hot([0] * 100 + [1]), min_fraction=0.05)[0] == 2
    assert torch.equal(
        class_histogram(one_hot([2, 2, 5, 9])), torch.tensor([0, 0, 0.5, 0, 0, 0.25, 0, 0, 0, 0.25]).double()
    )


def test_conditional_accuracy() -> None:
    assert conditional_accuracy(one_hot([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError, match="labels"):
        conditional_accuracy(one_hot([1, 2]), torch.tensor([1]))


# -- on real MNIST, through the shipped classifier -------------------------------------------------------------------


@pytest.mark.slow
def test_a_generator_of_one_digit_covers_one_mode_and_scores_near_one() -> None:
    from gankit.evaluation import mnist_test_reference

    reference = mnist_test_reference()
    sevens = reference.labels == 7
    covered, kl = mode_coverage(reference.probs[sevens])
    assert covered == 1 and kl > 0.95 * math.log(10)
    assert mnist_score(reference.probs[sevens]) < 1.2
    # the real test set itself: every digit, a score close to the maximum
    assert mode_coverage(reference.probs)[0] == 10
    assert 9.0 < mnist_score(reference.probs) <= 10.0
    # one digit against all ten: far away, and it covers little of the real manifold
    distance = frechet_distance(reference.features[sevens], reference.features)
    assert distance > 10 * frechet_distance(reference.features[:5000], reference.features[5000:])
    precision, recall = precision_recall(reference.features[:2000], reference.features[sevens][:1000])
    assert precision > 0.8 and recall < 0.3
