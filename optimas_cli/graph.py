"""A compound system as a DAG of components, run in topological order.

The system holds no variable values: a *state* (component -> variable -> value)
is passed to every run, so optimizers can try a candidate and revert by simply
keeping the old state. Every run returns a Trace of what each component saw,
produced and spent.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from optimas_cli.budget import Budget
from optimas_cli.components import resolve_kind
from optimas_cli.lm.base import LM, LMRequest, LMResponse, RunStopped, Usage
from optimas_cli.schema import ComponentConfig, SystemConfig, VariableConfig

State = dict[str, dict[str, Any]]
# Exceptions that must stop a run rather than be recorded as a failed step.
_PASS_THROUGH = (RunStopped, KeyboardInterrupt)  # a spent budget, a rejected key, ^C


# ---------------------------------------------------------------- contracts


@dataclass
class Call:
    """What a component gets for one forward: the LM, sampling settings, and a usage meter.

    `temperature` overrides the component's own when set (rollouts resample
    components this way); `sample_index` keeps n samples distinct in the cache.
    """

    lm: LM
    component: str
    temperature: float | None = None
    sample_index: int = 0
    seed: int = 0
    usage: Usage = field(default_factory=Usage)

    def complete(self, request: LMRequest) -> LMResponse:
        response = self.lm.complete(request, component=self.component)
        self.usage.add(response)
        return response


class Component(Protocol):
    """A node of the graph. `forward` maps its input fields to its output fields."""

    name: str
    description: str
    inputs: list[str]
    outputs: list[str]
    variables: dict[str, VariableConfig]

    def forward(self, inputs: dict[str, Any], values: dict[str, Any], call: Call) -> dict[str, Any]: ...


@dataclass
class Step:
    component: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    variables: dict[str, Any]
    latency_s: float
    usage: Usage
    error: str | None = None


@dataclass
class Trace:
    """One execution: every step, and all fields known at the end."""

    fields: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"fields": self.fields, "error": self.error, "steps": [asdict(s) for s in self.steps]}


def is_per_input(value: Any) -> bool:
    """A variable value that is a per-input policy rather than a fixed value."""
    return isinstance(value, dict) and value.get("mode") == "per_input"


# ---------------------------------------------------------------- graph checks


def component_problems(name: str, comp: ComponentConfig) -> list[tuple[str, str]]:
    """One component's kind (importable) and what the kind checks: its params, variables."""
    key = f"system.components.{name}"
    try:
        kind = resolve_kind(comp.kind)
    except ValueError as e:
        return [(f"{key}.kind", str(e))]
    return [(f"{key}.{k}", m) for k, m in kind.check_config(name, comp)]


def check_graph(cfg: SystemConfig) -> list[tuple[str, str]]:
    """Problems with the graph as (config key, message); empty when it is sound."""
    problems: list[tuple[str, str]] = []
    producer: dict[str, str] = {f: "<system input>" for f in cfg.inputs}
    for name, comp in cfg.components.items():
        key = f"system.components.{name}"
        for out in comp.outputs:
            if out in producer:
                problems.append((f"{key}.outputs", f"output '{out}' of component '{name}' is "
                                 f"already produced by '{producer[out]}'"))
            producer[out] = name
        problems += component_problems(name, comp)
    for name, comp in cfg.components.items():
        for inp in comp.inputs:
            if inp not in producer:
                problems.append((f"system.components.{name}.inputs",
                                 f"input '{inp}' of component '{name}' is produced by no "
                                 f"component and is not a system input {cfg.inputs}"))
    if cfg.final_output not in producer:
        problems.append(("system.final_output",
                         f"final_output '{cfg.final_output}' is produced by no component"))
    if not problems:
        try:
            topological_order(cfg)
        except ValueError as e:
            problems.append(("system.components", str(e)))
    return problems


def topological_order(cfg: SystemConfig) -> list[str]:
    """Component names so that each comes after the producers of its inputs.

    Ties keep declaration order, so the order is stable and readable.
    """
    producer = {out: name for name, c in cfg.components.items() for out in c.outputs}
    deps = {name: {producer[i] for i in c.inputs if i in producer} for name, c in cfg.components.items()}
    order: list[str] = []
    remaining = list(cfg.components)
    while remaining:
        ready = [n for n in remaining if deps[n] <= set(order)]
        if not ready:
            cycle = " -> ".join(_find_cycle(deps, remaining))
            raise ValueError(f"the components form a cycle: {cycle}")
        order.append(ready[0])
        remaining.remove(ready[0])
    return order


def _find_cycle(deps: dict[str, set[str]], nodes: list[str]) -> list[str]:
    path: list[str] = []
    node = nodes[0]
    while node not in path:
        path.append(node)
        node = next(d for d in sorted(deps[node]) if d in nodes)
    return path[path.index(node):] + [node]


# ---------------------------------------------------------------- system


