"""Collect rollouts: alternative outputs of one component, each scored by the global metric.

For an input, the system runs up to component k with the current state; k then
produces distinct candidate outputs (its current output, temperature samples
for LM components, and one output per alternative value of its hyperparameter
and model variables); each candidate is completed downstream `num_rollouts`
times and scored by the mean metric. Every pair of candidates with a strictly
higher score is a preference pair. One JSON line per input is appended to
rollouts/iter_NNN/<component>.jsonl as soon as it is done, so a killed run
loses only the inputs in flight and resumes where it stopped.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from optimas_cli import failures, progress, space
from optimas_cli.data import Example
from optimas_cli.graph import State, System
from optimas_cli.metrics import scores_of
from optimas_cli.rewards import PreferencePair
from optimas_cli.schema import CollectConfig

log = logging.getLogger("optimas.collect")
MAX_RANGE_POINTS = 5  # values of a numeric range rolled out per input (a grid with both ends)


@dataclass(frozen=True)
class CollectContext:
    """What one component's collection holds fixed: the system, run with `state`; the
    component `name` whose candidate outputs are rolled out; the global `metric` that scores
    a rollout (example, fields -> {"score": ...}); the sampling settings (`cfg`,
    optimizer.collect)."""

    system: System
    name: str
    state: State
    metric: Callable[[Example, dict[str, Any]], dict[str, Any]]
    cfg: CollectConfig


def _key(outputs: dict[str, Any]) -> str:
    return json.dumps(outputs, sort_keys=True, ensure_ascii=False)


def alternative_values(var, current: Any, rng: random.Random) -> list[Any]:
    """Values of a hyperparameter or model variable to roll out besides the current one:
    the whole finite space, or a (log-)spaced grid of a range (space.alternatives)."""
    limit = len(var.choices) if var.choices is not None else MAX_RANGE_POINTS
    return space.alternatives(var, current, limit, rng)


def collect_cost(system: System, name: str, cfg: CollectConfig) -> int:
    """Upper bound of the (partial) system runs one input's collection for `name` spends:
    the upstream run, then one downstream completion per candidate and rollout."""
    comp = system.cfg.components[name]
    candidates = 1 + (cfg.num_samples if getattr(system.components[name], "stochastic", False) else 0)
    for var in comp.variables.values():
        if var.type in ("hyperparameter", "model"):
            candidates += len(var.choices) - 1 if var.choices is not None else MAX_RANGE_POINTS
    upstream = 1 if system.upstream(name) else 0
    if not system.downstream(name):
        return max(upstream, 1)  # candidates are scored by the metric alone
    rollouts = cfg.num_rollouts if cfg.rollout_temperature > 0 else 1
    return upstream + candidates * rollouts


def propose_candidates(system: System, name: str, fields: dict[str, Any], state: State,
                       cfg: CollectConfig, rng: random.Random, seed: int = 0,
                       errors: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Distinct candidate outputs of component `name` for one input (see module doc).

    `seed` goes into every sampled request: a later collection on the same input (another
    seed) draws new samples instead of replaying the cached ones. A candidate whose step
    failed is left out, its error appended to `errors`.
    """
    comp_cfg = system.cfg.components[name]
    current = dict(state.get(name, {}))
    tries: list[tuple[str, dict[str, Any], float | None, int]] = [("current", current, None, 0)]
    if getattr(system.components[name], "stochastic", False):
        tries += [(f"sample:{i}", current, cfg.temperature, i) for i in range(1, cfg.num_samples + 1)]
    for vname, var in comp_cfg.variables.items():
        if var.type not in ("hyperparameter", "model"):
            continue
        for value in alternative_values(var, current.get(vname), rng):
            tries.append((f"{vname}={value}", {**current, vname: value}, None, 0))
    seen: dict[str, dict[str, Any]] = {}
    for source, values, temperature, index in tries:
        step = system.run_step(name, fields, state, temperature=temperature, sample_index=index,
                               values=values, seed=seed if temperature is not None else 0)
        if step.error and errors is not None:
            errors.append({"component": name, "error": f"{name}: {step.error}", "candidate": source})
        if step.error:
            continue
        if _key(step.outputs) in seen:  # the same output: one candidate, every source named
            seen[_key(step.outputs)].setdefault("also", []).append(source)
            continue
        seen[_key(step.outputs)] = {"source": source, "outputs": step.outputs, "values": values}
    return list(seen.values())


