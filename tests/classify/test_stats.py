"""Paired comparisons: the bootstrap interval, McNemar's exact p, and the verdict's wording."""

import numpy as np
import pytest
from scipy.stats import binomtest

from embedpipe.classify.stats import beats, bootstrap_rows, compare, mcnemar_exact, significant


def test_mcnemar_exact_is_the_two_sided_binomial_on_discordant_rows():
    assert mcnemar_exact(10, 2) == pytest.approx(binomtest(2, 12, 0.5).pvalue)
    assert mcnemar_exact(10, 2) == pytest.approx(0.03857, abs=1e-5)   # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0


def test_the_bootstrap_interval_brackets_the_difference_and_shrinks_with_more_rows():
    rng = np.random.default_rng(1)
    widths = []
    for n in (200, 3200):
        a = (rng.random(n) < 0.8).astype(float)
        b = (rng.random(n) < 0.7).astype(float)
        c = compare(a, b, first_a=a, first_b=b)
        assert c["difference"] == pytest.approx(a.mean() - b.mean())
        assert c["ci_low"] < c["difference"] < c["ci_high"]
        assert c["a_only"] == int(((a == 1) & (b == 0)).sum()) and c["b_only"] == int(((a == 0) & (b == 1)).sum())
        widths.append(c["ci_high"] - c["ci_low"])
        # unpaired rows would give ~sqrt(2 * 0.2) / sqrt(n) * 3.92 wide; paired, the same rows are drawn for both
        expected = 3.92 * np.sqrt(np.var(a - b) / n)
        assert c["ci_high"] - c["ci_low"] == pytest.approx(expected, rel=0.15)
    assert widths[1] < widths[0] / 3


def test_seed_means_count_in_the_difference_and_the_first_seed_in_mcnemar():
    mean_a = np.array([1, 1, 2 / 3, 0, 1 / 3])
    first_a = np.array([1, 1, 1, 0, 0])
    b = np.array([1, 0, 0, 0, 1.0])
    c = compare(mean_a, b, first_a=first_a, first_b=b)
    assert c["difference"] == pytest.approx(mean_a.mean() - b.mean())
    assert (c["a_only"], c["b_only"]) == (2, 1)


def test_the_same_rows_are_resampled_for_every_comparison():
    assert np.array_equal(bootstrap_rows(50), bootstrap_rows(50))
    assert bootstrap_rows(50).shape == (2000, 50)


def test_the_wording_follows_the_numbers():
    clear = {"difference": 0.142, "ci_low": 0.129, "ci_high": 0.155, "p_value": 0.0001}
    assert significant(clear)
    assert beats("mean pooling", "[CLS]", clear) == ("mean pooling beats [CLS] by 14.2 points "
                                                     "(95% CI 12.9 to 15.5, p < 0.001)")
    flipped = {"difference": -0.142, "ci_low": -0.155, "ci_high": -0.129, "p_value": 0.0001}
    assert beats("[CLS]", "mean pooling", flipped).startswith("mean pooling beats [CLS] by 14.2 points")
    unclear = {"difference": 0.01, "ci_low": -0.005, "ci_high": 0.025, "p_value": 0.2}
    assert not significant(unclear)
    assert beats("a", "b", unclear) == "a and b are not clearly different: 1.0 points (95% CI -0.5 to 2.5, p = 0.200)"