class System:
    """Built components in topological order, runnable from the start or from any component."""

    def __init__(self, cfg: SystemConfig, components: dict[str, Component], lm: LM,
                 budget: Budget | None = None):
        self.cfg = cfg
        self.components = components
        self.lm = lm
        self.order = topological_order(cfg)
        # records every (partial) system run and component-only call this system executes
        self.budget = budget if budget is not None else Budget(None, lm)
        self._runs_lock = threading.Lock()
        self._reward_models: dict[str, Any] = {}

    @property
    def optimizable(self) -> list[str]:
        """Components with at least one variable, in topological order."""
        return [n for n in self.order if self.cfg.components[n].variables]

    def initial_state(self) -> State:
        return {n: {v: var.initial_value() for v, var in c.variables.items()}
                for n, c in self.cfg.components.items() if c.variables}

    def downstream(self, name: str) -> list[str]:
        """Components after `name` in run order."""
        return self.order[self.order.index(name) + 1:]

    def upstream(self, name: str) -> list[str]:
        """Components before `name` in run order."""
        return self.order[: self.order.index(name)]

    @property
    def runs(self) -> int:
        """(Partial) system runs spent so far (the budget's count)."""
        return self.budget.system_runs

    def run_step(self, name: str, fields: dict[str, Any], state: State, *,
                 temperature: float | None = None, sample_index: int = 0, seed: int = 0,
                 values: dict[str, Any] | None = None) -> Step:
        """Run one component alone (a component call, counted as such by the budget)."""
        self.budget.record_component_call()
        return self._step(name, fields, state, temperature=temperature,
                          sample_index=sample_index, seed=seed, values=values)

    def _step(self, name: str, fields: dict[str, Any], state: State, *,
              temperature: float | None = None, sample_index: int = 0, seed: int = 0,
              values: dict[str, Any] | None = None) -> Step:
        """Run one component on the fields known so far; errors are recorded, not raised."""
        comp = self.components[name]
        inputs = {k: fields[k] for k in comp.inputs}
        vals = values if values is not None else state.get(name, {})
        call = Call(lm=self.lm, component=name, temperature=temperature,
                    sample_index=sample_index, seed=seed)
        t0 = time.perf_counter()
        try:
            vals = dict(vals)
            policies = {k: v for k, v in vals.items() if is_per_input(v)}
            if policies:
                outputs, chosen = self._choose_per_input(name, inputs, vals, policies, call)
                vals.update(chosen)
            else:
                outputs = comp.forward(dict(inputs), dict(vals), call)
            missing = [o for o in comp.outputs if o not in outputs]
            if missing:
                raise ValueError(f"component '{name}' returned no value for {missing}")
            outputs = {o: outputs[o] for o in comp.outputs}
            error = None
        except _PASS_THROUGH:
            raise
        except Exception as e:  # noqa: BLE001 - one bad step must not kill a whole evaluation
            outputs, error = {}, f"{type(e).__name__}: {e}"
        return Step(component=name, inputs=inputs, outputs=outputs, variables=dict(vals),
                    latency_s=time.perf_counter() - t0, usage=call.usage, error=error)

    def count_run(self) -> None:
        """Count one (partial) system execution, however it was driven."""
        self.budget.record_system_run()

    def _choose_per_input(self, name: str, inputs: dict[str, Any], vals: dict[str, Any],
                          policies: dict[str, dict], call: Call) -> tuple[dict[str, Any], dict]:
        """The paper's per-input mode: run every combination of the per-input variables'
        choices, sample one by exp(LRF / temperature) under the first policy's reward model."""
        names = list(policies)
        combos = [dict(zip(names, c, strict=True))
                  for c in itertools.product(*(policies[n]["choices"] for n in names))]
        outs = [self.components[name].forward(dict(inputs), {**vals, **combo}, call)
                for combo in combos]
        spec = policies[names[0]]
        scores = self.reward_model(spec["reward_model"]).score(name, [inputs] * len(outs), outs)
        top = max(scores)
        temperature = min(p["temperature"] for p in policies.values())
        weights = [math.exp((s - top) / temperature) for s in scores]
        key = f"{call.seed}:{call.sample_index}:{sorted(inputs.items())}"
        i = random.Random(key).choices(range(len(outs)), weights=weights, k=1)[0]
        return outs[i], combos[i]

    def reward_model(self, path: str):
        """A local reward model from disk, loaded once per system."""
        with self._runs_lock:
            if path not in self._reward_models:
                from optimas_cli.rewards import LocalRewardModel  # torch: loaded only when used

                self._reward_models[path] = LocalRewardModel.load(path)
            return self._reward_models[path]

    def run(self, inputs: dict[str, Any], state: State, **sampling: Any) -> Trace:
        """Run the whole system on one example's inputs."""
        return self.run_from(self.order[0], dict(inputs), state, **sampling)

    def run_until(self, stop: str, inputs: dict[str, Any], state: State, **sampling: Any) -> Trace:
        """Run every component before `stop` (the context `stop` would see)."""
        return self.run_from(self.order[0], dict(inputs), state, stop_before=stop, **sampling)

    def run_from(self, start: str, fields: dict[str, Any], state: State, *,
                 temperature: float | None = None, sample_index: int = 0, seed: int = 0,
                 stop_before: str | None = None) -> Trace:
        """Run `start` and every component after it, given the fields upstream produced.

        Counts one (partial) system run, unless there is nothing to run. Fields that lack a
        system input fail the trace (nothing runs): the example's failure, not a crash."""
        trace = Trace(fields=dict(fields))
        missing = [k for k in self.cfg.inputs if k not in fields]
        if missing:
            trace.error = (f"the example lacks system input(s) {missing} (system.inputs "
                           f"{self.cfg.inputs}; it has {sorted(map(str, fields))})")
            return trace
        end = self.order.index(stop_before) if stop_before else len(self.order)
        if end > self.order.index(start):
            self.count_run()
        for name in self.order[self.order.index(start):end]:
            step = self._step(name, trace.fields, state, temperature=temperature,
                              sample_index=sample_index, seed=seed)
            trace.steps.append(step)
            if step.error:
                trace.error = f"{name}: {step.error}"
                break
            trace.fields.update(step.outputs)
        return trace


def build_components(cfg: SystemConfig, resources: dict[str, Any]) -> dict[str, Component]:
    """Instantiate every component with its kind; `resources` holds shared things (the dataset)."""
    return {name: resolve_kind(c.kind).build(name, c, resources) for name, c in cfg.components.items()}

