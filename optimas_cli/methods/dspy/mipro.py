"""MIPROv2 baseline (Opsahl-Ong et al., 2024) through DSPy: all prompts at once, end-to-end metric.

Every llm component with a prompt variable becomes a named dspy.Predict of one
SystemProgram (optimas_cli/dspy/); DSPy's MIPROv2 bootstraps demonstrations on the
train split, proposes instructions with its grounded proposer, and searches
(instruction, demo set) combinations with Optuna, scoring each program by the
system metric (rt.metric on the final fields) on the val split.

Budget (the run's Budget, capped by optimizer.budget_system_runs):
    initial val evaluation (V runs) + re-evaluation of up to `max_candidates`
    programs (V runs each) are reserved; MIPRO gets the rest, mapped to
    num_trials = (rest - V - bootstrap) // V, bootstrap = (num_candidates - 1) * T
    at most (T train examples; num_candidates - 2 with labeled demos). A hard cap refuses runs past the allowance
    (those examples score 0), so the budget holds whatever MIPRO does.

history.jsonl: record 0 is the initial system; then each distinct program MIPRO
fully evaluated, best MIPRO score first, re-evaluated with our evaluator on val
and accepted by the Trial's rule (methods/dspy/common.py). The best is returned.
"""

from __future__ import annotations

import logging
import math

import dspy
from pydantic import Field

from optimas_cli.dspy.adapters import proposer_adapter
from optimas_cli.dspy.budget import MAX_ERRORS
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

log = logging.getLogger("optimas.mipro")


class MiproOptions(DspyOptions):
    """optimizer.options of the mipro baseline (configs/optimizer/mipro.yaml documents each)."""

    num_candidates: int = Field(4, ge=2)
    num_trials: int | None = Field(None, ge=1)
    max_bootstrapped_demos: int = Field(2, ge=0)
    max_labeled_demos: int = Field(0, ge=0)
    prompt_model: str | None = None
    prompt_max_tokens: int = Field(256, gt=0)
    init_temperature: float = Field(1.0, ge=0)
    program_aware_proposer: bool = False
    data_aware_proposer: bool = True
    tip_aware_proposer: bool = True
    fewshot_aware_proposer: bool = True
    max_candidates: int = Field(3, ge=0)
    num_threads: int | None = Field(None, ge=1)
    seed: int | None = None




def num_trials_for(options: MiproOptions, n_predictors: int) -> int:
    """MIPROv2's own rule: max(2 * variables * log2(candidates), 1.5 * candidates)."""
    variables = n_predictors * (1 if options.max_bootstrapped_demos == options.max_labeled_demos == 0 else 2)
    return int(max(2 * variables * math.log2(options.num_candidates), 1.5 * options.num_candidates))


def bootstrap_compiles(options: MiproOptions) -> int:
    """BootstrapFewShot runs of MIPRO's demo-set step: one per demo set but the zero-shot one and,
    with labeled demos, the labeled-only one (dspy.teleprompt.utils.create_n_fewshot_demo_sets)."""
    return max(0, options.num_candidates - (2 if options.max_labeled_demos > 0 else 1))


def plan_budget(options: MiproOptions, budget: int | None, spent: int, n_train: int, n_val: int,
                n_predictors: int) -> tuple[int | None, int | None]:
    """(num_trials, system-run allowance of MIPRO) under budget_system_runs; ConfigError if too small.

    num_trials None means MIPRO's `auto` preset decides; allowance None means no cap.
    """
    if options.auto and options.num_trials:
        raise ConfigError("optimizer.options.num_trials: MIPROv2's auto presets set their own "
                          "number of trials; leave num_trials null or auto null")
    if budget is None:
        return (None if options.auto else options.num_trials or num_trials_for(options, n_predictors),
                None)
    if options.auto:
        raise ConfigError("optimizer.options.auto: MIPROv2's auto presets set their own number of "
                          "trials; with optimizer.budget_system_runs set, leave auto null")
    bootstrap = bootstrap_compiles(options) * n_train
    reserve = n_val * (1 + options.max_candidates)  # our initial + candidate val evaluations
    allowance = budget - spent - (reserve - n_val)  # `spent` already counts the initial evaluation
    trials = options.num_trials or (allowance - bootstrap - n_val) // n_val
    if trials < 1 or allowance < bootstrap + n_val * (1 + trials):
        need = spent + (reserve - n_val) + bootstrap + n_val * (1 + max(1, trials))
        raise ConfigError(
            f"optimizer.budget_system_runs={budget} is too small for mipro: it needs at least {need} "
            f"(val {n_val} x {1 + options.max_candidates} for the initial and max_candidates "
            f"re-evaluations, bootstrap up to {bootstrap} = {bootstrap_compiles(options)} demo sets x "
            f"train {n_train}, "
            f"val {n_val} x (1 + {max(1, trials)} trials) inside MIPRO); raise it, or lower "
            "optimizer.options.num_candidates / max_candidates / num_trials, data.train_size or "
            "data.val_size")
    return trials, allowance


class MiproMethod(DspyMethod):
    """DSPy MIPROv2 over every llm component's prompt, by the end-to-end metric."""

    name = "mipro"
    Options = MiproOptions
    model_option = "prompt_model"

    def plan(self, options, budget, spent, n_train, n_val, n_predictors):
        return plan_budget(options, budget.limit, spent, n_train, n_val, n_predictors)

    def search(self, ctx: Context, program, plan, model):
        rt, options, trials, seed = ctx.rt, ctx.options, plan, seed_of(ctx)
        system, train, val = rt.system, rt.splits["train"], rt.splits["val"]
        task = task_lm(system, ctx.run.lm, seed=seed)
        proposer = helper_lm(rt.lm, model, component="dspy/proposer",
                             max_tokens=options.prompt_max_tokens, seed=seed)
        optimizer = dspy.MIPROv2(
            metric=end_to_end_metric(rt), prompt_model=proposer, task_model=task, auto=options.auto,
            num_candidates=None if options.auto else options.num_candidates,
            num_threads=options.num_threads or default_threads(rt), max_errors=MAX_ERRORS, seed=seed,
            max_bootstrapped_demos=options.max_bootstrapped_demos,
            max_labeled_demos=options.max_labeled_demos, init_temperature=options.init_temperature,
            verbose=False, track_stats=True, log_dir=None)
        meta = proposer_adapter(options.proposer_adapter, model)

        def compile_mipro():
            with dspy.context(lm=task, **({"adapter": meta} if meta else {})):
                return optimizer.compile(
                    program, trainset=system_examples(train, system),
                    valset=system_examples(val, system), num_trials=trials, minibatch=False,
                    program_aware_proposer=options.program_aware_proposer,
                    data_aware_proposer=options.data_aware_proposer,
                    tip_aware_proposer=options.tip_aware_proposer,
                    fewshot_aware_proposer=options.fewshot_aware_proposer)

        best = compile_dspy("DSPy MIPROv2", model, "prompt_model", meta, [task, proposer],
                            compile_mipro)
        counter = program.counter
        log.info("mipro: MIPRO used %d system runs (%d refused by the budget cap)", counter.used,
                 counter.refused)
        found = [(c["score"] / 100.0, c["program"]) for c in getattr(best, "candidate_programs", [])]
        found = found or [(getattr(best, "score", 0.0) / 100.0, best)]
        return found, {"dspy_runs": counter.used, "dspy_refused": counter.refused}
