"""The statistics the analyses share: rank and linear correlation of two maps, and the one-sided sign test."""
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
