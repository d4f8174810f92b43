"""A System as a dspy.Module, and one component call through its DSPy predictor.

SystemProgram has one named dspy.Predict per optimizable llm component, so DSPy's
optimizers see (and trace, bootstrap, rewrite) them. Its `forward` is `System.run`
on a view of the system whose prompt components answer through those predictors;
every other component (retriever, python) runs as in any evaluation.
"""

from __future__ import annotations

import copy
from typing import Any

import dspy

from optimas_cli.budget import Budget
from optimas_cli.components.llm import LLMComponent
from optimas_cli.dspy.adapters import ADAPTERS, make_adapter
from optimas_cli.dspy.budget import RunCounter
from optimas_cli.dspy.lm import request_defaults
from optimas_cli.dspy.predict import (
    component_predict,
    llm_component,
    prompt_components,
    prompt_value,
    prompt_variable,
)
from optimas_cli.graph import Call, State, System, Trace

CHAT_OVERHEAD_TOKENS = 32  # "[[ ## field ## ]]" headers and "[[ ## completed ## ]]" around the value


def run_predictor(comp: LLMComponent, pred: dspy.Predict, inputs: dict[str, Any],
                  values: dict[str, Any], call: Call, adapter: str) -> dict[str, Any]:
    """One call of component `comp` through its DSPy predictor; its output fields.

    The request takes the component's own settings (model, sampling, stop, token
    limit) for `values`; DSPy's chat/json formats get room for their markers.
    """
    settings = comp.request_settings(values, call)
    settings["component"] = f"dspy/{comp.name}"
    style = comp.prompt_style(settings["model"])
    if adapter == "optimas":
        settings["completion"] = style == "completion"
    else:  # DSPy's formats need room for their markers and are multi-line
        settings["max_tokens"] += CHAT_OVERHEAD_TOKENS
        settings["stop"] = ()
    with request_defaults(**settings), dspy.context(adapter=make_adapter(adapter, comp, style)):
        out = pred(**inputs)
    return {o: out.get(o) if out.get(o) is not None else "" for o in comp.outputs}


class KeepRef:
    """Holds a non-copyable object (System, counters) through DSPy's deep copies."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __deepcopy__(self, memo: dict) -> KeepRef:
        return self


class _PredictorStep:
    """An llm component whose forward goes through a predictor of a SystemProgram."""

    def __init__(self, comp: LLMComponent, program: SystemProgram):
        self.comp = comp
        self.program = program
        self.name, self.description = comp.name, comp.description
        self.inputs, self.outputs, self.variables = comp.inputs, comp.outputs, comp.variables

    def forward(self, inputs: dict[str, Any], values: dict[str, Any], call: Call) -> dict[str, Any]:
        return run_predictor(self.comp, getattr(self.program, self.name), inputs, values, call,
                             self.program.adapter)


class SystemProgram(dspy.Module):
    """A System as a dspy.Module: one predictor attribute per optimizable llm component.

    `state` supplies every non-prompt variable (retriever k, model choices, ...)
    and the initial prompts. `counter` caps and counts the system runs.
    """

    def __init__(self, system: System, state: State, *, adapter: str = "optimas",
                 components: list[str] | None = None, counter: RunCounter | None = None):
        super().__init__()
        if adapter not in ADAPTERS:
            raise ValueError(f"unknown DSPy adapter {adapter!r}; use one of {list(ADAPTERS)}")
        self._system = KeepRef(system)
        self._counter = KeepRef(counter or RunCounter(system))
        self.adapter = adapter
        self.state = copy.deepcopy(state)
        self.prompt_components = components if components is not None else prompt_components(system)
        for name in self.prompt_components:
            if name.startswith("_") or hasattr(dspy.Module, name) or name in (
                    "state", "adapter", "prompt_components"):
                raise ValueError(f"component name '{name}' clashes with a dspy.Module attribute; "
                                 "rename the component to optimize it with DSPy")
            vname = prompt_variable(system, name)
            setattr(self, name, component_predict(llm_component(system, name), state[name][vname]))

    @property
    def system(self) -> System:
        return self._system.obj

    @property
    def counter(self) -> RunCounter:
        return self._counter.obj

    def to_state(self, max_demos: dict[str, int] | None = None) -> State:
        """Our state: `self.state` with each predictor's prompt value in its prompt variable."""
        out = copy.deepcopy(self.state)
        for name in self.prompt_components:
            vname = prompt_variable(self.system, name)
            limit = (max_demos or {}).get(name, self.system.cfg.components[name].variables[vname].max_demos)
            out[name][vname] = prompt_value(getattr(self, name), llm_component(self.system, name), limit)
        return out

    def trace(self, **inputs: Any) -> Trace:
        """Run the graph once: `System.run` with the prompt components through the predictors.

        The run is counted (and capped) by `counter` on the real system; the view it
        runs on is a shallow copy (same LM, config, reward models) whose own run count
        is discarded.
        """
        self.counter.take()
        view = copy.copy(self.system)
        view.budget = Budget(None, self.system.lm)  # counted above, by the counter
        view.components = {**self.system.components,
                           **{n: _PredictorStep(self.system.components[n], self)
                              for n in self.prompt_components}}
        return view.run(inputs, self.state)

    def forward(self, **inputs: Any) -> dspy.Prediction:
        trace = self.trace(**inputs)
        if trace.error:
            raise RuntimeError(trace.error)
        return dspy.Prediction(**trace.fields)
