"""Shared plumbing for component kinds: params validated by a schema, variables by type."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from optimas_cli.schema import ComponentConfig, VariableConfig


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseComponent:
    """A component kind: subclass it, set `Params` and `variable_types`, implement `forward`,
    and name the class in a config (`kind: mypkg.mymod:MyKind`).

    `Params`: the pydantic model of the component's `params` (checked by `optimas validate`).
    `variable_types` maps an allowed variable type to the names it may take
    (None: any name), so a kind refuses variables it would silently ignore.
    An instance has `name`, `description`, `inputs`, `outputs`, `variables` (from the
    component's config) and `params` (a `Params`).
    """

    Params: ClassVar[type[BaseModel]] = NoParams
    variable_types: ClassVar[dict[str, set[str] | None]] = {}
    stochastic: ClassVar[bool] = False  # True: temperature sampling yields alternative outputs

    def __init__(self, name: str, cfg: ComponentConfig, resources: dict[str, Any]):
        self.name = name
        self.cfg = cfg
        self.description = cfg.description
        self.inputs = list(cfg.inputs)
        self.outputs = list(cfg.outputs)
        self.variables: dict[str, VariableConfig] = dict(cfg.variables)
        self.params = self.Params.model_validate(cfg.params)

    @classmethod
    def build(cls, name: str, cfg: ComponentConfig, resources: dict[str, Any]) -> BaseComponent:
        return cls(name, cfg, resources)

    @classmethod
    def check_config(cls, name: str, cfg: ComponentConfig) -> list[tuple[str, str]]:
        """(key, message) problems with this component's params and variables."""
        problems: list[tuple[str, str]] = []
        try:
            cls.Params.model_validate(cfg.params)
        except ValidationError as e:
            for err in e.errors():
                loc = ".".join(str(p) for p in err["loc"])
                if err["type"] == "extra_forbidden":
                    msg = f"unknown param '{loc}' for a {cfg.kind} component"
                elif err["type"] == "missing":
                    msg = f"missing param '{loc}' of a {cfg.kind} component"
                else:
                    msg = f"bad param '{loc}': {err.get('input')!r} ({err['msg']})"
                problems.append((f"params.{loc}", f"component '{name}': {msg}"))
        for vname, var in cfg.variables.items():
            allowed = cls.variable_types
            if var.type not in allowed:
                problems.append((f"variables.{vname}.type",
                                 f"component '{name}' ({cfg.kind}) cannot optimize a '{var.type}' "
                                 f"variable; it takes {sorted(allowed) or 'none'}"))
            elif allowed[var.type] is not None and vname not in allowed[var.type]:
                problems.append((f"variables.{vname}",
                                 f"component '{name}' ({cfg.kind}) has no {var.type} variable "
                                 f"'{vname}'; it takes {sorted(allowed[var.type])}"))
        return problems

    def forward(self, inputs: dict[str, Any], values: dict[str, Any], call: Any) -> dict[str, Any]:
        """One run of the component: `inputs` holds a value per name in `self.inputs`,
        `values` the current value of each of its variables (by name), `call` the LM and
        the sampling settings (optimas_cli.graph.Call: `call.complete(LMRequest(...))`).
        Return a dict with a value per name in `self.outputs`; an exception fails the
        example at this component (recorded, scored 0)."""
        raise NotImplementedError(f"{type(self).__name__} implements no forward()")

    def values_of(self, values: dict[str, Any], vtype: str) -> list[tuple[str, Any]]:
        """(name, value) of this component's variables of one type."""
        return [(n, values[n]) for n, v in self.variables.items() if v.type == vtype and n in values]
