"""Scoring a component's variable values by its local reward on collected inputs."""

from __future__ import annotations

import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optimas_cli.graph import State, System

if TYPE_CHECKING:
    from optimas_cli.lm.base import LM
    from optimas_cli.rewards import LocalRewardModel
    from optimas_cli.schema import UpdateConfig


@dataclass(frozen=True)
class UpdateContext:
    """What every updater of one component's variables works with.

    `records`: the component's rollout records (the inputs candidates are scored on, and
    the rolled-out outputs); `lrf`: its local reward (anything with
    `.score(component, inputs, outputs) -> list[float]`); `state`: the system's values,
    the variables updated before this one included; `cfg`: optimizer.update; `lm`: the
    LM requests go through; `seed`: the update's seed (a weights update's sampling and
    training); `workers`: component runs in flight at once while scoring.
    """

    system: System
    name: str
    records: list[dict]
    lrf: LocalRewardModel
    state: State
    cfg: UpdateConfig
    lm: LM
    seed: int = 0
    workers: int = 4


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


def _key(outputs: dict[str, Any]) -> str:
    return json.dumps(outputs, sort_keys=True, ensure_ascii=False, default=str)


def observed_return(record: dict, outputs: dict[str, Any]) -> float | None:
    """The global score a rollout measured for exactly these outputs on this input, if any."""
    for cand in record.get("candidates", []):
        if (cand.get("source") != "gold" and "score" in cand
                and _key(cand["outputs"]) == _key(outputs)):
            return float(cand["score"])
    return None


def lrf_score_values(system: System, name: str, values: dict[str, Any], records: list[dict],
                     lrf: LocalRewardModel, state: State, workers: int = 4) -> dict[str, Any]:
    """Mean local reward of `name`'s outputs under `values`; each output scored with its own input.

    A value under which the component fails on any input is disqualified (score None).
    `observed` is the mean global score the rollouts measured for the same outputs, when
    every output was itself rolled out (None otherwise): the return the LRF models.
    """
    results = component_outputs(system, name, values, records, state, workers)
    if not results or any(r is None for r in results):
        return {"lrf": None, "failed": sum(r is None for r in results), "scores": [],
                "observed": None}
    scores = lrf.score(name, [r[0] for r in results], [r[1] for r in results])
    seen = [observed_return(rec, r[1]) for rec, r in zip(records, results, strict=True)]
    return {"lrf": statistics.fmean(scores), "failed": 0, "scores": [float(s) for s in scores],
            "observed": statistics.fmean(seen) if None not in seen else None}


def best_of(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest-scoring candidate; ties go to the earliest (the current value comes first).

    When every candidate's outputs were all rolled out, candidates are ranked by the
    measured global return (the LRF as tie-break); otherwise by the local reward.
    """
    valid = [c for c in candidates if c["lrf"] is not None]
    if not valid:
        return candidates[0]
    if all(c.get("observed") is not None for c in valid):
        return max(valid, key=lambda c: (c["observed"], c["lrf"]))
    return max(valid, key=lambda c: c["lrf"])


def beats_incumbent(best: dict[str, Any], incumbent: dict[str, Any]) -> bool:
    """Whether `best` scores higher than `incumbent` on more inputs than it scores lower
    (paired by input): a mean lead that rests on one input is noise."""
    if best is incumbent or incumbent["lrf"] is None:
        return best is not incumbent
    wins = sum(a > b for a, b in zip(best["scores"], incumbent["scores"], strict=True))
    losses = sum(a < b for a, b in zip(best["scores"], incumbent["scores"], strict=True))
    return wins > losses
