"""What the seeds say: mean and spread, the difference of two arms with a 95% Welch interval, and a plain verdict.

Pure functions of lists of floats, with no dependency beyond ``math``: Student's t quantile comes from the
regularised incomplete beta function (a continued fraction, as in Numerical Recipes section 6.4), so that gankit
needs no scipy for one number.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Direction = Literal["lower", "higher"]


@dataclass(frozen=True)
class Summary:
    """A metric over seeds: its mean, its sample standard deviation (NaN for one seed) and how many seeds."""

    mean: float
    sd: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation (n - 1 in the denominator); one value has no spread (NaN)."""
    if not values:
        raise ValueError("no values to summarise")
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return Summary(statistics.fmean(values), sd, len(values))


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz), converging for x < (a+1)/(a+b+2)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on ``t_cdf``, to 1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    while high - low > 1e-12 * max(1.0, high):
        middle = (low + high) / 2.0
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2.0


@dataclass(frozen=True)
class Difference:
    """``arm - baseline`` in one metric: the difference of the means, its 95% Welch interval, and the verdict."""

    difference: float
    low: float
    high: float
    df: float
    verdict: str


def welch_interval(
    arm: Sequence[float], baseline: Sequence[float], *, confidence: float = 0.95
) -> tuple[float, float, float, float]:
    """``mean(arm) - mean(baseline)`` and its Welch t interval: ``(difference, low, high, df)``.

    Welch's interval does not assume equal variances; its degrees of freedom are Welch-Satterthwaite's. With fewer
    than two values on either side there is no spread to go on, and the interval is (NaN, NaN). When both sides
    are constant the interval is the difference itself.
    """
    difference = statistics.fmean(arm) - statistics.fmean(baseline)
    if len(arm) < 2 or len(baseline) < 2:
        return difference, math.nan, math.nan, math.nan
    va, vb = statistics.variance(arm) / len(arm), statistics.variance(baseline) / len(baseline)
    se2 = va + vb
    if se2 == 0.0:
        return difference, difference, difference, math.inf
    df = se2 * se2 / (va * va / (len(arm) - 1) + vb * vb / (len(baseline) - 1))
    half = t_quantile(0.5 + confidence / 2.0, df) * math.sqrt(se2)
    return difference, difference - half, difference + half, df


def verdict(low: float, high: float, *, direction: Direction, seeds: int) -> str:
    """``better`` or ``worse`` when the interval excludes 0, else ``not established with N seeds``."""
    if low > 0 or high < 0:  # False for NaN: no interval, no verdict
        return "better" if (low > 0) == (direction == "higher") else "worse"
    return f"not established with {seeds} seed{'s' if seeds != 1 else ''}"


def compare_arm(
    arm: Sequence[float], baseline: Sequence[float], *, direction: Direction, confidence: float = 0.95
) -> Difference:
    """The difference of ``arm`` from ``baseline`` in a metric where ``direction`` is better, and its verdict."""
    difference, low, high, df = welch_interval(arm, baseline, confidence=confidence)
    return Difference(
        difference, low, high, df, verdict(low, high, direction=direction, seeds=min(len(arm), len(baseline)))
    )
