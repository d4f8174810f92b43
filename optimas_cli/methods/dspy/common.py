"""What the DSPy baselines (mipro, gepa) share: the program, data, metric, and the trial.

Each runs one DSPy optimizer over a SystemProgram (optimas_cli/dspy/) with the
end-to-end metric, then re-evaluates DSPy's best distinct programs with our own
evaluator through a Trial (methods/trial.py), which writes history.jsonl:
record 0 is the initial system on validation; then one record per re-evaluated
program (the numbers `optimas evaluate` would give the converted state), accepted
by the Trial's rule.

Resume: once any candidate record exists DSPy is not rerun (a run killed while
re-evaluating candidates keeps the best of those it logged); with only the initial
record, DSPy runs again (its LM calls mostly cache hits).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import dspy

from optimas_cli.dspy.budget import compile_within_budget
from optimas_cli.dspy.lm import OptimasLM
from optimas_cli.dspy.program import SystemProgram
from optimas_cli.errors import ConfigError
from optimas_cli.graph import State, System
from optimas_cli.layout import dspy_found
from optimas_cli.lm import check_credentials
from optimas_cli.lm.base import LOCAL_PREFIX
from optimas_cli.methods.base import Context, Method, Options
from optimas_cli.methods.trial import Trial, state_diff
from optimas_cli.run_dir import RunDir

if TYPE_CHECKING:
    from optimas_cli.budget import Budget

log = logging.getLogger("optimas.baselines")


class DspyOptions(Options):
    """Options every DSPy baseline takes (configs/optimizer/{mipro,gepa}.yaml document each)."""

    adapter: Literal["optimas", "chat", "json"] = "optimas"
    proposer_adapter: Literal["auto", "dspy", "completion"] = "auto"
    auto: Literal["light", "medium", "heavy"] | None = None


def system_examples(examples: list[Any], system: System) -> list[dspy.Example]:
    """Our Examples as dspy.Examples: the system's inputs, plus `optimas_id` for the metric."""
    return [dspy.Example(**ex.inputs, optimas_id=ex.id).with_inputs(*system.cfg.inputs)
            for ex in examples]


def end_to_end_metric(rt) -> Callable[..., float]:
    """DSPy metric: rt.metric's score of the program's final fields on the gold example."""
    by_id = {ex.id: ex for split in rt.splits.values() for ex in split}

    def metric(gold: dspy.Example, pred: Any, trace: Any = None, *args: Any) -> float:
        fields = {k: pred[k] for k in pred.keys()}
        return float(rt.metric(by_id[gold.optimas_id], fields)["score"])

    metric.by_id = by_id
    return metric


def default_threads(rt) -> int:
    """Local models are served by one in-process pool: 1 thread; API models: eval.workers."""
    return 1 if rt.composed.run.lm.model.startswith(LOCAL_PREFIX) else rt.composed.run.eval.workers


def check_models(rt, *models: str | None) -> None:
    """Before any work: credentials of extra models (proposer, reflection) named in options."""
    names = [m for m in models if m]
    if names:
        check_credentials(names, rt.composed.run.lm)


def prepare_program(rt, run_dir: RunDir, initial: State, name: str, adapter: str
                    ) -> tuple[SystemProgram, list, list, Trial, int]:
    """A DSPy baseline's program, train/val splits, trial, and the system runs already spent.

    The initial validation pass is counted as spent before it happens, so the budget
    plan leaves room for it.
    """
    program = SystemProgram(rt.system, initial, adapter=adapter)
    if not program.prompt_components:
        raise ConfigError(f"optimizer.name={name}: the system has no llm component with a prompt "
                          "variable")
    train, val = rt.splits["train"], rt.splits["val"]
    if not train or not val:
        raise ConfigError(f"optimizer.name={name} needs data.train_size > 0 and data.val_size > 0")
    trial = Trial(rt, run_dir, name)
    spent = rt.system.runs + (0 if trial.disk else len(val))
    return program, train, val, trial, spent


@contextmanager
def planning(trial: Trial, spent: int, origin: str) -> Iterator[None]:
    """Around a baseline's `plan_budget`: its ConfigError, explained when an earlier process
    on this run directory was killed inside DSPy's compile. A compile cannot resume; what
    the killed one spent counts toward the budget (optimas_cli/spend.py), so a restart plans
    with less, and "budget too small" alone would blame the config."""
    try:
        yield
    except ConfigError as e:
        initial = trial.disk[0].get("system_runs") if trial.disk else None
        if initial is None or spent <= initial:
            raise
        raise ConfigError(
            f"{origin}: an earlier process on this run directory was killed inside DSPy's compile, "
            f"which cannot resume; the {spent - initial} system runs it spent there count toward "
            f"the budget, and what is left is too small for a new compile ({e}). Run it again in a "
            "new run directory (the LM cache replays the calls already made), or raise "
            "optimizer.budget_system_runs") from None


def compile_dspy(what: str, model: str, model_option: str, meta: dspy.Adapter | None,
                 lms: list[OptimasLM], compile_fn: Callable[[], Any]) -> Any:
    """`compile_within_budget` with the baselines' remedy for a failure of DSPy's.

    The remedy: a stronger `optimizer.options.<model_option>`, or, when DSPy's own
    adapters rendered the meta-prompts (`meta` None), the completion proposer adapter.
    """
    remedy = (f"Set optimizer.options.{model_option} to a stronger model"
              + ("." if meta else ", or optimizer.options.proposer_adapter=completion."))
    return compile_within_budget(what, model, lms, compile_fn, remedy)


