"""Baselines, run like Optimas (same system, data, models, budget accounting, test evaluation).

Each module `optimas_cli/baselines/<name>.py` has
    optimize(rt, run_dir, initial: State) -> State
that returns the state to report, writes its own trace under run_dir (at least
`history.jsonl` with one record per candidate it evaluated: {"iteration", "kind",
"val", "system_runs", "state", ...}), and spends at most
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
