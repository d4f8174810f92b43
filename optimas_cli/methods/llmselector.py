"""LLMSelector baseline (Chen et al. 2025, "Optimizing Model Selection for Compound AI Systems").

The setting: pick one model per component. This is the greedy coordinate ascent
of that paper, scored by the end-to-end metric on the val split: in each round,
for each component with a `model` variable (run order), try every other model
choice with all other components fixed, and keep a choice whenever it beats the
accepted system by `optimizer.accept_rule` (history.decide). Rounds repeat until one
changes nothing, `max_rounds` is reached, or the next evaluation would exceed
`optimizer.budget_system_runs`. A state already evaluated is not evaluated again.
(The paper's LLM diagnoser, which estimates per-module scores to save calls, is not
used: every candidate gets the true end-to-end score.)

options:
  max_rounds: int            passes over the components (default 3)
  components: [name] | null  restrict to these components (null: every one with a model variable)
"""

from __future__ import annotations

import logging

from pydantic import Field

from optimas_cli.errors import ConfigError
from optimas_cli.graph import State
from optimas_cli.methods.base import Context, Method, Options
from optimas_cli.methods.trial import (
    Trial,
    check_components,
    variables_of,
    with_values,
)

log = logging.getLogger("optimas.baselines.llmselector")


class LLMSelectorOptions(Options):
    """optimizer.options of the llmselector baseline (module doc)."""

    max_rounds: int = Field(3, ge=1)
    components: list[str] | None = None




class LLMSelectorMethod(Method):
    """Per-component model choice, greedy, by the end-to-end metric."""

    name = "llmselector"
    Options = LLMSelectorOptions

    def optimize(self, ctx: Context) -> State:
        rt, run_dir, initial, opts = ctx.rt, ctx.run_dir, ctx.initial, ctx.options
        model_vars = variables_of(rt, ("model",))
        if not model_vars:
            raise ConfigError("optimizer.name: the 'llmselector' baseline chooses each component's "
                              "model, and no component of this system has a `model` variable")
        names = check_components(rt, opts.components, list(dict.fromkeys(c for c, _ in model_vars)),
                                 "a model variable")
        model_vars = [(c, v) for c, v in model_vars if c in names]
        trial = Trial(rt, run_dir, "llmselector")
        trial.start(initial)
        for rnd in range(1, opts.max_rounds + 1):
            changed = False
            for comp, vname in model_vars:
                for choice in rt.system.cfg.components[comp].variables[vname].choices:
                    candidate = with_values(trial.state, {(comp, vname): choice})
                    if candidate == trial.state or trial.seen(candidate):
                        continue
                    if not trial.can_afford():
                        log.info("llmselector: stopped in round %d: %s", rnd, trial.stopped)
                        return trial.state
                    record = trial.try_state(candidate, comp, round=rnd, variable=f"{comp}.{vname}")
                    changed |= bool(record and record["accepted"])
            log.info("llmselector: round %d done, %s; val %.4f", rnd,
                     "changed" if changed else "no change", trial.val)
            if not changed:
                break
        return trial.state
