"""Functions and a component kind that tests reference by dotted path (`fns:...`)."""

from __future__ import annotations

import time

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


# ---- a tiny numeric system for loop tests: y = x * factor, out = y + 1, target 2x + 1
CALLS = {"scale": 0}


def scale(x: int, factor: int) -> dict:
    CALLS["scale"] += 1
    return {"y": x * factor}


def slow_scale(x: int, factor: int, delay_s: float = 0.0) -> dict:
    """`scale` taking `delay_s` of wall time (the kill -9 harness: stages long enough to hit)."""
    time.sleep(delay_s)
    return scale(x, factor)


def finish(y: int) -> dict:
    return {"out": y + 1}


def load_linear(cfg):
    from optimas_cli.data import Dataset, Example

    examples = [Example(id=f"x{i}", inputs={"x": i}, target={"out": 2 * i + 1}) for i in range(1, 41)]
    return Dataset(examples=examples)


def linear_metric(example, fields) -> dict:
    err = abs(fields["out"] - example.target["out"])
    return {"score": 1.0 / (1.0 + err)}
