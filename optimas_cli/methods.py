"""Optimization methods by name: the Optimas loop and the baselines, one registry.

`optimizer.name` picks a method. Each method is a module with
    optimize(rt, run_dir, initial: State) -> State
that writes history.jsonl in the format of `optimas_cli.history` and spends at most
`optimizer.budget_system_runs` system runs, and optionally `OPTIONS`, the schema of its
`optimizer.options` (checked before any work, errors naming optimizer.options.<key>).
jobs.py runs every method through `optimize` here, then the shared final stage.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from optimas_cli.baselines.common import parse_options
from optimas_cli.config import Composed, load
from optimas_cli.graph import State
from optimas_cli.history import initial_record
from optimas_cli.run_dir import RunDir
from optimas_cli.stages.loop import optimize as optimas

if TYPE_CHECKING:
    from optimas_cli.runtime import Runtime

METHODS: dict[str, str] = {
    "optimas": "optimas_cli.stages.loop",
    "none": "optimas_cli.methods",  # the unoptimized system: `optimize` below
    "search": "optimas_cli.baselines.search",
    "llmselector": "optimas_cli.baselines.llmselector",
    "mipro": "optimas_cli.baselines.mipro",
    "gepa": "optimas_cli.baselines.gepa",
    "textgrad": "optimas_cli.baselines.textgrad",
}


def method_module(name: str) -> ModuleType:
    return importlib.import_module(METHODS[name])


def method_options(name: str):
    """The pydantic model of method `name`'s `optimizer.options` (None: it takes none)."""
    return getattr(method_module(name), "OPTIONS", None)


def check_options(composed: Composed) -> Composed:
    """A method's `optimizer.options`, checked before any work; ConfigError names the key."""
    opt = composed.run.optimizer
    module = method_module(opt.name)
    if getattr(module, "OPTIONS", None) is not None:
        parse_options(opt.name, opt.options, module.OPTIONS)
    return composed


def load_checked(config_path: str | Path, overrides: list[str] | None = None) -> Composed:
    """config.load, then the method's options."""
    return check_options(load(config_path, overrides))


def optimize(rt: Runtime, run_dir: RunDir, initial: State) -> State:
    """The `none` method: the initial system, with its validation score for `compare`."""
    if not run_dir.read_jsonl("history.jsonl"):
        run_dir.append_jsonl("history.jsonl", initial_record(rt, initial))
    return initial


def run_method(rt: Runtime, run_dir: RunDir, initial: State,
               stages: tuple[str, ...] = ("collect", "fit", "update")) -> State:
    """Run the configured method; stage commands (collect, fit, update) are the loop's own."""
    name = rt.composed.run.optimizer.name
    if name == "optimas":
        return optimas(rt, run_dir, initial, stages)
    if "update" not in stages and name != "none":
        history = run_dir.read_jsonl("history.jsonl")
        return history[-1]["state"] if history else initial
    return method_module(name).optimize(rt, run_dir, initial)
