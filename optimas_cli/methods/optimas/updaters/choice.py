"""Hyperparameter and model choice: score every candidate value by the mean local reward."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimas_cli import space
from optimas_cli.graph import State, System, is_per_input
from optimas_cli.methods.optimas.updaters.common import best_of, lrf_score_values
from optimas_cli.schema import UpdateConfig

if TYPE_CHECKING:
    from optimas_cli.rewards import LocalRewardModel


def optimize_choice(system: System, name: str, vname: str, records: list[dict],
                    lrf: LocalRewardModel, state: State,
                    cfg: UpdateConfig, rng: random.Random, workers: int = 4,
                    reward_dir: Path | None = None,
                    rejected: list[State] = ()) -> dict[str, Any]:
    """Best value of variable `vname` of component `name`; the current value is a candidate.

    A value that would make the system a state validation already rejected (`rejected`) is
    scored and listed ("rejected_before") but not chosen: validation measured it on more
    examples than the rollouts did.

    With `choice_mode: per_input` the result is a policy that picks per input at inference,
    with probability proportional to exp(LRF / choice_temperature), using the reward model
    saved in `reward_dir`.
    """
    var = system.cfg.components[name].variables[vname]
    current = state[name][vname]
    if is_per_input(current):
        current = current["choices"][0]
    values = [current] + space.alternatives(var, current, cfg.max_choices, rng)
    candidates = []
    for value in values:
        scored = lrf_score_values(system, name, {**state[name], vname: value}, records, lrf, state,
                                  workers)
        again = value != current and {**state, name: {**state[name], vname: value}} in rejected
        candidates.append({"value": value, **scored, **({"rejected_before": True} if again else {})})
    best = best_of([c for c in candidates if not c.get("rejected_before")])
    result = {"variable": vname, "type": var.type, "best": best["value"], "candidates": candidates}
    if cfg.choice_mode == "per_input" and reward_dir is not None:
        # choose at inference, per input, among the values the local reward can tell apart
        result["best"] = {"mode": "per_input", "choices": values,
                          "temperature": cfg.choice_temperature, "reward_model": str(reward_dir)}
    return result
