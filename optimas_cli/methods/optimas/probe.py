"""Barren components, and probing their choices on validation instead.

A component is barren when its collections gave no preference pair on the current system:
every candidate it produced, and every model or hyperparameter value rolled out for it,
scored the same downstream. Its local reward has nothing to learn from, so the loop leaves
it out (`barren_components`) until an accepted change gives its rollouts something new.

That can leave a better engine untried for the whole run: on BigCodeBench a 0.5B coder's
candidates all failed the tests, so the rollouts of code_generator tied at 0 whichever model
wrote them, while the 1.5B coder in its place raised validation from 0.15 to 0.35 (what
plain search and LLMSelector found). With `optimizer.probe_choices: k > 0`, a barren
component's model and hyperparameter values are validated directly, up to k per component
per run, one per iteration (`next_probe`): what LLMSelector pays for every component
(one validation each), paid only where the local rewards could not decide. Values that tied
on measured returns in the component's latest collection go first, then the others in
declaration order (models first); a state validated before is never probed.
"""

from __future__ import annotations

import random
from typing import Any

from optimas_cli.graph import State, System
from optimas_cli.history import steps_of, validated_before
from optimas_cli.methods.optimas.update import ORDER
from optimas_cli.schema import OptimizerConfig
from optimas_cli.space import alternatives

PROBE = "probe: no preference pairs on this system; a choice validated directly"


def barren_components(history: list[dict[str, Any]], gaps: dict[str, float | None],
                      it: int) -> set[str]:
    """Components whose collections gave no pair at all (gap 0.0: a pair's gap is > 0),
    with no change accepted since the last of them: on the same system fresh inputs
    would most likely give none again. On PubMedQA the SmolLM2 solver gave the same
    answer whatever context_analyst's summary said, and the two-component loop collected
    that summary again in four iterations running, 0 pairs each time, a third of the
    budget. Such a component is collected again once an accepted change follows."""
    before = [h for h in history if h.get("kind") == "iteration" and h["iteration"] < it]
    out = set()
    for name, gap in gaps.items():
        if gap != 0.0:
            continue
        last = max((h["iteration"] for h in before
                    if any(s.get("component") == name for s in steps_of(h))), default=None)
        # >=: a change accepted in that iteration (another component's, or this one's probe)
        if last is not None and not any(h.get("accepted") for h in before if h["iteration"] >= last):
            out.add(name)
    return out


def probe_values(system: System, name: str, state: State, history: list[dict[str, Any]],
                 opt: OptimizerConfig, seed: int) -> list[tuple[str, Any]]:
    """(variable, value) changes of `name` a probe may validate, in the order it would:
    values tied in the latest collection of `name` first, models before hyperparameters,
    none that leads to a state validated before."""
    tied: dict[str, list] = {}
    for record in history:
        for step in steps_of(record):
            if step.get("component") == name and "tied" in step:
                tied = step["tied"]
    out = []
    variables = sorted(system.cfg.components[name].variables.items(), key=lambda kv: ORDER[kv[1].type])
    for vname, var in variables:
        if var.type not in ("model", "hyperparameter"):
            continue
        current = state[name][vname]
        rng = random.Random(f"{seed}:probe:{name}:{vname}")
        values = alternatives(var, current, opt.update.max_choices, rng)
        values.sort(key=lambda v: v not in tied.get(vname, []))  # stable: tied ones first
        out += [(vname, v) for v in values
                if validated_before(history, probed_state(state, name, {vname: v})) is None]
    return out


def probes_done(history: list[dict[str, Any]], name: str) -> int:
    return sum(1 for h in history for s in steps_of(h) if s.get("component") == name and "probe" in s)


def next_probe(system: System, history: list[dict[str, Any]], barren: set[str],
               opt: OptimizerConfig, seed: int) -> tuple[str, dict[str, Any]] | None:
    """The barren component to probe in the next iteration, upstream first, with the
    change to validate; None when probes are off or none is left."""
    if opt.probe_choices < 1:
        return None
    state = history[-1]["state"]
    for name in system.optimizable:
        if name not in barren or probes_done(history, name) >= opt.probe_choices:
            continue
        values = probe_values(system, name, state, history, opt, seed)
        if values:
            vname, value = values[0]
            return name, {"reason": PROBE, "probe": {vname: value}}
    return None


def probed_state(state: State, name: str, change: dict[str, Any]) -> State:
    """`state` with `name`'s variables changed as `change` says."""
    new = {c: dict(v) for c, v in state.items()}
    new[name].update(change)
    return new
