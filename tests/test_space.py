"""One sampler for variable spaces: finite choices, ranges, log scale, integers."""

from __future__ import annotations

import math
import random

from optimas_cli import space
from optimas_cli.schema import VariableConfig


def var(**kw):
    return VariableConfig(type="hyperparameter", **kw)


def test_finite_space_is_covered_whole_not_cut_in_declaration_order():
    k = var(value=5, choices=[1, 5, 10, 25])
    assert space.alternatives(k, 5, 3, random.Random(0)) == [1, 10, 25]
    # fewer slots than values: a seeded sample, which over seeds reaches the last value
    seen = {v for s in range(20) for v in space.alternatives(k, 5, 1, random.Random(s))}
    assert seen == {1, 10, 25}


def test_log_range_is_log_spaced_and_keeps_both_ends():
    lr = var(value=1e-3, low=1e-5, high=1e-1, log=True)
    grid = space.grid(lr, 5)
    assert grid[0] == 1e-5 and math.isclose(grid[-1], 1e-1)
    ratios = [b / a for a, b in zip(grid, grid[1:], strict=False)]
    assert all(math.isclose(r, 10) for r in ratios)
    draws = [space.draw(lr, random.Random(s)) for s in range(400)]
    below = sum(d < 1e-3 for d in draws) / len(draws)
    assert 0.4 < below < 0.6  # log-uniform: half the mass below the geometric middle


def test_integer_range_gives_distinct_integers():
    n = var(value=3, low=1, high=4, integer=True)
    assert space.grid(n, 10) == [1, 2, 3, 4]
    assert space.alternatives(n, 3, 5, random.Random(0)) == [1, 2, 4]
    assert all(isinstance(space.draw(n, random.Random(s)), int) for s in range(10))