def score_candidate(ctx: CollectContext, fields: dict[str, Any], outputs: dict[str, Any],
                    example: Example, errors: list[dict[str, Any]] | None = None) -> list[float]:
    """Global metric of each downstream completion of one candidate output of `ctx.name`
    (`outputs`, on its upstream `fields`); a failed completion scores 0, its error appended
    to `errors`."""
    system, state, metric, cfg = ctx.system, ctx.state, ctx.metric, ctx.cfg
    after = system.downstream(ctx.name)
    known = {**fields, **outputs}
    if not after:
        return [float(scores_of(metric, example, known)["score"])]
    n = cfg.num_rollouts if cfg.rollout_temperature > 0 else 1  # greedy rollouts would repeat
    scores = []
    for r in range(n):
        trace = system.run_from(after[0], known, state, sample_index=r,
                                temperature=cfg.rollout_temperature or None)
        if trace.error and errors is not None:
            errors.append({"component": trace.steps[-1].component, "error": trace.error,
                           "rollout": r})
        scores.append(0.0 if trace.error else
                      float(scores_of(metric, example, trace.fields)["score"]))
    return scores


def collect_example(ctx: CollectContext, example: Example, seed: int | str) -> dict[str, Any]:
    """The rollout record of one input: upstream fields, scored candidates.

    Sampling is seeded by (`seed`, component, input): the run seed and iteration go into
    `seed`, so the same input drawn in another iteration yields new candidates."""
    system, name, state, metric, cfg = ctx.system, ctx.name, ctx.state, ctx.metric, ctx.cfg
    rng = random.Random(f"{seed}:{name}:{example.id}")
    sample_seed = rng.randrange(1 << 30)
    upstream = system.run_until(name, example.inputs, state)
    record: dict[str, Any] = {"example_id": example.id, "component": name, "fields": upstream.fields,
                              "candidates": [], "error": upstream.error}
    if upstream.error:
        return record
    errors: list[dict[str, Any]] = []  # failed candidates and rollouts: failures.jsonl
    for cand in propose_candidates(system, name, upstream.fields, state, cfg, rng, sample_seed,
                                   errors):
        failed = len(errors)
        cand["scores"] = score_candidate(ctx, upstream.fields, cand["outputs"], example, errors)
        for e in errors[failed:]:
            e["candidate"] = cand["source"]
        cand["score"] = statistics.fmean(cand["scores"])
        record["candidates"].append(cand)
    final = system.cfg.final_output
    gold = example.target.get(final)
    if cfg.add_gold and final in system.cfg.components[name].outputs and gold is not None:
        outputs = {o: (gold if o == final else "") for o in system.cfg.components[name].outputs}
        if _key(outputs) not in {_key(c["outputs"]) for c in record["candidates"]}:
            score = float(scores_of(metric, example, {**upstream.fields, **outputs})["score"])
            record["candidates"].append({"source": "gold", "outputs": outputs, "values": {},
                                         "scores": [score], "score": score})
    if errors:
        record["failures"] = errors
    return record


