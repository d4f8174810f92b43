"""Scoring a component's variable values by its local reward on collected inputs."""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from optimas_cli.graph import State, System


def component_outputs(system: System, name: str, values: dict[str, Any], records: list[dict],
                      state: State, workers: int = 4) -> list[tuple[dict, dict] | None]:
    """(inputs, outputs) of `name` with `values` on each record's upstream fields; None on error."""
    comp = system.cfg.components[name]

    def one(record: dict) -> tuple[dict, dict] | None:
        step = system.run_step(name, record["fields"], state, values=values)
        if step.error:
            return None
        return {k: record["fields"][k] for k in comp.inputs}, step.outputs

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, records))


def lrf_score_values(system: System, name: str, values: dict[str, Any], records: list[dict],
                     lrf, state: State, workers: int = 4) -> dict[str, Any]:
    """Mean local reward of `name`'s outputs under `values`; each output scored with its own input.

    A value under which the component fails on any input is disqualified (score None).
    """
    results = component_outputs(system, name, values, records, state, workers)
    if not results or any(r is None for r in results):
        return {"lrf": None, "failed": sum(r is None for r in results), "scores": []}
    scores = lrf.score(name, [r[0] for r in results], [r[1] for r in results])
    return {"lrf": statistics.fmean(scores), "failed": 0, "scores": [float(s) for s in scores]}


def best_of(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest-scoring candidate; ties go to the earliest (the current value comes first)."""
    valid = [c for c in candidates if c["lrf"] is not None]
    return max(valid, key=lambda c: c["lrf"]) if valid else candidates[0]
