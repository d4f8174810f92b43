"""Hyperparameter and model choice: score every candidate value by the mean local reward."""

from __future__ import annotations

import random
from typing import Any

from optimas_cli.graph import State, System
from optimas_cli.optimizers.common import best_of, lrf_score_values
from optimas_cli.schema import UpdateConfig
from optimas_cli.stages.collect import space_values


def optimize_choice(system: System, name: str, vname: str, records: list[dict], lrf, state: State,
                    cfg: UpdateConfig, rng: random.Random, workers: int = 4) -> dict[str, Any]:
    """Best value of variable `vname` of component `name`; the current value is a candidate."""
    var = system.cfg.components[name].variables[vname]
    current = state[name][vname]
    values = [current] + [v for v in space_values(var, cfg.max_choices, rng) if v != current]
    candidates = []
    for value in values:
        scored = lrf_score_values(system, name, {**state[name], vname: value}, records, lrf, state,
                                  workers)
        candidates.append({"value": value, **scored})
    best = best_of(candidates)
    return {"variable": vname, "type": var.type, "best": best["value"], "candidates": candidates}
