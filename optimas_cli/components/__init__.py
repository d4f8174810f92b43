"""Component kinds: built-in names, or any class by dotted path (`package.module:Class`)."""

from __future__ import annotations

import importlib
from typing import Any

BUILTIN_KINDS = {
    "llm": "optimas_cli.components.llm:LLMComponent",
    "retriever": "optimas_cli.components.retriever:RetrieverComponent",
    "python": "optimas_cli.components.python:PythonComponent",
    "sandboxed_exec": "optimas_cli.components.sandboxed:SandboxedExecComponent",
}


def resolve_kind(kind: str) -> Any:
    """The class implementing `kind`; ValueError with the choices when it is unknown."""
    path = BUILTIN_KINDS.get(kind)
    if path is None:
        if ":" not in kind and "." not in kind:
            raise ValueError(f"unknown component kind '{kind}': use one of "
                             f"{sorted(BUILTIN_KINDS)} or a dotted path 'package.module:Class'")
        path = kind
    mod_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"component kind '{kind}' cannot be imported: {e}") from None
    if not (hasattr(obj, "build") and hasattr(obj, "check_config")):
        raise ValueError(f"component kind '{kind}' must provide build() and check_config() "
                         "(subclass optimas_cli.components.base.BaseComponent)")
    return obj
