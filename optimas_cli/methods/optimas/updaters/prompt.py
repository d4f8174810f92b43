"""Prompt search against a component's local reward (OPRO, Yang et al. 2023, with bootstrapped demos).

The collected records are split by input: demonstrations come only from the demo pool,
candidates are scored only on the other inputs, so a demo never inflates the score of
the prompt that shows it. The search runs in rounds: each round the proposer LM sees
every instruction tried so far with its mean local reward on the same scoring inputs
(best last) and writes new ones (`proposer_model` may be a stronger model of the ladder
than the task model: DSPy's prompt_model/task_model split). Demonstrations are
bootstrapped from rollout candidates with a high global score and no empty field; the
number of demos (0..max_demos) is searched like the instruction. The current prompt is
a candidate too, so the search never returns what its own reward model ranks lower.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any

from optimas_cli.graph import System
from optimas_cli.lm.base import LM, LMRequest
from optimas_cli.methods.optimas.updaters.common import (
    UpdateContext,
    beats_incumbent,
    best_of,
    lrf_score_values,
)

if TYPE_CHECKING:
    from optimas_cli.rewards import LocalRewardModel

SYSTEM = "You improve the instructions of the steps of an AI pipeline. Reply with the instruction only."
META_PROMPT = """Step: {description}
The step reads: {inputs}. It writes: {outputs}.

Instructions tried so far, each with its score (higher is better):
{history}