def distinct_states(programs: list[tuple[float | None, Any]], exclude: list[State],
                    limit: int) -> list[tuple[float | None, State]]:
    """Up to `limit` (DSPy score, state) of SystemPrograms, best DSPy score first, no repeats."""
    out: list[tuple[float | None, State]] = []
    seen = list(exclude)
    for score, prog in sorted(programs, key=lambda t: -1e9 if t[0] is None else t[0], reverse=True):
        state = prog.to_state()
        if state in seen:
            continue
        seen.append(state)
        out.append((score, state))
        if len(out) >= limit:
            break
    return out


def save_found(run_dir: RunDir, origin: str, found: list[tuple[float | None, State]],
               extra: dict[str, Any]) -> None:
    """DSPy's programs, kept before they are evaluated: a process killed during their
    evaluation resumes from them instead of compiling again (a compile cannot resume, and
    its runs are already spent)."""
    run_dir.write_json(dspy_found(origin), {"found": [[v, s] for v, s in found],
                                            "extra": extra})


def resume(trial: Trial, run_dir: RunDir, initial: State, origin: str) -> State | None:
    """A resumed run's state when DSPy's compile finished in an earlier process, else None.

    History with an iteration: DSPy ran to the end, its best state comes back. Programs
    kept by `save_found` but no iteration yet (killed while they were evaluated): they are
    evaluated now, without compiling again. Otherwise DSPy must compile (None)."""
    if any(r.get("kind") == "iteration" for r in trial.disk):
        log.info("%s: history.jsonl is complete; returning its best state", origin)
        return trial.start(initial, replay=False)[0]
    if not (run_dir.path / dspy_found(origin)).exists():
        return None
    saved = run_dir.read_json(dspy_found(origin))
    log.info("%s: DSPy's compile finished in an earlier process; evaluating its %d programs",
             origin, len(saved["found"]))
    trial.start(initial, replay=False)
    try_programs(trial, [(v, st) for v, st in saved["found"]], origin, saved["extra"])
    return trial.state


def try_programs(trial: Trial, found: list[tuple[float | None, State]], origin: str,
                 extra: dict[str, Any]) -> None:
    """Evaluate DSPy's programs in order while the budget lasts; a no-op record if none is new.

    Each record carries `origin`, DSPy's own val score (`dspy_val`), the changed
    components and `extra` (what DSPy spent).
    """
    for i, (dspy_val, state) in enumerate(found):
        if not trial.can_afford():
            log.warning("%s: %d candidates left unevaluated", origin, len(found) - i)
            break
        changed = list(state_diff(trial.state, state))
        trial.try_state(state, changed[0] if len(changed) == 1 else "all", origin=origin,
                        dspy_val=dspy_val, changed_components=changed, **extra)
    if not any(r.get("kind") == "iteration" for r in trial.records):
        # marks DSPy as done (a resume does not rerun it) and says why nothing changed
        trial.no_candidate("all", origin=f"{origin}: no program differs from the initial one",
                           dspy_val=None, changed_components=[], **extra)


class DspyMethod(Method):
    """The skeleton of a DSPy optimizer as a method (MiproMethod, GepaMethod fill it in).

    `optimize` reads top to bottom: the proposer model, the program, a resume, the budget
    plan (`plan`: the subclass's reserve and DSPy's own allowance, capped by the program's
    RunCounter), the initial record, DSPy's search (`search`: build, compile, and read
    back the programs it found), then our own evaluation of the best distinct programs.
    """

    model_option: ClassVar[str]  # the option naming the proposer/reflection model

    def plan(self, options: Any, budget: Budget, spent: int, n_train: int, n_val: int,
             n_predictors: int) -> tuple[Any, int | None]:
        """(what `search` needs of the plan, the system-run allowance of DSPy's compile)."""
        raise NotImplementedError

    def search(self, ctx: Context, program: SystemProgram, plan: Any, model: str
               ) -> tuple[list[tuple[float | None, Any]], dict[str, Any]]:
        """Run DSPy; (its programs with DSPy's val score, what to record beside them)."""
        raise NotImplementedError

    def optimize(self, ctx: Context) -> State:
        rt, run_dir, initial, options = ctx.rt, ctx.run_dir, ctx.initial, ctx.options
        model = (getattr(options, self.model_option) or ctx.opt.update.proposer_model
                 or ctx.run.lm.model)
        check_models(rt, model)
        program, train, val, trial, spent = prepare_program(rt, run_dir, initial, self.name,
                                                            options.adapter)
        if (resumed := resume(trial, run_dir, initial, self.name)) is not None:
            return resumed
        with planning(trial, spent, self.name):
            plan, allowance = self.plan(options, rt.budget, spent, len(train), len(val),
                                        len(program.prompt_components))
        trial.start(initial, replay=False)
        program.counter.limit = allowance
        log.info("%s: %d predictors, plan %s, allowance %s system runs (%s)", self.name,
                 len(program.prompt_components), plan, allowance, rt.budget.describe())
        found, extra = self.search(ctx, program, plan, model)
        found = distinct_states(found, [initial], options.max_candidates)
        save_found(run_dir, self.name, found, extra)
        try_programs(trial, found, self.name, extra)
        return trial.state


def seed_of(ctx: Context) -> int:
    """The DSPy optimizer's seed: optimizer.options.seed, else the run's."""
    return ctx.run.seed if ctx.options.seed is None else ctx.options.seed
