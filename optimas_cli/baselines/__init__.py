"""Baselines, run like Optimas (same system, data, models, budget accounting, test evaluation).

Each module `optimas_cli/baselines/<name>.py` has
    optimize(rt, run_dir, initial: State) -> State
that returns the state to report, writes its own trace under run_dir (at least
`history.jsonl` in the loop's format: a first record {"iteration": 0, "kind": "initial",
"val": {...}, "state", "system_runs", "lm_calls", "lm_requests"}, then one per evaluated candidate
{"iteration", "kind": "iteration", "component", "val_before", "val_after", "accepted",
"changed", "state", "system_runs", "lm_calls", "lm_requests"}), and spends at most
`optimizer.budget_system_runs` system runs when that is set.
"""

from __future__ import annotations

import importlib

from optimas_cli.graph import State


def run_baseline(name: str, rt, run_dir, initial: State) -> State:
    if name == "none":
        return initial
    module = importlib.import_module(f"optimas_cli.baselines.{name}")
    return module.optimize(rt, run_dir, initial)
