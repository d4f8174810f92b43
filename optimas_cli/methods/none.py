"""The `none` method: the system as configured, validated once so `compare` can place it."""

from __future__ import annotations

from optimas_cli.graph import State
from optimas_cli.layout import HISTORY
from optimas_cli.methods.base import Context, Method


class NoneMethod(Method):
    """No optimization: the initial system, with its validation score."""

    name = "none"
    commands = ("run",)

    def optimize(self, ctx: Context) -> State:
        if not ctx.history():
            ctx.run_dir.append_jsonl(HISTORY, ctx.initial_record(ctx.initial))
        return ctx.initial
