"""Prompt search against a component's local reward (OPRO-style, Yang et al. 2023).

A proposer LM sees the component's description and the instructions tried so
far with their scores, and writes new instructions. Demonstrations are the
highest-reward outputs found in the collected rollouts. Each (instruction,
demonstrations) candidate is scored by the mean local reward of the
component's outputs on the same inputs; the current prompt is a candidate too,
so the search never returns something its own reward model ranks lower.
"""

from __future__ import annotations

import random
from typing import Any

from optimas_cli.graph import State, System
from optimas_cli.lm.base import LM, LMRequest
from optimas_cli.optimizers.common import best_of, lrf_score_values
from optimas_cli.schema import UpdateConfig

META_PROMPT = """You write the instruction for one step of an AI pipeline.
Step: {description}
The step reads: {inputs}. It writes: {outputs}.

Instructions tried so far, with their scores (higher is better):
{history}

Write one new instruction, different from those above, that would score higher. One sentence.
Instruction:"""


def propose_instructions(lm: LM, model: str, system: System, name: str,
                         history: list[tuple[str, float]], n: int, seed: int) -> list[str]:
    """Up to `n` new, distinct, non-empty instructions from the proposer LM."""
    comp = system.cfg.components[name]
    shown = sorted(history, key=lambda h: h[1])[-8:]  # OPRO: best last, where the model looks
    prompt = META_PROMPT.format(
        description=comp.description, inputs=", ".join(comp.inputs), outputs=", ".join(comp.outputs),
        history="\n".join(f"- {text!r}: {score:.3f}" for text, score in shown) or "- (none yet)")
    seen = {h[0].strip().lower() for h in history}
    out: list[str] = []
    for i in range(n * 3):  # small models repeat themselves: ask again, up to 3x
        req = LMRequest(model=model, prompt=prompt, temperature=1.0, max_tokens=60, stop=("\n",),
                        seed=seed, sample_index=i)
        text = lm.complete(req, component=f"{name}/proposer").text.strip().strip("'\"- ").strip()
        if len(text.split()) >= 4 and text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
        if len(out) == n:
            break
    return out


def reward_demos(system: System, name: str, records: list[dict], lrf, k: int) -> list[dict]:
    """The `k` best (by local reward) candidate outputs of distinct inputs, as demonstrations."""
    if k == 0:
        return []
    comp = system.cfg.components[name]
    best: list[tuple[float, dict]] = []
    for r in records:
        if not r["candidates"]:
            continue
        inputs = {f: r["fields"][f] for f in comp.inputs}
        outs = [c["outputs"] for c in r["candidates"]]
        scores = lrf.score(name, [inputs] * len(outs), outs)
        i = max(range(len(outs)), key=lambda j: scores[j])
        best.append((scores[i], {**inputs, **outs[i]}))
    best.sort(key=lambda t: t[0], reverse=True)
    return [demo for _, demo in best[:k]]


def optimize_prompt(system: System, name: str, vname: str, records: list[dict], lrf,
                    state: State, cfg: UpdateConfig, lm: LM, proposer_model: str,
                    history: list[tuple[str, float]], rng: random.Random,
                    workers: int = 4) -> dict[str, Any]:
    """Best prompt value for variable `vname` of component `name`, with every candidate's score."""
    current = state[name][vname]
    eval_records = records if len(records) <= cfg.per_component_train_size else rng.sample(
        records, cfg.per_component_train_size)

    def score(value: dict[str, Any], origin: str) -> dict[str, Any]:
        scored = lrf_score_values(system, name, {**state[name], vname: value}, eval_records, lrf,
                                  state, workers)
        return {"value": value, "origin": origin, **scored}

    candidates = [score(current, "current")]
    past = list(history) + [(current["instruction"], candidates[0]["lrf"] or 0.0)]
    for text in propose_instructions(lm, proposer_model, system, name, past, cfg.num_candidates,
                                     seed=rng.randrange(1 << 30)):
        candidates.append(score({"instruction": text, "demos": current["demos"]}, "proposed"))
    demos = reward_demos(system, name, records, lrf, cfg.max_demos)
    if demos and demos != current["demos"]:
        top = best_of(candidates)
        candidates.append(score({"instruction": top["value"]["instruction"], "demos": demos},
                                "reward_demos"))
    best = best_of(candidates)
    return {"variable": vname, "type": "prompt", "best": best["value"], "candidates": candidates}
