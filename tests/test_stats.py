"""Paired statistics: the difference, its bootstrap interval and the sign test."""

from __future__ import annotations

import math

import pytest

from optimas_cli.stats import (
    lower_bound,
    paired_diff,
    pooled_paired_diff,
    sign_test,
    sign_test_greater,
)


def test_sign_test_matches_the_binomial_tail():
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 5) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 2**10)
    # 8 wins of 10: P(X <= 2) = (1 + 10 + 45) / 1024, two-sided
    assert sign_test(8, 2) == pytest.approx(2 * 56 / 1024)
    assert sign_test(2, 8) == sign_test(8, 2)


def test_paired_difference_interval_covers_the_mean_and_excludes_zero_for_a_clear_gain():
    base = [0.0, 1.0] * 50
    better = [1.0, 1.0] * 50  # wins on every other example, never loses
    d = paired_diff(better, base, confidence=0.95)
    assert d.n == 100 and d.mean == pytest.approx(0.5)
    assert 0 < d.low <= 0.5 <= d.high < 1
    assert (d.wins, d.losses) == (50, 0) and d.sign_p < 1e-10


def test_noise_gives_an_interval_around_zero():
    a = [1.0, 0.0] * 20
    b = [0.0, 1.0] * 20  # as many wins as losses
    d = paired_diff(a, b)
    assert d.mean == 0.0 and d.low < 0 < d.high and d.sign_p == 1.0


def test_pairing_matters_and_lengths_must_match():
    # the same two score lists, paired differently: a constant shift has no spread
    a = [x + 0.1 for x in range(20)]
    d = paired_diff(a, list(range(20)))
    assert math.isclose(d.low, 0.1) and math.isclose(d.high, 0.1)
    with pytest.raises(ValueError, match="differ in length"):
        paired_diff([1.0], [1.0, 0.0])


def test_seeds_on_one_split_are_averaged_per_question_and_other_splits_pooled():
    gain = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]  # candidate - baseline per question
    zero = [0.0] * 10
    one = pooled_paired_diff([(gain, zero, "split 0")])
    # the same questions scored by three seeds alike: still 10 questions, the same interval;
    # pooling 30 (seed, question) pairs would have made it narrower
    three = pooled_paired_diff([(gain, zero, "split 0")] * 3)
    assert (three.n, three.mean, three.low, three.high) == (one.n, one.mean, one.low, one.high)
    assert paired_diff(gain * 3, zero * 3).high - paired_diff(gain * 3, zero * 3).low < one.high - one.low
    # two seeds on one split that disagree on a question: its mean difference counts once
    other = [0.0] + gain[1:]
    d = pooled_paired_diff([(gain, zero, "s"), (other, zero, "s")])
    assert d.n == 10 and d.mean == pytest.approx((sum(gain) - 0.5) / 10) and d.wins == 4
    # another split brings its own questions
    assert pooled_paired_diff([(gain, zero, "a"), (gain, zero, "b")]).n == 20
    with pytest.raises(ValueError, match="different numbers of examples"):
        pooled_paired_diff([(gain, zero, "s"), (gain[:5], zero[:5], "s")])


def test_seeds_on_their_own_splits_are_resampled_split_first():
    """Three splits that disagree (one gains 0.6, two gain nothing): questions alone would
    give a narrow interval above 0; resampling the splits too holds their spread."""
    zero = [0.0] * 50
    big, none = [1.0] * 30 + [0.0] * 20, [0.0] * 50
    runs = [(big, zero, "seed 0"), (none, zero, "seed 1"), (none, zero, "seed 2")]
    d = pooled_paired_diff(runs)
    flat = paired_diff(big + none + none, zero * 3)
    assert (d.n, d.mean, d.wins, d.losses) == (flat.n, flat.mean, flat.wins, flat.losses)
    assert flat.low > 0.1 and d.low == 0.0  # a resample may draw only the splits that gained nothing
    assert d.high > flat.high
    # splits that agree: the interval is as narrow as the questions make it
    same = pooled_paired_diff([(big, zero, f"seed {i}") for i in range(3)])
    assert same.low == pytest.approx(0.6, abs=0.1) and same.high == pytest.approx(0.6, abs=0.1)


def test_one_sided_sign_test_is_the_upper_binomial_tail():
    assert sign_test_greater(0, 0) == 1.0
    assert sign_test_greater(8, 2) == pytest.approx(56 / 1024)  # P(X >= 8), X ~ Bin(10, 1/2)
    assert sign_test_greater(8, 2) == pytest.approx(sign_test(8, 2) / 2)
    assert sign_test_greater(2, 8) == pytest.approx(1 - 11 / 1024)  # P(X >= 2)
    assert sign_test_greater(10, 0) == 0.5**10
    assert sign_test_greater(5, 5) == pytest.approx(638 / 1024, abs=1e-12)  # P(X >= 5)
    assert sign_test_greater(0, 10) == 1.0


def test_one_sided_bound_lies_between_the_two_sided_lower_end_and_the_mean():
    base = [0.0] * 30
    better = [1.0] * 6 + [-1.0] * 2 + [0.0] * 22
    two_sided = paired_diff(better, base, confidence=0.9)
    bound = lower_bound(better, base, confidence=0.9)
    assert two_sided.low < bound < two_sided.mean
