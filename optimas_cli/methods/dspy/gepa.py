"""GEPA baseline (Agrawal et al., 2025) through dspy.GEPA: reflective prompt evolution, end to end.

Every llm component with a prompt variable is a named dspy.Predict of one
SystemProgram (optimas_cli/dspy/). GEPA runs the system on train minibatches,
asks a reflection LM to rewrite one predictor's instruction from the traces
and a textual feedback of the system metric, keeps a Pareto front of
candidates scored on the val split, and returns the best. GEPA evolves
instructions only; demonstrations stay as configured.

Feedback (the metric GEPA reflects on): the system's final output, the expected
one, the metric's score and sub-metrics, and for a predictor the outputs it
produced. The reflection LM defaults to lm.model (the embedded model offline);
optimizer.options.reflection_model picks another.

Budget (the run's Budget, capped by optimizer.budget_system_runs): the initial
val evaluation and up to `max_candidates` re-evaluations (V runs each) are
reserved; GEPA gets the rest as max_metric_calls (less one iteration's
overshoot: V + 2 x reflection_minibatch_size), and a hard cap refuses runs past
the allowance (those examples score 0).

history.jsonl: record 0 is the initial system; then GEPA's distinct candidates,
best GEPA val score first, re-evaluated with our evaluator on val and accepted
by the Trial's rule (methods/dspy/common.py). The best of them is returned.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import dspy
from dspy.teleprompt.gepa.instruction_proposal import InstructionProposer
from pydantic import Field

from optimas_cli.dspy.adapters import proposer_adapter
from optimas_cli.dspy.budget import DSPyOptimizerError
from optimas_cli.dspy.lm import helper_lm, task_lm
from optimas_cli.errors import ConfigError
from optimas_cli.methods.base import Context
from optimas_cli.methods.dspy.common import (
    DspyMethod,
    DspyOptions,
    compile_dspy,
    default_threads,
    end_to_end_metric,
    seed_of,
    system_examples,
)

log = logging.getLogger("optimas.gepa")


class GepaOptions(DspyOptions):
    """optimizer.options of the gepa baseline (configs/optimizer/gepa.yaml documents each)."""

    max_metric_calls: int | None = Field(None, ge=1)
    reflection_model: str | None = None
    reflection_max_tokens: int = Field(256, gt=0)
    reflection_temperature: float = Field(1.0, ge=0)
    reflection_minibatch_size: int = Field(3, ge=1)
    candidate_selection_strategy: Literal["pareto", "current_best"] = "pareto"
    use_merge: bool = False
    skip_perfect_score: bool = True
    max_candidates: int = Field(3, ge=0)
    num_threads: int | None = Field(None, ge=1)
    seed: int | None = None




class CountingProposer:
    """GEPA's instruction proposer, counting proposals and the ones that failed (GEPA skips those)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.calls = 0
        self.failures = 0
        self.first_error: BaseException | None = None

    def __call__(self, candidate: dict[str, str], reflective_dataset: Any,
                 components_to_update: list[str]) -> dict[str, str]:
        self.calls += 1
        try:
            return self.inner(candidate, reflective_dataset, components_to_update)
        except Exception as e:
            self.failures += 1
            self.first_error = self.first_error or e
            raise


def feedback_metric(rt) -> Any:
    """GEPA's metric: the system score plus a textual feedback (module doc)."""
    score_of = end_to_end_metric(rt)
    by_id = score_of.by_id
    final = rt.system.cfg.final_output

    def metric(gold: dspy.Example, pred: Any, trace: Any = None, pred_name: str | None = None,
               pred_trace: Any = None) -> dspy.Prediction:
        example = by_id[gold.optimas_id]
        fields = {k: pred[k] for k in pred.keys()}
        scores = rt.metric(example, fields)
        score = float(scores["score"])
        others = ", ".join(f"{k} {v:.2f}" for k, v in scores.items()
                           if k != "score" and isinstance(v, (int, float)))
        text = (f"The system answered {final} = {str(fields.get(final, ''))[:200]!r}; the expected "
                f"{final} is {str(example.target.get(final, ''))[:200]!r}. Score {score:.2f}"
                + (f" ({others})." if others else "."))
        if pred_name and pred_trace:
            _, _, outputs = pred_trace[0]
            shown = {k: str(v)[:200] for k, v in dict(outputs).items()}
            text += f" The step '{pred_name}' produced {shown}."
        return dspy.Prediction(score=score, feedback=text)

    return metric


