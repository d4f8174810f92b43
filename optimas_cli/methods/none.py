"""The `none` method: the system as configured, validated once so `compare` can place it."""

from __future__ import annotations

from optimas_cli.graph import State
from optimas_cli.history import append_record
from optimas_cli.methods.base import Context, Method


class NoneMethod(Method):
    """No optimization: the initial system, with its validation score."""

    name = "none"
    commands = ("run",)

    def optimize(self, ctx: Context) -> State:
        if not ctx.history():
            append_record(ctx.run_dir, ctx.initial_record(ctx.initial))
        return ctx.initial
