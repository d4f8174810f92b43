"""An llm component as a dspy.Predict and back.

The Predict's signature is the component's input and output fields (labels as field
descriptions), its instructions the prompt variable's instruction, its demos the
variable's demonstrations; an optimized Predict becomes our prompt value
{"instruction", "demos"} again.
"""

from __future__ import annotations

from typing import Any

import dspy

from optimas_cli.components.llm import LLMComponent
from optimas_cli.graph import System


def llm_component(system: System, name: str) -> LLMComponent:
    """The built llm component `name`; ValueError if it is not one."""
    comp = system.components.get(name)
    if not isinstance(comp, LLMComponent):
        raise ValueError(f"component '{name}' is not an llm component "
                         f"({type(comp).__name__ if comp is not None else 'no such component'})")
    return comp


def prompt_variable(system: System, name: str) -> str | None:
    """Name of component `name`'s prompt variable, or None."""
    return next((v for v, var in system.cfg.components[name].variables.items() if var.type == "prompt"),
                None)


def prompt_components(system: System) -> list[str]:
    """llm components with a prompt variable, in run order: what DSPy optimizes."""
    return [n for n in system.order
            if isinstance(system.components[n], LLMComponent) and prompt_variable(system, n)]


def component_signature(comp: LLMComponent, instruction: str) -> type[dspy.Signature]:
    """The component's fields as a DSPy signature (labels as field descriptions)."""
    fields: dict[str, Any] = {}
    for f in comp.inputs:
        fields[f] = (str, dspy.InputField(desc=comp.label(f)))
    for f in comp.outputs:
        fields[f] = (str, dspy.OutputField(desc=comp.label(f)))
    return dspy.Signature(fields, instruction or comp.description)


def component_predict(comp: LLMComponent, value: dict[str, Any]) -> dspy.Predict:
    """A dspy.Predict of an llm component under prompt value {"instruction", "demos"}."""
    pred = dspy.Predict(component_signature(comp, value.get("instruction") or ""))
    pred.demos = [dspy.Example(**d) for d in value.get("demos") or []]
    return pred


def demo_dict(demo: Any, fields: list[str]) -> dict[str, Any] | None:
    """A DSPy demo (Example or dict) as our demo dict, or None if it lacks a field."""
    d = demo.toDict() if hasattr(demo, "toDict") else dict(demo)
    if any(d.get(f) is None for f in fields):
        return None
    return {f: d[f] if isinstance(d[f], (str, int, float, bool)) else str(d[f]) for f in fields}


def prompt_value(pred: dspy.Predict, comp: LLMComponent,
                 max_demos: int | None = None) -> dict[str, Any]:
    """Our prompt value of an (optimized) predictor: its instruction and complete demos.

    Demos missing one of the component's fields (e.g. DSPy's labeled demos of
    a system-level example) are dropped; duplicates are dropped; at most
    `max_demos` are kept.
    """
    fields = list(comp.inputs) + list(comp.outputs)
    demos: list[dict[str, Any]] = []
    for d in pred.demos:
        dd = demo_dict(d, fields)
        if dd is not None and dd not in demos:
            demos.append(dd)
    if max_demos is not None:
        demos = demos[:max_demos]
    return {"instruction": pred.signature.instructions, "demos": demos}
