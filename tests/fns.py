"""Functions and a component kind that tests reference by dotted path (`fns:...`)."""

from __future__ import annotations

from optimas_cli.components.base import BaseComponent


def shout(**fields: str) -> str:
    """Upper-cases its one input, whatever the field is called."""
    (value,) = fields.values()
    return value.upper()


def add(a_num: int, b_num: int, offset: int = 0) -> dict:
    return {"total": a_num + b_num + offset}


def boom(text: str) -> str:
    raise RuntimeError("tool exploded")


class Reverse(BaseComponent):
    """A user-defined kind, loaded by dotted path without touching the package."""

    variable_types = {}

    def forward(self, inputs, values, call):
        return {self.outputs[0]: str(inputs[self.inputs[0]])[::-1]}