def plan_budget(options: GepaOptions, budget: int | None, spent: int, n_val: int
                ) -> tuple[dict[str, Any], int | None]:
    """(GEPA's budget kwargs, system-run allowance) under budget_system_runs; ConfigError if too small."""
    if options.auto and options.max_metric_calls:
        raise ConfigError("optimizer.options.max_metric_calls: GEPA takes auto or max_metric_calls, "
                          "not both")
    if budget is None:
        if options.max_metric_calls:
            return {"max_metric_calls": options.max_metric_calls}, None
        return {"auto": options.auto or "light"}, None
    if options.auto:
        raise ConfigError("optimizer.options.auto: with optimizer.budget_system_runs set, GEPA's "
                          "budget comes from it; leave auto null")
    allowance = budget - spent - n_val * options.max_candidates
    overshoot = n_val + 2 * options.reflection_minibatch_size
    calls = options.max_metric_calls or allowance - overshoot
    if calls < n_val + options.reflection_minibatch_size or calls > allowance:
        need = spent + n_val * options.max_candidates + overshoot + n_val + options.reflection_minibatch_size
        raise ConfigError(
            f"optimizer.budget_system_runs={budget} is too small for gepa: it needs at least {need} "
            f"(val {n_val} x (1 initial + {options.max_candidates} max_candidates re-evaluations), "
            f"GEPA's seed evaluation on val ({n_val}) and one reflection step "
            f"({options.reflection_minibatch_size}), plus {overshoot} of overshoot margin); raise it, "
            "or lower optimizer.options.max_candidates, reflection_minibatch_size or data.val_size")
    return {"max_metric_calls": calls}, allowance


class GepaMethod(DspyMethod):
    """DSPy GEPA over every llm component's prompt, by the end-to-end metric."""

    name = "gepa"
    Options = GepaOptions
    model_option = "reflection_model"

    def plan(self, options, budget, spent, n_train, n_val, n_predictors):
        return plan_budget(options, budget.limit, spent, n_val)

    def search(self, ctx: Context, program, plan, model):
        rt, options, budget_kwargs, seed = ctx.rt, ctx.options, plan, seed_of(ctx)
        system, train, val = rt.system, rt.splits["train"], rt.splits["val"]
        reflection_model = model
        task = task_lm(system, ctx.run.lm, seed=seed)
        reflection = helper_lm(rt.lm, reflection_model, component="dspy/reflection",
                               temperature=options.reflection_temperature,
                               max_tokens=options.reflection_max_tokens, seed=seed)
        meta = proposer_adapter(options.proposer_adapter, reflection_model)
        proposer = CountingProposer(InstructionProposer(adapter=meta) if meta else InstructionProposer())
        gepa = dspy.GEPA(
            metric=feedback_metric(rt), **budget_kwargs, reflection_lm=reflection,
            instruction_proposer=proposer, reflection_minibatch_size=options.reflection_minibatch_size,
            candidate_selection_strategy=options.candidate_selection_strategy,
            skip_perfect_score=options.skip_perfect_score, use_merge=options.use_merge,
            num_threads=options.num_threads or default_threads(rt), track_stats=True, seed=seed)

        def compile_gepa():
            with dspy.context(lm=task):
                return gepa.compile(program, trainset=system_examples(train, system),
                                    valset=system_examples(val, system))

        best = compile_dspy("dspy.GEPA", reflection_model, "reflection_model", meta, [task, reflection],
                            compile_gepa)
        counter = program.counter
        log.info("gepa: GEPA used %d system runs (%d refused by the budget cap); %d proposals, %d failed%s",
                 counter.used, counter.refused, proposer.calls, proposer.failures,
                 f" (the first: {type(proposer.first_error).__name__}: {str(proposer.first_error)[:300]})"
                 if proposer.first_error else "")
        if proposer.calls and proposer.failures == proposer.calls:
            raise DSPyOptimizerError(
                f"dspy.GEPA: the reflection model {reflection_model!r} produced no usable instruction in "
                f"{proposer.calls} proposals (first error: {type(proposer.first_error).__name__}: "
                f"{str(proposer.first_error)[:400]}); GEPA kept the initial prompts. Use a stronger "
                "optimizer.options.reflection_model"
                + ("" if meta else ", or optimizer.options.proposer_adapter=completion"))
        results = getattr(best, "detailed_results", None)
        found = list(zip(results.val_aggregate_scores, results.candidates, strict=True)) if results else [
            (None, best)]
        extra = {"dspy_runs": counter.used, "dspy_refused": counter.refused,
                 "proposals": proposer.calls, "proposal_failures": proposer.failures}
        return found, extra
