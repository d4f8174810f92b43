"""The Optimas method (arXiv 2507.03041): local rewards per component, globally aligned.

Read it top to bottom in loop.py; its steps are one module each:

select    pairs.py (preference gaps, the softmax, barren components)
collect   collect.py: rollouts and their preference pairs
adapt     fit.py: the local reward model (optimas_cli/rewards/)
update    update.py, with one updater per variable type in updaters/
validate  loop.py, by the accept rule of optimas_cli/history.py
"""

from __future__ import annotations

from optimas_cli.graph import State
from optimas_cli.methods.base import Context, Method


class OptimasMethod(Method):
    """The Optimas loop; `collect` and `fit` run its eager start on their own."""

    name = "optimas"
    commands = ("run", "collect", "fit", "update")

    def optimize(self, ctx: Context) -> State:
        from optimas_cli.methods.optimas.loop import optimize

        return optimize(ctx)
