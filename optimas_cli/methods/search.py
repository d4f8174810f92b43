"""Search baseline: random (or grid) search over every `hyperparameter` and `model` variable.

Each candidate sets all of these variables of all components at once (prompts
keep their configured values) and is scored by the end-to-end metric on the val
split; the best state seen so far is kept. Candidates are distinct and never
the initial state. The search stops when the space is exhausted, after
`num_candidates` evaluations, or before a step would exceed
`optimizer.budget_system_runs`.

options:
  method: random | grid       random: a seeded draw without repetition; grid: the full
                              product in declaration order (ranged variables: grid_points
                              evenly spaced values, log-spaced when `log: true`)
  seed: int | null            null: the run's seed
  num_candidates: int | null  at most this many evaluated candidates (null: until the
                              budget or the space runs out)
  grid_points: int            values per ranged (low/high) variable in grid mode
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from optimas_cli.errors import ConfigError
from optimas_cli.graph import State
from optimas_cli.methods.base import Context, Method, Options
from optimas_cli.methods.trial import Trial, variables_of, with_values
from optimas_cli.schema import VariableConfig
from optimas_cli.space import draw, grid

log = logging.getLogger("optimas.baselines.search")
MAX_ENUMERATED = 1_000_000  # larger finite spaces are drawn with replacement (and deduplicated)
MAX_REDRAWS = 200  # consecutive duplicate draws before a random search gives up


class SearchOptions(Options):
    """optimizer.options of the search baseline (module doc)."""

    method: Literal["random", "grid"] = "random"
    seed: int | None = None
    num_candidates: int | None = Field(None, ge=1)
    grid_points: int = Field(5, ge=2)




def candidates(space: list[tuple[str, str, VariableConfig]], method: str, rng: random.Random,
               grid_points: int) -> Iterator[dict[tuple[str, str], Any]]:
    """Assignments of every searched variable, in the order they are tried."""
    keys = [(c, v) for c, v, _ in space]
    if method == "grid":
        for combo in itertools.product(*(grid(var, grid_points) for *_, var in space)):
            yield dict(zip(keys, combo, strict=True))
        return
    finite = all(var.choices is not None for *_, var in space)
    sizes = [len(var.choices) for *_, var in space] if finite else []
    total = math.prod(sizes) if finite else 0
    if finite and total <= MAX_ENUMERATED:
        for index in rng.sample(range(total), total):  # a permutation of the whole space
            values = []
            for (*_, var), size in zip(space, sizes, strict=True):
                index, i = divmod(index, size)
                values.append(var.choices[i])
            yield dict(zip(keys, values, strict=True))
        return
    while True:  # infinite or huge: independent draws; the Trial skips repeats
        yield {(c, v): draw(var, rng) for c, v, var in space}


class SearchMethod(Method):
    """Random or grid search over every hyperparameter and model variable."""

    name = "search"
    Options = SearchOptions

    def optimize(self, ctx: Context) -> State:
        rt, run_dir, initial, opts = ctx.rt, ctx.run_dir, ctx.initial, ctx.options
        run = rt.composed.run
        space = [(c, v, rt.system.cfg.components[c].variables[v])
                 for c, v in variables_of(rt, ("hyperparameter", "model"))]
        if not space:
            raise ConfigError("optimizer.name: the 'search' baseline searches hyperparameter and model "
                              "variables, and this system has none")
        infinite = opts.method == "random" and any(var.choices is None for *_, var in space)
        if infinite and rt.budget.limit is None and opts.num_candidates is None:
            raise ConfigError("optimizer.budget_system_runs: random search over a continuous range "
                              "needs a budget (or optimizer.options.num_candidates) to stop")
        seed = run.seed if opts.seed is None else opts.seed
        rng = random.Random(f"{seed}:search")
        trial = Trial(rt, run_dir, "search")
        trial.start(initial)
        tried, redraws = 0, 0
        for assignment in candidates(space, opts.method, rng, opts.grid_points):
            if opts.num_candidates is not None and tried >= opts.num_candidates:
                break
            candidate = with_values(initial, assignment)
            if trial.seen(candidate):
                redraws += 1
                if redraws >= MAX_REDRAWS:
                    log.info("search: %d draws in a row were already tried; stopping", redraws)
                    break
                continue
            redraws = 0
            if not trial.can_afford():
                break
            trial.try_state(candidate, "all", method=opts.method)
            tried += 1
        log.info("search: %d candidates tried; best val %.4f", tried, trial.val)
        return trial.state
