"""Any Python function as a component: tools, classic ML models, glue."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from optimas_cli.checks import callable_problem
from optimas_cli.components.base import BaseComponent
from optimas_cli.config import import_object
from optimas_cli.graph import Call
from optimas_cli.schema import ComponentConfig


class PythonParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: str  # dotted path 'package.module:function'
    kwargs: dict[str, Any] = Field(default_factory=dict)  # fixed extra keyword arguments


class PythonComponent(BaseComponent):
    """Calls `function(**inputs, **variable_values, **kwargs)`.

    It returns a dict with the output fields, or a bare value when there is one output.
    """

    Params = PythonParams
    variable_types = {"hyperparameter": None, "model": None}

    def __init__(self, name, cfg, resources):
        super().__init__(name, cfg, resources)
        self.fn = import_object(self.params.function, f"component '{name}' params.function")
        if not callable(self.fn):
            raise ValueError(f"component '{name}': {self.params.function} is not callable")

    @classmethod
    def check_config(cls, name: str, cfg: ComponentConfig) -> list[tuple[str, str]]:
        """The params and variables, and that `params.function` imports and is callable."""
        problems = super().check_config(name, cfg)
        function = cfg.params.get("function")
        if isinstance(function, str) and not any(k.startswith("params.") for k, _ in problems):
            why = callable_problem(function)
            if why:
                problems.append(("params.function", f"component '{name}': function "
                                                    f"{function!r} cannot be used ({why})"))
        return problems

    def forward(self, inputs: dict[str, Any], values: dict[str, Any], call: Call) -> dict[str, Any]:
        result = self.fn(**inputs, **values, **self.params.kwargs)
        if isinstance(result, dict):
            return result
        if len(self.outputs) == 1:
            return {self.outputs[0]: result}
        raise ValueError(f"component '{self.name}': function returned {type(result).__name__}, "
                         f"expected a dict with {self.outputs}")
