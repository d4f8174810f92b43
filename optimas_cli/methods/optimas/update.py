"""Update one component: optimize each of its variables against its local reward, in turn."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from optimas_cli.graph import State
from optimas_cli.history import steps_of
from optimas_cli.methods.optimas.updaters.choice import optimize_choice
from optimas_cli.methods.optimas.updaters.common import UpdateContext
from optimas_cli.methods.optimas.updaters.prompt import optimize_prompt
from optimas_cli.rewards.trust import untrusted

# the engine first (model, then hyperparameters), then the prompt for that engine
ORDER = {"model": 0, "hyperparameter": 1, "prompt": 2, "weights": 3}


def update_component(ctx: UpdateContext, *, default_model: str,
                     prompt_history: list[tuple[str, float]] = (),
                     reward_dir: Path | None = None, weights_dir: Path | None = None,
                     rejected: list[State] = ()) -> dict[str, Any]:
    """A new state for `ctx.name` (others untouched) and, per variable, the candidates tried.

    `ctx.state` is the state to start from (left as it is); each variable is optimized in
    turn (ORDER), against the state with the variables before it updated. `default_model`:
    the OPRO proposer when `update.proposer_model` is unset; `prompt_history`: the prompts
    tried for the component so far (this module's `prompt_history`). `reward_dir`: the reward model a
    per-input choice reads. `weights_dir`: where a `weights` variable's new adapter is
    saved (the run's weights/<component>/iter_NNN/); without it weights variables are left
    as they are. `rejected`: the states validation rejected so far; a model or
    hyperparameter choice does not lead back to one of them.

    A prompt or weights variable is ranked by the local reward alone, so it changes only
    when the component's head is trusted (`ctx.trust`, optimas_cli/rewards/trust.py: it
    beat chance and the input-blind controls on held-out pairs of the component's own
    outputs); otherwise it is kept, nothing proposed, and the entry's "held" says why.
    Model and hyperparameter choices go by measured returns (`best_of`).
    """
    system, name, cfg = ctx.system, ctx.name, ctx.cfg
    rng = random.Random(f"{ctx.seed}:update:{name}")
    new_state = {c: dict(v) for c, v in ctx.state.items()}
    ctx = replace(ctx, state=new_state)  # each updater sees the variables before it updated
    results = []
    variables = sorted(system.cfg.components[name].variables.items(), key=lambda kv: ORDER[kv[1].type])
    for vname, var in variables:
        why = untrusted(ctx.trust)
        if var.type in ("prompt", "weights") and why is not None:
            results.append({"variable": vname, "type": var.type, "best": new_state[name][vname],
                            "candidates": [], "held": f"the local reward is not trusted: {why}"})
            continue
        if var.type == "prompt":
            if cfg.prompt != "opro":
                from optimas_cli.methods.optimas.updaters.dspy_prompt import optimize_prompt_dspy

                res = optimize_prompt_dspy(ctx, vname, rng)
            else:
                res = optimize_prompt(ctx, vname, rng, cfg.proposer_model or default_model,
                                      prompt_history)
        elif var.type in ("hyperparameter", "model"):
            res = optimize_choice(ctx, vname, rng, reward_dir=reward_dir, rejected=rejected)
        else:  # weights: torch, peft and TRL are imported only when one is optimized
            from optimas_cli.methods.optimas.updaters.weights import optimize_weights

            res = optimize_weights(ctx, vname, out_dir=weights_dir)
        new_state[name][vname] = res["best"]
        results.append(res)
    return {"state": new_state, "variables": results}


def prompt_history(history: list[dict], component: str) -> list[tuple[str, float]]:
    """(instruction, LRF score) of every prompt candidate tried for `component` so far."""
    out = []
    for h in history:
        for step in steps_of(h):
            if step.get("component") != component:
                continue
            for var in step.get("update", {}).get("variables", []):
                if var["type"] == "prompt":
                    out += [(c["value"]["instruction"], c["lrf"]) for c in var["candidates"]
                            if c["lrf"] is not None]
    return out
