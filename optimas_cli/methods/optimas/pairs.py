"""A run's preference pairs on disk, and the choice of a component by its pairs.

Rollout records live in rollouts/iter_NNN/<component>[.roundR].jsonl; every pair of
candidates of one input whose global scores differ is a preference pair. Components are
picked by a softmax over the mean score gap of their pairs: a component whose outputs
make a large difference downstream has the most to gain.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from optimas_cli import layout
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
             limit: int | None = None, before: int | None = None, *,
             sampled_only: bool = False) -> list[PreferencePair]:
    """Distinct preference pairs of `component`, newest kept when `limit` bounds them
    (`sampled_only`: none with the gold answer on one side).

    The same (inputs, chosen, rejected) collected twice counts once: a repeated draw
    must not double a pair's weight.
    """
    return distinct_pairs(rt, load_records(run_dir, component, before), limit,
                          sampled_only=sampled_only)


def distinct_pairs(rt: Runtime, records: list[tuple[int, dict]], limit: int | None = None, *,
                   sampled_only: bool = False) -> list[PreferencePair]:
    """`pairs_of` on records already loaded (`load_records`)."""
    unique: dict[str, PreferencePair] = {}
    for _, r in records:
        for p in pairs_from_record(r, rt.system, sampled_only=sampled_only):
            key = repr((sorted(p.inputs.items()), sorted(p.chosen.items()),
                        sorted(p.rejected.items())))
            unique.pop(key, None)
            unique[key] = p  # newest last
    pairs = list(unique.values())
    return pairs[-limit:] if limit is not None and limit > 0 else pairs


def preference_gaps(rt: Runtime, run_dir: RunDir,
                    before: int | None = None) -> dict[str, float | None]:
    """Mean score gap of each component's pairs (None: never collected), from the
    rollouts of the iterations before `before` (all of them if None); with
    `optimizer.evidence: own_outputs`, of its sampled pairs (0.0 when it has none)."""
    limit = rt.composed.run.optimizer.replay_buffer_size
    sampled = rt.composed.run.optimizer.evidence == "own_outputs"
    gaps: dict[str, float | None] = {}
    for name in rt.system.optimizable:
        records = load_records(run_dir, name, before)
        if not records:
            gaps[name] = None
            continue
        pairs = distinct_pairs(rt, records, limit, sampled_only=sampled)
        gaps[name] = sum(p.score_chosen - p.score_rejected for p in pairs) / len(pairs) if pairs else 0.0
    return gaps


def pick_component(gaps: dict[str, float], temperature: float, rng: random.Random) -> tuple[str, dict]:
    """Softmax sampling over mean preference gaps; returns the name and the probabilities."""
    names = list(gaps)
    top = max(gaps.values())
    weights = [math.exp((gaps[n] - top) / temperature) for n in names]
    total = sum(weights)
    probs = {n: w / total for n, w in zip(names, weights, strict=True)}
    return rng.choices(names, weights=weights, k=1)[0], probs
