"""tpexplain.analysis.stats against scipy.stats: Spearman, Pearson and the sign test, with ties and constants."""
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import stats as sp

from tpexplain.analysis.stats import (bootstrap_weights, pearson, percentile_interval, rankdata, sign_test, spearman,
                                     weighted_mean, weighted_median)


def samples():
    rng = np.random.default_rng(7)
    yield rng.random(50), rng.random(50)                                   # no ties
    a = rng.random((16, 12))
    yield a, a ** 3 + 0.1 * rng.random((16, 12))                           # 2-D maps, strongly related
    yield rng.integers(0, 4, 60), rng.integers(0, 3, 60)                   # heavy ties on both sides
    x = rng.random(30)
    x[5:12] = x[5]                                                         # one long run of ties
    yield x, rng.random(30)
    sparse = np.zeros(40)
    sparse[[3, 9, 27]] = [0.5, 0.2, 0.9]                                   # mostly zeros, like a peaked map
    yield sparse, rng.random(40)
    yield np.arange(10.0), -np.arange(10.0)                                # exactly -1


@pytest.mark.parametrize("a, b", list(samples()))
def test_spearman_matches_scipy(a, b):
    assert spearman(a, b) == pytest.approx(sp.spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    assert spearman(b, a) == spearman(a, b)


@pytest.mark.parametrize("a, b", list(samples()))
def test_pearson_matches_scipy(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    assert pearson(a, b) == pytest.approx(sp.pearsonr(a.ravel(), b.ravel()).statistic, abs=1e-12)


def test_ranks_match_scipy_average_ranks():
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0, 0.5])
    assert rankdata(x).tolist() == sp.rankdata(x).tolist()          # ties share the mean of their ranks
    m = np.random.default_rng(1).integers(0, 5, (6, 7))
    assert rankdata(m).tolist() == sp.rankdata(m.ravel()).tolist()


def test_constant_inputs_give_nan_like_scipy():
    x = np.random.default_rng(2).random(20)
    c = np.full(20, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # scipy warns about the constant input
        assert math.isnan(sp.spearmanr(x, c).statistic) and math.isnan(sp.pearsonr(x, c).statistic)
    assert math.isnan(spearman(x, c)) and math.isnan(spearman(c, x)) and math.isnan(spearman(c, c))
    assert math.isnan(pearson(x, c)) and math.isnan(pearson(c, c))


def test_equal_maps_correlate_exactly_one():
    a = np.random.default_rng(3).random((16, 12)).astype(np.float32)
    assert spearman(a, a) == 1.0 and pearson(a.astype(np.float64), a.astype(np.float64)) == pytest.approx(1.0)
    assert spearman(a, 2 * a + 1) == 1.0                            # ranks only


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in size"):
        spearman(np.ones(4), np.ones(5))
    with pytest.raises(ValueError, match="differ in size"):
        pearson(np.ones(4), np.ones(5))


@pytest.mark.parametrize("diffs", [
    [-1, -2, -3, -4, -5], [-1, 1, 0], [-0.5, -0.1, 0.2, -3, -1, 0.4, -2, -2, -1, 5, -1],
    [1, 2, 3], [-1] * 30 + [1] * 12, [0.3, -0.3],
])
def test_sign_test_matches_scipy_binomtest(diffs):
    neg, n, p = sign_test(diffs)
    nonzero = [d for d in diffs if d != 0]
    assert n == len(nonzero) and neg == sum(d < 0 for d in nonzero)
    assert p == pytest.approx(sp.binomtest(neg, n, 0.5, alternative="greater").pvalue, rel=1e-12)


def test_sign_test_drops_zeros_missing_and_non_finite():
    assert sign_test([-1, -2, -3, -4, -5]) == (5, 5, 1 / 32)
    assert sign_test([-1, 0, None, float("nan"), float("inf"), 1]) == (1, 2, 0.75)
    neg, n, p = sign_test([])
    assert (neg, n) == (0, 0) and math.isnan(p)


def test_bootstrap_weights_are_seeded_resamples():
    w = bootstrap_weights(7, 500, seed=3)
    assert w.shape == (500, 7) and (w.sum(1) == 7).all() and (w >= 0).all()
    assert (bootstrap_weights(7, 500, seed=3) == w).all() and not (bootstrap_weights(7, 500, seed=4) == w).all()
    assert abs(w.mean() - 1) < 0.05                       # each case drawn once per resample on average
    with pytest.raises(ValueError):
        bootstrap_weights(0)


@pytest.mark.parametrize("n", [1, 2, 5, 6, 31])
def test_weighted_mean_and_median_with_unit_weights_are_the_plain_ones(n):
    x = np.random.default_rng(n).standard_normal(n)
    one = np.ones((1, n))
    assert weighted_median(one, x)[0] == pytest.approx(np.median(x), abs=1e-12)
    assert weighted_mean(one, x)[0] == pytest.approx(x.mean(), abs=1e-12)


def test_weighted_statistics_equal_the_repeated_sample():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(9)
    w = bootstrap_weights(9, 50, seed=2)
    for row, m, med in zip(w, weighted_mean(w, x), weighted_median(w, x)):
        repeated = np.repeat(x, row)
        assert m == pytest.approx(repeated.mean()) and med == pytest.approx(np.median(repeated))
    assert np.isnan(weighted_mean(np.zeros((1, 9)), x)[0]) and np.isnan(weighted_median(np.zeros((1, 9)), x)[0])


def test_percentile_interval_contains_the_estimate():
    s = np.random.default_rng(0).standard_normal(1000)
    lo, hi = percentile_interval(s, 0.0)
    assert lo == pytest.approx(np.percentile(s, 2.5)) and hi == pytest.approx(np.percentile(s, 97.5))
    assert percentile_interval(s, 5.0) == (lo, 5.0)                   # widened, never narrowed
    assert all(np.isnan(percentile_interval([np.nan], 1.0)))


def test_the_package_does_not_import_scipy():
    code = ("import sys, tpexplain.analysis.stats, tpexplain.analysis.findings, tpexplain.analysis.sanity; "
            "print('scipy' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
