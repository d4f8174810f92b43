"""A run's preference pairs on disk, and the choice of a component by its pairs.

Rollout records live in rollouts/iter_NNN/<component>[.roundR].jsonl; every pair of
candidates of one input whose global scores differ is a preference pair. Components are
picked by a softmax over the mean score gap of their pairs: a component whose outputs
make a large difference downstream has the most to gain. A component whose collections
gave no pair on the current system is barren (`barren_components`): its local reward has
nothing to learn from, so the loop leaves it out until an accepted change gives its
rollouts something new.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

from optimas_cli import layout
from optimas_cli.history import steps_of
from optimas_cli.methods.optimas.collect import pairs_from_record
from optimas_cli.rewards import PreferencePair
from optimas_cli.run_dir import RunDir

if TYPE_CHECKING:
    from optimas_cli.runtime import Runtime


def load_records(run_dir: RunDir, component: str,
                 before: int | None = None) -> list[tuple[int, dict]]:
    """Every rollout record of `component` on disk, with its iteration, oldest first
    (`before`: of the iterations before that one only).

    Within an iteration, records are ordered by example id, not by the order the
    collection's workers happened to finish them in: the reward model trained on them,
    and every choice made with it, must not depend on thread timing.
    """
    out = []
    for it, d in layout.iter_dirs(run_dir.path / layout.ROLLOUTS):
        if before is not None and it >= before:
            continue
        for f in sorted(d.glob(f"{component}*.jsonl")):
            if f.stem != component and not f.stem.startswith(f"{component}.round"):
                continue
            records = run_dir.read_jsonl(f"{layout.ROLLOUTS}/{d.name}/{f.name}")
            for r in sorted(records, key=lambda r: str(r.get("example_id"))):
                out.append((it, r))
    return out


def pairs_of(rt: Runtime, run_dir: RunDir, component: str,
             limit: int | None = None, before: int | None = None) -> list[PreferencePair]:
    """Distinct preference pairs of `component`, newest kept when `limit` bounds them.

    The same (inputs, chosen, rejected) collected twice counts once: a repeated draw
    must not double a pair's weight.
    """
    return distinct_pairs(rt, load_records(run_dir, component, before), limit)


def distinct_pairs(rt: Runtime, records: list[tuple[int, dict]],
                   limit: int | None = None) -> list[PreferencePair]:
    """`pairs_of` on records already loaded (`load_records`)."""
    unique: dict[str, PreferencePair] = {}
    for _, r in records:
        for p in pairs_from_record(r, rt.system):
            key = repr((sorted(p.inputs.items()), sorted(p.chosen.items()),
                        sorted(p.rejected.items())))
            unique.pop(key, None)
            unique[key] = p  # newest last
    pairs = list(unique.values())
    return pairs[-limit:] if limit is not None and limit > 0 else pairs


def preference_gaps(rt: Runtime, run_dir: RunDir,
                    before: int | None = None) -> dict[str, float | None]:
    """Mean score gap of each component's pairs (None: never collected), from the
    rollouts of the iterations before `before` (all of them if None; 0.0: no pair)."""
    limit = rt.composed.run.optimizer.replay_buffer_size
    gaps: dict[str, float | None] = {}
    for name in rt.system.optimizable:
        records = load_records(run_dir, name, before)
        if not records:
            gaps[name] = None
            continue
        pairs = distinct_pairs(rt, records, limit)
        gaps[name] = sum(p.score_chosen - p.score_rejected for p in pairs) / len(pairs) if pairs else 0.0
    return gaps


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
        # >=: a change accepted in that iteration (another component's)
        if last is not None and not any(h.get("accepted") for h in before if h["iteration"] >= last):
            out.add(name)
    return out


def pick_component(gaps: dict[str, float], temperature: float, rng: random.Random) -> tuple[str, dict]:
    """Softmax sampling over mean preference gaps; returns the name and the probabilities."""
    names = list(gaps)
    top = max(gaps.values())
    weights = [math.exp((gaps[n] - top) / temperature) for n in names]
    total = sum(weights)
    probs = {n: w / total for n, w in zip(names, weights, strict=True)}
    return rng.choices(names, weights=weights, k=1)[0], probs
