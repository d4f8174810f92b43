"""Paired statistics over examples: the mean difference, its bootstrap interval, a sign test.

Optimization results are noisy, so every comparison of two systems here is paired:
both are scored on the same examples, and the interval is over those examples
(resampled with replacement). With several seeds (`pooled_paired_diff`), seeds that drew
different examples pool their pairs (seed, example); seeds that share a split score the
same examples, so their differences are first averaged per example: the examples are
the independent units, and resampling (seed, example) pairs would count one example once
per seed and make the interval too narrow. Seeds that drew different splits
(`data.seed = seed`) are resampled at two levels: splits (seeds) with replacement, then
questions within each drawn split, so the interval holds the spread between splits as well
as between questions.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PairedDiff:
    """candidate - baseline over paired examples."""

    n: int
    mean: float  # mean paired difference
    low: float  # bootstrap percentile interval at `confidence`
    high: float
    confidence: float
    wins: int  # examples where the candidate scored higher
    losses: int
    sign_p: float  # two-sided exact sign test over the non-tied pairs

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p-value of `wins` vs `losses` under p = 1/2 (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_diff(candidate: Sequence[float], baseline: Sequence[float], *,
                confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> PairedDiff:
    """Paired difference of two equally long score lists (same examples, same order)."""
    if len(candidate) != len(baseline):
        raise ValueError(f"paired scores differ in length: {len(candidate)} vs {len(baseline)}")
    diffs = [float(a) - float(b) for a, b in zip(candidate, baseline, strict=True)]
    n = len(diffs)
    wins = sum(d > 0 for d in diffs)
    losses = sum(d < 0 for d in diffs)
    if n == 0:
        return PairedDiff(0, 0.0, 0.0, 0.0, confidence, 0, 0, 1.0)
    mean = sum(diffs) / n
    rng = random.Random(seed)
    low, high = _percentile_interval([sum(rng.choices(diffs, k=n)) / n for _ in range(resamples)],
                                     confidence)
    return PairedDiff(n, mean, low, high, confidence, wins, losses, sign_test(wins, losses))


def _percentile_interval(means: list[float], confidence: float) -> tuple[float, float]:
    """The bootstrap percentile interval of resampled means at `confidence`."""
    means = sorted(means)
    alpha = (1 - confidence) / 2
    return (means[max(0, math.floor(alpha * len(means)))],
            means[min(len(means) - 1, math.ceil((1 - alpha) * len(means)) - 1)])


def sign_test_greater(wins: int, losses: int) -> float:
    """One-sided exact binomial p-value that `wins` beat `losses` (ties dropped): the
    probability of at least `wins` wins out of wins + losses under p = 1/2. On a 0/1 metric
    this is the exact McNemar test of "the candidate is right more often"."""
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(wins, n + 1)) / 2**n


def lower_bound(candidate: Sequence[float], baseline: Sequence[float], *, confidence: float,
                resamples: int = 2000, seed: int = 0) -> float:
    """One-sided paired bootstrap lower bound: the mean difference is above it with
    `confidence` (the lower end of the two-sided interval at 2 * confidence - 1)."""
    return paired_diff(candidate, baseline, confidence=2 * confidence - 1,
                       resamples=resamples, seed=seed).low


def pooled_paired_diff(runs: Sequence[tuple[Sequence[float], Sequence[float], str]], *,
                       confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> PairedDiff:
    """candidate − baseline over several runs, each (candidate scores, baseline scores, split),
    where `split` names the examples scored (runs on one split score the same examples in
    the same order). Per split, the runs' differences are averaged per example; the
    per-example means of every split are then pooled and bootstrapped. `n` counts examples,
    wins and losses count examples whose mean difference is above or below 0."""
    by_split: dict[str, list[list[float]]] = {}
    for candidate, baseline, split in runs:
        if len(candidate) != len(baseline):
            raise ValueError(f"paired scores differ in length: {len(candidate)} vs {len(baseline)}")
        by_split.setdefault(split, []).append(
            [float(a) - float(b) for a, b in zip(candidate, baseline, strict=True)])
    per_split: list[list[float]] = []
    for split, diffs in by_split.items():
        if len({len(d) for d in diffs}) != 1:
            raise ValueError(f"runs on split {split!r} scored different numbers of examples")
        per_split.append([sum(d[i] for d in diffs) / len(diffs) for i in range(len(diffs[0]))])
    units = [u for split in per_split for u in split]
    pooled = paired_diff(units, [0.0] * len(units), confidence=confidence, resamples=resamples,
                         seed=seed)
    if len(per_split) < 2:
        return pooled
    low, high = _two_level_interval(per_split, confidence, resamples, seed)
    return PairedDiff(pooled.n, pooled.mean, low, high, confidence, pooled.wins, pooled.losses,
                      pooled.sign_p)


def _two_level_interval(per_split: list[list[float]], confidence: float, resamples: int,
                        seed: int) -> tuple[float, float]:
    """Percentile interval of the pooled mean when splits are drawn with replacement, then
    the questions of each drawn split."""
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        drawn = [u for split in rng.choices(per_split, k=len(per_split))
                 for u in rng.choices(split, k=len(split))]
        means.append(sum(drawn) / len(drawn) if drawn else 0.0)
    return _percentile_interval(means, confidence)