def pairs_from_record(record: dict[str, Any], system: System) -> list[PreferencePair]:
    """Every pair of candidates of one input whose scores differ, better one chosen."""
    candidates = record["candidates"]
    if len(candidates) < 2:
        return []  # e.g. a failed input: its upstream fields may lack the inputs
    name = record["component"]
    comp = system.cfg.components[name]
    inputs = {k: record["fields"][k] for k in comp.inputs}
    models = [v for v, var in comp.variables.items() if var.type == "model"]

    def writer(cand: dict[str, Any]) -> str:
        if cand.get("source") == "gold":
            return "gold"
        return str(cand.get("values", {}).get(models[0], "")) if models else ""

    pairs = []
    for a, b in itertools.combinations(candidates, 2):
        if a["score"] == b["score"]:
            continue
        win, lose = (a, b) if a["score"] > b["score"] else (b, a)
        pairs.append(PreferencePair(component=name, inputs=inputs, chosen=win["outputs"],
                                    rejected=lose["outputs"], score_chosen=win["score"],
                                    score_rejected=lose["score"], example_id=record["example_id"],
                                    gold="gold" in (win.get("source"), lose.get("source")),
                                    chosen_writer=writer(win), rejected_writer=writer(lose)))
    return pairs


def value_returns(records: list[dict[str, Any]], vname: str) -> dict[str, list[float]]:
    """The measured global return of each value of variable `vname`, one score per input: the
    score of the candidate that value produced (also when its output equalled another's).
    Values are keyed by their text, as in the candidates' sources ("k=5")."""
    prefix = f"{vname}="
    returns: dict[str, list[float]] = {}
    for record in records:
        for cand in record["candidates"]:
            for source in [cand["source"], *cand.get("also", [])]:
                if source == "current":
                    value = str(cand["values"].get(vname))
                elif source.startswith(prefix):
                    value = source[len(prefix):]
                else:
                    continue
                returns.setdefault(value, []).append(float(cand["score"]))
    return returns


def tied_choices(system: System, name: str, records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The model and hyperparameter variables of `name` whose best mean measured return is
    shared by two or more values (every value scoring 0 included), with those values: the
    rollouts so far cannot tell the choice, so it would fall to the local reward alone."""
    ties = {}
    for vname, var in system.cfg.components[name].variables.items():
        if var.type not in ("hyperparameter", "model"):
            continue
        means = {v: statistics.fmean(s) for v, s in value_returns(records, vname).items()}
        if len(means) < 2:
            continue
        top = max(means.values())
        best = sorted(v for v, m in means.items() if m >= top - 1e-9)
        if len(best) > 1:
            ties[vname] = best
    return ties


def collect_rollouts(ctx: CollectContext, examples: list[Example], run_dir, path: str, *,
                     seed: int | str = 0) -> list[dict[str, Any]]:
    """Collect for `ctx.name` on `examples` into run_dir/path (JSON lines), skipping inputs
    already there.

    A failed input (upstream error) and every failed candidate or rollout also go to
    the run directory's failures.jsonl (stage "collect", label `path`)."""
    system, name = ctx.system, ctx.name
    done = {r["example_id"]: r for r in run_dir.read_jsonl(path)}
    todo = [e for e in examples if e.id not in done]
    if done:
        log.info("%s: %d inputs already collected in %s, %d to go", name, len(done), path, len(todo))

    def work(example: Example) -> dict[str, Any]:
        record = collect_example(ctx, example, seed)
        run_dir.append_jsonl(path, record)
        if record["error"]:
            failed.add(example.id, record["error"])
        for f in record.get("failures", []):
            failed.add(example.id, **f)
        return record

    with failures.tally("collect", path, len(todo), run_dir.failures) as failed, \
            progress.evaluation(f"collect {name}", len(todo)) as bar, \
            ThreadPoolExecutor(max_workers=ctx.cfg.workers) as pool:
        for record in pool.map(work, todo):
            done[record["example_id"]] = record
            bar.advance()
    records = [done[e.id] for e in examples if e.id in done]
    n_pairs = sum(len(pairs_from_record(r, system)) for r in records)
    log.info("%s: %d inputs, %d candidates, %d pairs", name, len(records),
             sum(len(r["candidates"]) for r in records), n_pairs)
    return records
