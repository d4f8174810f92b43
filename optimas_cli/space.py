"""The search space of one hyperparameter or model variable: one sampler for every user.

Collection (which alternative values to roll out), the Optimas choice update, per-input
choice and the `search` baseline all take values from here, so `log`, `integer` and
finite `choices` mean the same everywhere.
"""

from __future__ import annotations

import math
import random
from typing import Any

from optimas_cli.schema import VariableConfig


def _scale(var: VariableConfig, u: float) -> float:
    """The point a fraction `u` in [0, 1] of the way through the range (log-spaced if `log`)."""
    lo, hi = float(var.low), float(var.high)
    if u <= 0 or u >= 1:  # the ends exactly, not through exp(log(x))
        return lo if u <= 0 else hi
    if var.log and lo > 0:
        return math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
    return lo + (hi - lo) * u


def _cast(var: VariableConfig, v: float) -> Any:
    return round(v) if var.integer else v


def grid(var: VariableConfig, points: int) -> list[Any]:
    """Every choice, or `points` evenly (log-)spaced values of the range, distinct."""
    if var.choices is not None:
        return list(var.choices)
    if points < 2:
        return [_cast(var, _scale(var, 0.5))]
    return list(dict.fromkeys(_cast(var, _scale(var, i / (points - 1))) for i in range(points)))


def draw(var: VariableConfig, rng: random.Random) -> Any:
    """One random value: a uniform choice, or a uniform (log-uniform if `log`) point of the range."""
    if var.choices is not None:
        return rng.choice(var.choices)
    return _cast(var, _scale(var, rng.random()))


def alternatives(var: VariableConfig, current: Any, limit: int, rng: random.Random) -> list[Any]:
    """Up to `limit` values other than `current`: the whole finite space when it fits, else a
    seeded sample of it (never the first `limit` in declaration order); for a range, the grid of
    `limit + 1` points (log-spaced if `log`), which covers both ends."""
    values = [v for v in grid(var, limit + 1) if v != current]
    if len(values) <= limit:
        return values
    return rng.sample(values, limit)
