"""Baselines, run like Optimas (same system, data, models, budget accounting, test evaluation).

Each module `optimas_cli/baselines/<name>.py` is registered in `optimas_cli.methods` and has
    optimize(rt, run_dir, initial: State) -> State
and `OPTIONS`, the pydantic model of its `optimizer.options`. It returns the state to
report, writes history.jsonl in the format of `optimas_cli.history` (through
`baselines.common.Trial`), and spends at most `optimizer.budget_system_runs` system runs.
"""
