"""bench.stats: Welch's t on known answers, its error rate on simulated seeds, bad input."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench import stats


def test_known_answer_by_hand():
    # a = 1, 2, 3 and b = 4, 5, 6: delta 3, each variance 1, stderr sqrt(1/3 + 1/3), dof exactly 4.
    d = stats.welch_difference([1, 2, 3], [4, 5, 6])
    assert d.delta == 3.0 and d.mean_a == 2.0 and d.mean_b == 5.0
    assert d.stderr == pytest.approx(math.sqrt(2 / 3))
    assert d.dof == pytest.approx(4.0)
    half = 2.7764451051977987 * math.sqrt(2 / 3)  # t_{0.975, 4}
    assert (d.low, d.high) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert d.p_value == pytest.approx(scipy_stats.ttest_ind([4, 5, 6], [1, 2, 3], equal_var=False).pvalue)
    assert d.significant and d.verdict == stats.BEYOND_NOISE
    assert d.standard_errors == pytest.approx(3 / math.sqrt(2 / 3))


def test_unequal_spreads_use_welch_satterthwaite():
    a, b = [0.0, 0.1, -0.1, 0.05], [1.0, 3.0, -1.0]
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    d = stats.welch_difference(a, b)
    assert d.dof == pytest.approx((va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2))
    assert not d.significant and d.verdict == stats.NOT_DETECTABLE  # b's spread swamps its shift


def test_false_positive_rate_is_the_level_and_a_large_shift_is_found():
    rng = np.random.default_rng(0)
    hits = [stats.welch_difference(rng.normal(0, 1, 3), rng.normal(0, 1, 3)).significant for _ in range(4000)]
    assert 0.03 < np.mean(hits) < 0.07  # nominal 5 %
    found = [stats.welch_difference(rng.normal(0, 1, 5), rng.normal(4, 1, 5)).significant for _ in range(200)]
    assert np.mean(found) > 0.95


def test_constant_arms():
    assert not stats.welch_difference([2, 2, 2], [2, 2, 2]).significant
    d = stats.welch_difference([2, 2, 2], [3, 3, 3])
    assert d.significant and d.standard_errors == math.inf


@pytest.mark.parametrize("a, b, message", [
    ([1.0], [1.0, 2.0], "at least 2 seeds"),
    ([1.0, float("nan")], [1.0, 2.0], "NaN"),
])
def test_bad_input_is_one_line(a, b, message):
    with pytest.raises(ValueError, match=message):
        stats.welch_difference(a, b)
    with pytest.raises(ValueError, match="level"):
        stats.welch_difference([1, 2], [3, 4], level=1.5)


def test_per_seed_values_summarise_like_numpy_and_say_nan_when_too_few():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Record(stats.PerSeedValues):
        values: tuple

    three = Record((1.0, 2.0, 4.0))
    assert (three.n, three.mean) == (3, pytest.approx(7 / 3))
    assert three.std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    one, none = Record((5.0,)), Record(())
    assert one.mean == 5.0 and math.isnan(one.std)
    assert none.n == 0 and math.isnan(none.mean) and math.isnan(none.std)