Write one new instruction for this step, different from those above, that would score higher.
One sentence, no score, no quotes."""
_SCORE_TAIL = re.compile(r"\s*[\(\[]?\s*(score|scored)\s*[:=]?\s*[-+]?\d.*$", re.IGNORECASE)
_LEAD = re.compile(r"^\s*(new\s+)?instruction\s*:\s*", re.IGNORECASE)


def clean_instruction(text: str) -> str:
    """The instruction in a proposer reply: its first line, without a label or a score."""
    line = next((x for x in text.strip().splitlines() if x.strip()), "")
    line = _SCORE_TAIL.sub("", _LEAD.sub("", line.strip().strip("'\"-* ").strip()))
    return line.strip().strip("'\"").strip()


def propose_instructions(lm: LM, model: str, system: System, name: str,
                         history: list[tuple[str, float]], n: int, seed: int) -> list[str]:
    """Up to `n` new, distinct, non-empty instructions from the proposer LM."""
    comp = system.cfg.components[name]
    shown = sorted(history, key=lambda h: h[1])[-8:]  # OPRO: best last, where the model looks
    prompt = META_PROMPT.format(
        description=comp.description, inputs=", ".join(comp.inputs), outputs=", ".join(comp.outputs),
        history="\n".join(f"- {text!r}: {score:.3f}" for text, score in shown) or "- (none yet)")
    messages = (("system", SYSTEM), ("user", prompt))
    seen = {h[0].strip().lower() for h in history}
    out: list[str] = []
    for i in range(n * 3):  # small models repeat themselves: ask again, up to 3x
        req = LMRequest(model=model, messages=messages, temperature=1.0, max_tokens=80,
                        seed=seed, sample_index=i)
        text = clean_instruction(lm.complete(req, component=f"{name}/proposer").text)
        if len(text.split()) >= 4 and text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
        if len(out) == n:
            break
    return out


def split_records(records: list[dict], n_eval: int, rng: random.Random) -> tuple[list, list]:
    """(demo pool, scoring records), disjoint by input; at least one input for demos
    whenever there are two or more inputs."""
    by_id: dict[str, list[dict]] = {}
    for r in records:
        by_id.setdefault(str(r["example_id"]), []).append(r)
    ids = sorted(by_id)
    rng.shuffle(ids)
    n_eval = min(n_eval, max(1, len(ids) - 1)) if len(ids) > 1 else len(ids)
    evals, demos = ids[:n_eval], ids[n_eval:]
    return [r for i in demos for r in by_id[i]], [r for i in evals for r in by_id[i]]


def good_demo(cand: dict[str, Any], best_score: float, min_score: float) -> bool:
    """A candidate fit to show: the best global score of its input, at least `min_score`,
    and no empty output field."""
    return (cand["score"] >= max(best_score, min_score)
            and all(str(v).strip() for v in cand["outputs"].values()))


def bootstrap_demos(system: System, name: str, records: list[dict],
                    lrf: LocalRewardModel, k: int,
                    min_score: float) -> list[dict]:
    """Up to `k` demonstrations from distinct inputs: good candidates (see `good_demo`),
    the highest local reward first."""
    if k == 0:
        return []
    comp = system.cfg.components[name]
    best: list[tuple[float, float, dict]] = []
    for r in records:
        if not r["candidates"]:
            continue
        top = max(c["score"] for c in r["candidates"])
        good = [c for c in r["candidates"] if good_demo(c, top, min_score) and c["source"] != "gold"]
        if not good:
            continue
        inputs = {f: r["fields"][f] for f in comp.inputs}
        scores = lrf.score(name, [inputs] * len(good), [c["outputs"] for c in good])
        i = max(range(len(good)), key=lambda j: scores[j])
        best.append((good[i]["score"], scores[i], {**inputs, **good[i]["outputs"]}))
    best.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [demo for *_, demo in best[:k]]


def optimize_prompt(ctx: UpdateContext, vname: str, rng: random.Random, proposer_model: str,
                    history: list[tuple[str, float]]) -> dict[str, Any]:
    """Best prompt value for variable `vname` of component `ctx.name`, with every candidate's
    score. `proposer_model` writes the instructions; `history`: (instruction, LRF score) of
    the component's earlier candidates."""
    system, name, state, cfg, lrf = ctx.system, ctx.name, ctx.state, ctx.cfg, ctx.lrf
    current = state[name][vname]
    pool, eval_records = split_records(ctx.records, cfg.per_component_train_size, rng)

    def score(value: dict[str, Any], origin: str, rnd: int) -> dict[str, Any]:
        scored = lrf_score_values(system, name, {**state[name], vname: value}, eval_records, lrf,
                                  state, ctx.workers)
        return {"value": value, "origin": origin, "round": rnd, **scored}

    candidates = [score(current, "current", 0)]
    tried = {current["instruction"].strip().lower()}
    for rnd in range(1, cfg.opro_rounds + 1):
        # this search's own candidates, scored on the same inputs, carry the most weight
        past = list(history) + [(c["value"]["instruction"], c["lrf"]) for c in candidates
                                if c["lrf"] is not None]
        for text in propose_instructions(ctx.lm, proposer_model, system, name, past,
                                         cfg.num_candidates, seed=rng.randrange(1 << 30)):
            if text.strip().lower() not in tried:
                tried.add(text.strip().lower())
                candidates.append(score({"instruction": text, "demos": current["demos"]},
                                        "proposed", rnd))
    demos = bootstrap_demos(system, name, pool, lrf, cfg.max_demos, cfg.demo_min_score)
    top = best_of(candidates, ctx.trust)[0]["value"]["instruction"]
    for k in range(0, len(demos) + 1):  # the number of demos is searched too
        if demos[:k] != current["demos"]:
            candidates.append(score({"instruction": top, "demos": demos[:k]}, f"demos:{k}",
                                    cfg.opro_rounds + 1))
    best, decided_by = best_of(candidates, ctx.trust)
    if best is not candidates[0] and not beats_incumbent(best, candidates[0]):
        # keep the current prompt unless the lead holds on most inputs
        best, decided_by = candidates[0], "kept: the local reward's lead does not hold on most inputs"
    return {"variable": vname, "type": "prompt", "best": best["value"], "candidates": candidates,
            "decided_by": decided_by, "demo_pool": len({r["example_id"] for r in pool}),
            "scored_on": sorted({str(r["example_id"]) for r in eval_records})}
