"""Scoring a component's variable values by its local reward on collected inputs."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optimas_cli.graph import State, System
from optimas_cli.rewards.trust import untrusted

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
    training); `workers`: component runs in flight at once while scoring; `trust`: whether
    `lrf` may rank the component's outputs (optimas_cli/rewards/trust.py `assess`, from the
    fit's held-out metrics; None, not measured, is not trusted).
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
    trust: Mapping[str, Any] | None = None


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


def best_of(candidates: list[dict[str, Any]],
            trust: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The chosen candidate and what decided it; the current value comes first.

    When every candidate's outputs were all rolled out, the highest measured global return
    wins. A tie in it goes to the local reward when its head is trusted (`trust`, see
    optimas_cli/rewards/trust.py), else to the earliest tied candidate (the current value,
    when it is among them). When not every candidate was rolled out, the local reward ranks
    them if trusted; if not, the current value is kept. A candidate that failed on an input
    (lrf None) is never chosen; when all did, the current value is kept.
    """
    valid = [c for c in candidates if c["lrf"] is not None]
    why = untrusted(trust)
    if not valid:
        return candidates[0], "kept: every candidate failed on some input"
    if all(c.get("observed") is not None for c in valid):
        top = max(c["observed"] for c in valid)
        tied = [c for c in valid if c["observed"] == top]
        if len(tied) == 1:
            return tied[0], "measured return"
        if why is None:
            return max(tied, key=lambda c: c["lrf"]), "measured return, tie broken by the local reward"
        kept = "kept" if tied[0] is candidates[0] else "went to the earliest candidate"
        return tied[0], f"measured return; the tie {kept}: {why}"
    if why is None:
        return max(valid, key=lambda c: c["lrf"]), "local reward"
    return candidates[0], f"kept: not every candidate was rolled out, and {why}"


def beats_incumbent(best: dict[str, Any], incumbent: dict[str, Any]) -> bool:
    """Whether `best` scores higher than `incumbent` on more inputs than it scores lower
    (paired by input): a mean lead that rests on one input is noise."""
    if best is incumbent or incumbent["lrf"] is None:
        return best is not incumbent
    wins = sum(a > b for a, b in zip(best["scores"], incumbent["scores"], strict=True))
    losses = sum(a < b for a, b in zip(best["scores"], incumbent["scores"], strict=True))
    return wins > losses
