"""Hyperparameter and model choice: score every candidate value by the mean local reward."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from optimas_cli import space
from optimas_cli.graph import State, is_per_input
from optimas_cli.methods.optimas.updaters.common import UpdateContext, best_of, lrf_score_values
from optimas_cli.rewards.trust import untrusted


def optimize_choice(ctx: UpdateContext, vname: str, rng: random.Random, *,
                    reward_dir: Path | None = None,
                    rejected: list[State] = ()) -> dict[str, Any]:
    """Best value of variable `vname` of component `ctx.name`; the current value is a candidate.

    A value that would make the system a state validation already rejected (`rejected`) is
    scored and listed ("rejected_before") but not chosen: validation measured it on more
    examples than the rollouts did. `best_of` decides, and the result says how ("decided_by").

    With `choice_mode: per_input` and a trusted head (`ctx.trust`), the result is a policy
    that picks per input at inference, with probability proportional to
    exp(LRF / choice_temperature), using the reward model saved in `reward_dir`; with an
    untrusted head the choice stays static and "per_input" says why.
    """
    system, name, state, cfg = ctx.system, ctx.name, ctx.state, ctx.cfg
    var = system.cfg.components[name].variables[vname]
    current = state[name][vname]
    if is_per_input(current):
        current = current["choices"][0]
    values = [current] + space.alternatives(var, current, cfg.max_choices, rng)
    candidates = []
    for value in values:
        scored = lrf_score_values(system, name, {**state[name], vname: value}, ctx.records,
                                  ctx.lrf, state, ctx.workers)
        again = value != current and {**state, name: {**state[name], vname: value}} in rejected
        candidates.append({"value": value, **scored, **({"rejected_before": True} if again else {})})
    best, decided_by = best_of([c for c in candidates if not c.get("rejected_before")], ctx.trust)
    result = {"variable": vname, "type": var.type, "best": best["value"], "candidates": candidates,
              "decided_by": decided_by}
    why = untrusted(ctx.trust)
    if cfg.choice_mode == "per_input" and reward_dir is not None and why is not None:
        result["per_input"] = f"not chosen per input: {why}"
    elif cfg.choice_mode == "per_input" and reward_dir is not None:
        # choose at inference, per input, among the values the local reward can tell apart
        result["best"] = {"mode": "per_input", "choices": values,
                          "temperature": cfg.choice_temperature, "reward_model": str(reward_dir)}
    return result
