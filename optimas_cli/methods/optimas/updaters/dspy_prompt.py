"""Prompt search for one component with DSPy's optimizers (MIPROv2 or COPRO) and its local reward.

The Optimas update step's alternative to OPRO (`optimizer.update.prompt: mipro | copro`).
DSPy optimizes the component alone: its trainset is the component's collected
inputs (the upstream fields of each rollout record), its metric the component's
local reward (LRF) of the predictor's output on that input, centered on the
mean reward of the candidates collected for the same input and squashed with a
sigmoid, so 0.5 means "as good as an average collected output" and bootstrapped
demonstrations are kept only above that (MIPROv2's metric_threshold). Each
record's best-reward candidate output is its label (MIPRO's labeled demos).

What DSPy returns is then re-scored exactly like OPRO's candidates
(`lrf_score_values`: mean raw LRF on the same inputs), the current prompt
included, so the choice and the numbers in history.jsonl are comparable across
prompt optimizers. With the `optimas` adapter (the default, see optimas_cli/dspy/adapters.py)
the re-scoring reuses DSPy's cached calls.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from typing import TYPE_CHECKING, Any

import dspy

from optimas_cli.dspy.adapters import proposer_adapter
from optimas_cli.dspy.budget import MAX_ERRORS, compile_within_budget
from optimas_cli.dspy.lm import OptimasLM, helper_lm
from optimas_cli.dspy.predict import component_predict, llm_component, prompt_value, prompt_variable
from optimas_cli.dspy.program import KeepRef, run_predictor
from optimas_cli.graph import Call, State, System
from optimas_cli.methods.optimas.updaters.common import UpdateContext, best_of, lrf_score_values
from optimas_cli.methods.optimas.updaters.prompt import split_records
from optimas_cli.schema import UpdateConfig

if TYPE_CHECKING:
    from optimas_cli.rewards import LocalRewardModel

log = logging.getLogger("optimas.dspy")

DEFAULT_ADAPTER = "optimas"  # DSPy scores the prompts the component will send (dspy/adapters.py)
COPRO_DEPTH = 2  # proposal rounds: the second sees the first's scores


class ComponentProgram(dspy.Module):
    """One llm component as a dspy.Module: forward(**inputs) -> its output fields."""

    def __init__(self, system: System, name: str, state: State, adapter: str, stats: dict[str, int]):
        super().__init__()
        comp = llm_component(system, name)
        vname = prompt_variable(system, name)
        self._ref = KeepRef((system, comp, stats))
        self.adapter = adapter
        self.values = dict(state.get(name, {}))
        self.predictor = component_predict(comp, state[name][vname])

    def forward(self, **inputs: Any) -> dspy.Prediction:
        system, comp, stats = self._ref.obj
        stats["calls"] += 1
        try:
            out = run_predictor(comp, self.predictor, inputs, self.values,
                                Call(lm=system.lm, component=comp.name), self.adapter)
        except Exception:
            stats["failures"] += 1
            raise
        return dspy.Prediction(**out)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def _examples(system: System, name: str, records: list[dict],
              lrf: LocalRewardModel) -> list[dspy.Example]:
    """One dspy.Example per record: inputs, best-reward candidate outputs, mean candidate reward."""
    comp = system.cfg.components[name]
    out = []
    for r in records:
        inputs = {f: r["fields"][f] for f in comp.inputs}
        outs = [c["outputs"] for c in r.get("candidates", [])]
        scores = lrf.score(name, [inputs] * len(outs), outs) if outs else []
        label = outs[max(range(len(outs)), key=lambda i: scores[i])] if outs else {}
        baseline = statistics.fmean(scores) if scores else 0.0
        out.append(dspy.Example(**inputs, **label, lrf_baseline=float(baseline))
                   .with_inputs(*comp.inputs))
    return out


def lrf_metric(name: str, lrf: LocalRewardModel, outputs: list[str]):
    """DSPy metric: sigmoid(LRF(input, prediction) - mean LRF of the input's collected candidates)."""

    def metric(example: dspy.Example, pred: Any, trace: Any = None, *args: Any) -> float:
        inputs = dict(example.inputs())
        produced = {o: str(pred.get(o) or "") for o in outputs}
        score = lrf.score(name, [inputs], [produced])[0]
        return _sigmoid(float(score) - float(example.get("lrf_baseline", 0.0)))

    return metric


def _compile(cfg: UpdateConfig, program: ComponentProgram, metric: Any, task: OptimasLM,
             proposer: OptimasLM, trainset: list, valset: list, seed: int) -> Any:
    if cfg.prompt == "mipro":
        num_candidates = cfg.num_candidates + 1  # MIPRO's slot 0 is the current instruction
        variables = 1 if cfg.max_demos == 0 else 2  # instruction (+ demo set)
        num_trials = int(max(2 * variables * math.log2(num_candidates), 1.5 * num_candidates))
        optimizer = dspy.MIPROv2(
            metric=metric, prompt_model=proposer, task_model=task, auto=None,
            num_candidates=num_candidates, num_threads=1, max_errors=MAX_ERRORS, seed=seed,
            max_bootstrapped_demos=cfg.max_demos, max_labeled_demos=cfg.max_demos,
            metric_threshold=0.5, verbose=False, track_stats=True)
        return optimizer.compile(program, trainset=trainset, valset=valset, num_trials=num_trials,
                                 minibatch=False, program_aware_proposer=False)
    optimizer = dspy.COPRO(prompt_model=proposer, metric=metric, breadth=cfg.num_candidates + 1,
                           depth=COPRO_DEPTH, init_temperature=1.4)
    with dspy.context(max_errors=MAX_ERRORS):  # COPRO passes eval_kwargs to Evaluate() and its call
        return optimizer.compile(program, trainset=valset,
                                 eval_kwargs={"num_threads": 1, "display_progress": False})


def optimize_prompt_dspy(ctx: UpdateContext, vname: str, rng: random.Random,
                         adapter: str = DEFAULT_ADAPTER,
                         adapter_for_proposer: str = "auto") -> dict[str, Any]:
    """Best prompt value for `ctx.name`.`vname` found by DSPy (ctx.cfg.prompt: mipro | copro).

    Returns optimize_prompt's shape: {"variable", "type": "prompt", "best",
    "candidates": [{"value", "origin", "lrf", "failed", "scores", "dspy_score"}]}
    plus "dspy": what DSPy did (optimizer, calls, failures, proposer calls).
    """
    system, name, records, lrf, state, cfg = (ctx.system, ctx.name, ctx.records, ctx.lrf,
                                              ctx.state, ctx.cfg)
    if cfg.prompt not in ("mipro", "copro"):
        raise ValueError(f"optimize_prompt_dspy runs mipro or copro, not {cfg.prompt!r}")
    comp = llm_component(system, name)
    var = system.cfg.components[name].variables[vname]
    current = state[name][vname]
    if not records:
        return {"variable": vname, "type": "prompt", "best": current, "candidates": [],
                "skipped": "no records with candidates"}
    # DSPy bootstraps demos from the trainset: it never holds an input a candidate is scored on
    pool, eval_records = split_records(records, cfg.per_component_train_size, rng)
    trainset = _examples(system, name, pool, lrf)
    valset = _examples(system, name, eval_records, lrf)
    stats = {"calls": 0, "failures": 0}
    program = ComponentProgram(system, name, state, adapter, stats)
    model = comp.default_model
    task = OptimasLM(ctx.lm, model, component=f"dspy/{name}")
    proposer: OptimasLM = helper_lm(ctx.lm, cfg.proposer_model or model, component=f"dspy/{name}/proposer")
    metric = lrf_metric(name, lrf, comp.outputs)
    seed = rng.randrange(1 << 30)

    meta = proposer_adapter(adapter_for_proposer, proposer.model)

    def compile_component():
        with dspy.context(lm=task, **({"adapter": meta} if meta else {})):
            return _compile(cfg, program, metric, task, proposer, trainset, valset, seed)

    best = compile_within_budget(
        f"DSPy {cfg.prompt} on component '{name}'", proposer.model, [task, proposer],
        compile_component, remedy="Set optimizer.update.proposer_model to a stronger model, or use "
                                  "optimizer.update.prompt=opro.")
    found = [(c["score"], c["program"]) for c in getattr(best, "candidate_programs", [])]

    found = [(s, p) for s, p in found if p is not None] or [(None, best)]
    found.sort(key=lambda t: -1.0 if t[0] is None else t[0], reverse=True)
    values: list[list] = [[current, "current", None]]
    for score, prog in found:
        value = prompt_value(prog.predictor, comp, var.max_demos)
        dspy_score = None if score is None else score / 100.0
        same = next((v for v in values if v[0] == value), None)
        if same is not None:
            same[2] = dspy_score if same[2] is None else same[2]
        elif len(values) <= cfg.num_candidates:
            values.append([value, cfg.prompt, dspy_score])
    candidates = []
    for value, origin, dspy_score in values:  # scored like OPRO's candidates (comparable numbers)
        scored = lrf_score_values(system, name, {**state[name], vname: value}, eval_records, lrf, state)
        candidates.append({"value": value, "origin": origin, **scored, "dspy_score": dspy_score})
    chosen, decided_by = best_of(candidates, ctx.trust)
    return {"variable": vname, "type": "prompt", "best": chosen["value"], "candidates": candidates,
            "decided_by": decided_by,
            "dspy": {"optimizer": cfg.prompt, "adapter": adapter,
                     "proposer_adapter": type(meta).__name__ if meta else "dspy",
                     "predictor_calls": stats["calls"],
                     "predictor_failures": stats["failures"], "programs_found": len(found)}}
