"""What a method is: a class with its options, the commands it supports, and `optimize`.

Words used throughout the code:

method     what `optimizer.name` picks: a way to optimize a whole system within a budget
           (the Optimas loop, search, LLMSelector, MIPROv2, GEPA, TextGrad, or none);
           one class per method in optimas_cli/methods/
updater    inside the Optimas method, what changes one component's variables of one type
           against its local reward (optimas_cli/methods/optimas/updaters/)
optimizer  the config section (`optimizer.*`) that configures the method: its name, its
           budget, its shared settings and `optimizer.options` (the method's own Options)

A method reads `ctx` (the runtime, the run directory, the run's Budget, its options) and
returns the state it reports; the shared final stage then tests the initial and that
state. It writes history.jsonl records (optimas_cli.history.HistoryRecord) and asks
`ctx.budget` before it spends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from optimas_cli import progress
from optimas_cli.errors import ConfigError
from optimas_cli.graph import State
from optimas_cli.history import short
from optimas_cli.layout import HISTORY
from optimas_cli.run_dir import RunDir
from optimas_cli.stages.evaluate import EvalOptions, evaluate_state

if TYPE_CHECKING:
    from optimas_cli.budget import Budget
    from optimas_cli.runtime import Runtime
    from optimas_cli.schema import OptimizerConfig, RunConfig

OptionsT = TypeVar("OptionsT", bound="Options")


class Options(BaseModel):
    """Base of every method's `optimizer.options` model: unknown keys refused, no coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


def parse_options(method: str, options: dict[str, Any] | None,
                  model: type[OptionsT]) -> OptionsT:
    """`optimizer.options` validated by the method's Options model, defaults filled in.

    An unknown key or a bad value raises ConfigError naming `optimizer.options.<key>`
    and, for a bad value, the value and why it was refused.
    """
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as e:
        # unknown keys first: a typo explains everything else that looks wrong
        err = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"optimizer.options.{key}: unknown option for the '{method}' baseline "
                              f"(known: {', '.join(model.model_fields) or 'none'})") from None
        raise ConfigError(f"optimizer.options.{key}: bad value {err.get('input')!r} for the "
                          f"'{method}' baseline ({err['msg']})") from None


@dataclass
class Context(Generic[OptionsT]):
    """What a method works with: the runtime, its run directory, the starting state, its
    parsed options, and the stage commands asked for (all of them for `optimas run`)."""

    rt: Runtime
    run_dir: RunDir
    initial: State
    options: OptionsT
    stages: tuple[str, ...] = ("collect", "fit", "update")

    @property
    def budget(self) -> Budget:
        return self.rt.budget

    @property
    def run(self) -> RunConfig:
        return self.rt.composed.run

    @property
    def opt(self) -> OptimizerConfig:
        return self.rt.composed.run.optimizer

    def history(self) -> list[dict[str, Any]]:
        return self.run_dir.read_jsonl(HISTORY)

    def validate(self, state: State, label: str) -> dict[str, Any]:
        """`state` on the validation split (one system run per example)."""
        return evaluate_val(self.rt, state, label)

    def initial_record(self, state: State) -> dict[str, Any]:
        return initial_record(self.rt, state)


def evaluate_val(rt: Runtime, state: State, label: str, *,
                 starting: bool = False) -> dict[str, Any]:
    """`state` on the validation split (one system run per example). `starting`: the state
    the run starts from, whose evaluation fails the run (failures.EvaluationFailed) past
    eval.max_failed_share of failed examples or when every one failed; a candidate's
    failures only score 0."""
    run = rt.composed.run
    opts = EvalOptions(workers=run.eval.workers, label=label,
                       max_failed_share=run.eval.max_failed_share if starting else None,
                       all_failed=starting)
    return evaluate_state(rt.system, state, rt.splits["val"], rt.metric, opts)


def initial_record(rt: Runtime, state: State) -> dict[str, Any]:
    """The first history record: the starting system on validation (failing the run when
    too many of its examples fail)."""
    progress.stage("initial validation")
    val = evaluate_val(rt, state, "val initial", starting=True)
    return {"iteration": 0, "kind": "initial", "val": short(val), "state": state,
            **rt.budget.spent()}


class Method:
    """A method: subclass it, name it, give it `Options` and `commands`, write `optimize`.

    `commands`: the stage commands it runs besides `evaluate` (which every method has):
    `run` is every method's; `update` runs the optimization without the final test;
    `collect` and `fit` are the Optimas loop's eager start.
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]] = Options  # no options unless a method declares them
    commands: ClassVar[tuple[str, ...]] = ("run", "update")

    def optimize(self, ctx: Context) -> State:
        raise NotImplementedError

    def final_state(self, ctx: Context) -> State:
        """The state to test: the one the history leaves in place (the initial without one)."""
        history = ctx.history()
        return history[-1]["state"] if history else ctx.initial
