"""The methods, by name: `optimizer.name` picks one (or names a class by dotted path).

Each method is a `methods.base.Method` subclass in its own module, imported only when
used: optimas/ (the Optimas loop), none, search, llmselector, textgrad, dspy/ (MIPROv2
and GEPA on one skeleton). A third-party method is `optimizer.name: package.module.Class`
(or `package.module:Class`), a Method subclass like these.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from optimas_cli.config import Composed, import_object, load
from optimas_cli.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from optimas_cli.graph import State
    from optimas_cli.methods.base import Method
    from optimas_cli.run_dir import RunDir
    from optimas_cli.runtime import Runtime

METHODS: dict[str, str] = {
    "optimas": "optimas_cli.methods.optimas.OptimasMethod",
    "none": "optimas_cli.methods.none.NoneMethod",
    "search": "optimas_cli.methods.search.SearchMethod",
    "llmselector": "optimas_cli.methods.llmselector.LLMSelectorMethod",
    "mipro": "optimas_cli.methods.dspy.mipro.MiproMethod",
    "gepa": "optimas_cli.methods.dspy.gepa.GepaMethod",
    "textgrad": "optimas_cli.methods.textgrad.TextGradMethod",
}


def method_class(name: str) -> type[Method]:
    """The Method class `optimizer.name` names; ConfigError naming the key otherwise."""
    from optimas_cli.methods.base import Method

    path = METHODS.get(name, name.replace(":", "."))
    if "." not in path:
        raise ConfigError(f"optimizer.name: unknown method {name!r} (known: {', '.join(METHODS)}; "
                          "or a Method subclass by dotted path)")
    cls = import_object(path, "optimizer.name")
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ConfigError(f"optimizer.name: {name} is not a Method subclass "
                          "(optimas_cli.methods.base.Method)")
    return cls


def method_options(name: str) -> type[BaseModel] | None:
    """The pydantic model of method `name`'s `optimizer.options` (None: it takes none)."""
    from optimas_cli.methods.base import Options

    model = method_class(name).Options
    return None if model is Options else model


def check_options(composed: Composed) -> Composed:
    """A method's `optimizer.options`, checked before any work; ConfigError names the key."""
    from optimas_cli.methods.base import parse_options

    opt = composed.run.optimizer
    parse_options(opt.name, opt.options, method_class(opt.name).Options)
    return composed


def load_checked(config_path: str | Path, overrides: list[str] | None = None, *,
                 read_data: bool = False) -> Composed:
    """config.load (`read_data`: the loader read once, as `optimas validate` does), then the
    method's options."""
    return check_options(load(config_path, overrides, read_data=read_data))


def run_method(rt: Runtime, run_dir: RunDir, stages: tuple[str, ...] = ("collect", "fit", "update"),
               initial: State | None = None) -> State:
    """Run the configured method's `stages` from `initial` (default: the runtime's state)."""
    from optimas_cli.methods.base import Context, parse_options

    opt = rt.composed.run.optimizer
    method = method_class(opt.name)()
    ctx = Context(rt, run_dir, rt.state if initial is None else initial,
                  parse_options(opt.name, opt.options, method.Options), stages)
    return method.final_state(ctx) if not stages else method.optimize(ctx)
