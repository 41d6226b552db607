"""The statistics the analyses share: rank and linear correlation, the one-sided sign test, and the bootstrap
over people (weights, weighted mean and median, percentile intervals)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def rankdata(x) -> np.ndarray:
    """Ranks 1..n of the flattened `x`, ties sharing the mean of their ranks (scipy's "average" method)."""
    x = np.asarray(x, np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(1, len(x) + 1, dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inverse, ranks)
    return (sums / counts)[inverse]


def spearman(a, b) -> float:
    """Spearman's rank correlation of two arrays of the same size (flattened); 1.0 exactly for equal arrays,
    nan when either is constant."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in size: {a.size} vs {b.size}")
    if np.array_equal(a, b):
        return 1.0 if a.size and np.ptp(a) > 0 else float("nan")
    # ranks are multiples of 1/2 and so is their mean (n + 1) / 2: centring them is exact
    ra, rb = rankdata(a) - (len(a) + 1) / 2, rankdata(b) - (len(b) + 1) / 2
    den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float(np.clip((ra * rb).sum() / den, -1, 1)) if den > 0 else float("nan")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two arrays of the same size (flattened), nan when either is constant.
    Computed in the arrays' own precision (float32 maps stay float32), so results are reproducible."""
    a, b = np.asarray(a), np.asarray(b)
    if a.size != b.size:
        raise ValueError(f"arrays differ in size: {a.size} vs {b.size}")
    if a.size == 0 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")         # a constant's deviations from its rounded mean are noise, not a signal
    a, b = a.reshape(-1) - a.mean(), b.reshape(-1) - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def sign_test(diffs) -> tuple[int, int, float]:
    """(negatives, non-zero cases, one-sided p) for "the differences are mostly negative": P(X ≥ negatives)
    with X ~ Binomial(n, 1/2), computed exactly; zero, None and non-finite differences are dropped."""
    d = [x for x in diffs if x is not None and np.isfinite(x) and x != 0]
    n, neg = len(d), sum(1 for x in d if x < 0)
    if n == 0:
        return 0, 0, float("nan")
    return neg, n, float(Fraction(sum(math.comb(n, i) for i in range(neg, n + 1)), 2 ** n))


# ---------------------------------------------------------------------------------------------------
# Bootstrap over independent cases (people), numpy only

def bootstrap_weights(n: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(resamples, n) integer weights: how often each of `n` cases is drawn in each bootstrap resample (n
    draws with replacement). Seeded and independent of the global RNG; the same n and seed give the same
    weights, so a statistic written as a function of the weights has reproducible intervals."""
    if n < 1 or resamples < 1:
        raise ValueError(f"bootstrap needs at least one case and one resample, got n={n}, resamples={resamples}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)


def weighted_mean(w: np.ndarray, x) -> np.ndarray:
    """Per row of weights `w` (B, n), the weighted mean of `x` (n,); nan where a row's weights sum to 0."""
    w, x = np.asarray(w, np.float64), np.asarray(x, np.float64)
    total = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w @ x) / np.where(total > 0, total, 1), np.nan)


def weighted_median(w: np.ndarray, x) -> np.ndarray:
    """Per row of weights `w` (B, n), the median of `x` (n,) with each value repeated by its weight: the
    mean of the two middle values for an even total, like np.median for weights of one; nan for no weight."""
    w, x = np.asarray(w, np.float64), np.asarray(x, np.float64)
    if x.size == 0:
        return np.full(len(w), np.nan)
    order = np.argsort(x, kind="mergesort")
    xs, c = x[order], np.cumsum(w[:, order], axis=1)
    half = c[:, -1:] / 2
    lo = np.minimum((c < half).sum(1), len(xs) - 1)       # first value whose cumulative weight reaches half
    hi = np.minimum((c <= half).sum(1), len(xs) - 1)      # first value past half
    return np.where(c[:, -1] > 0, (xs[lo] + xs[hi]) / 2, np.nan)


def percentile_interval(samples, estimate: float, level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of `samples` at `level`, widened if needed to contain `estimate`
    (a discrete or skewed statistic can put its own value just outside: the verdict must not gain from
    that); (nan, nan) when no resample gave a finite value."""
    s = np.asarray(samples, np.float64)
    s = s[np.isfinite(s)]
    if not len(s) or not np.isfinite(estimate):
        return float("nan"), float("nan")
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return float(min(lo, estimate)), float(max(hi, estimate))
