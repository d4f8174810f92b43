"""The Optimas loop (arXiv 2507.03041) over one run directory, as named, resumable steps.

Each iteration of `OptimasLoop.run`:

select    pick a component: first each one not yet collected (the final component first,
          whose candidates are scored without running anything downstream), then by a
          softmax over the mean preference gaps of the components with pairs;
          `optimizer.components_per_iteration` > 1 picks that many distinct ones, and
          collect, adapt and update below run for each in turn, each on the system as
          the ones before it left it (block coordinate ascent), validated together
collect   fresh on-policy rollouts of that component (seeded by run seed, iteration and
          input, so a re-drawn input gives new samples); more rounds while its pairs are
          fewer than `optimizer.min_pairs` and the budget allows, else the iteration is
          skipped with the reason in history
adapt     its reward head (and, the first time, the shared backbone) on its pairs
          plus the replay buffer
update    its variables against the adapted local reward (methods/optimas/update.py); a
          head not trusted on held-out pairs of its own outputs (rewards/trust.py) ranks
          no prompt or weights and breaks no tie of measured returns
validate  the changed system on the validation split, accepted by `history.decide`
          (once per iteration: several components' changes are kept or reverted together)

Every step's cost in (partial) system runs is bounded before it starts, so
`optimizer.budget_system_runs` is never exceeded. Each iteration appends one record
to history.jsonl, rollouts go to rollouts/iter_NNN/, reward models to lrf/iter_NNN/:
a restarted run skips what is on disk.

`stage_collect` and `stage_fit` are the paper's eager start (every component up front),
run by `optimas collect|fit RUN_DIR` or `optimizer.collect.initial: all`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import TYPE_CHECKING, Any

from optimas_cli import layout, progress
from optimas_cli.graph import State
from optimas_cli.history import (
    accepted_scores,
    accepted_val,
    append_record,
    decide,
    steps_of,
    validated_before,
)
from optimas_cli.layout import HISTORY
from optimas_cli.methods.base import Context, evaluate_val, initial_record
from optimas_cli.methods.optimas.collect import (
    CollectContext,
    collect_cost,
    collect_rollouts,
    tied_choices,
)
from optimas_cli.methods.optimas.fit import fit_local_rewards, new_reward_model, save_reward_model
from optimas_cli.methods.optimas.pairs import (
    barren_components,
    pairs_of,
    pick_component,
    preference_gaps,
)
from optimas_cli.methods.optimas.update import prompt_history, update_component
from optimas_cli.methods.optimas.updaters.common import UpdateContext
from optimas_cli.rewards import LocalRewardModel
from optimas_cli.rewards.judge import load_reward_model
from optimas_cli.run_dir import RunDir

if TYPE_CHECKING:
    from optimas_cli.runtime import Runtime

log = logging.getLogger("optimas.loop")


def draw_inputs(rt: Runtime, iteration: int, component: str = "", n: int | None = None) -> list:
    """A fresh seeded draw of train inputs for one collection."""
    train = rt.splits["train"]
    n = min(n or rt.composed.run.optimizer.collect.num_inputs, len(train))
    return random.Random(f"{rt.composed.run.seed}:{iteration}:{component}").sample(train, n)


# ------------------------------------------------------------------ eager start


def stage_collect(rt: Runtime, run_dir: RunDir, state: State) -> dict[str, list[dict]]:
    """Initial rollouts for every optimizable component (iteration 0)."""
    cfg = rt.composed.run.optimizer.collect
    out = {}
    for name in rt.system.optimizable:
        progress.stage("collect", component=name, detail="eager start")
        out[name] = collect_rollouts(CollectContext(rt.system, name, state, rt.metric, cfg),
                                     draw_inputs(rt, 0), run_dir, layout.rollouts(0, name),
                                     seed=f"{rt.composed.run.seed}:0")
    return out


def stage_fit(rt: Runtime, run_dir: RunDir) -> tuple[LocalRewardModel, dict[str, Any]]:
    """LRF of iteration 0 on every rollout on disk; loaded from disk when already fitted."""
    directory = run_dir.path / layout.lrf(0)
    if (directory / layout.METRICS).exists():
        return load_reward_model(directory), run_dir.read_json(f"{layout.lrf(0)}/{layout.METRICS}")
    run = rt.composed.run
    progress.stage("fit", detail="every component (eager start)")
    lrf = new_reward_model(rt.system, run.reward, run.seed)
    pairs = [p for n in rt.system.optimizable for p in pairs_of(rt, run_dir, n)]
    if not pairs:
        result: dict[str, Any] = {"skipped": "no preference pairs: every candidate scored the same"}
        log.warning("LRF iteration 0: %s", result["skipped"])
    else:
        result = fit_local_rewards(lrf, pairs, run.reward, seed=run.seed)
    save_reward_model(lrf, directory, result, run_dir)
    return lrf, result


# ------------------------------------------------------------------ the loop


class OptimasLoop:
    """Iterations 1..N; each appends to history.jsonl, so a restart skips finished ones."""

    def __init__(self, rt: Runtime, run_dir: RunDir, lrf: LocalRewardModel | None = None):
        self.rt = rt
        self.run_dir = run_dir
        self.run_cfg = rt.composed.run
        self.opt = rt.composed.run.optimizer
        self.budget = rt.budget
        self.history: list[dict[str, Any]] = run_dir.read_jsonl(HISTORY)
        # a resumed run goes on with the model its iterations saved last (see `lrf`)
        self._lrf = None if any(h.get("lrf_dir") for h in self.history) else lrf

    @property
    def lrf(self) -> LocalRewardModel:
        """The local reward model as the run left it: the one the latest iteration that
        adapted it saved (a resumed run), else the one given (the eager start's), else a new
        one. Loaded on first use, so a resumed run with nothing left to adapt loads none."""
        if self._lrf is None:
            saved = [h["lrf_dir"] for h in self.history if h.get("lrf_dir")]
            self._lrf = load_reward_model(self.run_dir.path / saved[-1]) if saved else \
                new_reward_model(self.rt.system, self.run_cfg.reward, self.run_cfg.seed)
        return self._lrf

    @lrf.setter
    def lrf(self, model: LocalRewardModel) -> None:
        self._lrf = model

    # -------------------------------------------------------------- budget

    def left(self) -> float:
        """System runs still allowed (inf without a budget)."""
        return self.budget.left()

    @property
    def val_cost(self) -> int:
        return len(self.rt.splits["val"])

    # -------------------------------------------------------------- steps

    def select(self, it: int) -> list[tuple[str, dict[str, Any]]]:
        """The components of iteration `it` (`components_per_iteration` distinct ones, fewer
        when the system has fewer or the budget affords fewer), each with why. Only earlier
        iterations' rollouts count, so a run restarted in the middle of collecting decides
        as it did the first time."""
        gaps = preference_gaps(self.rt, self.run_dir, before=it)
        want = self.opt.components_per_iteration
        # a component whose one input of collection the budget cannot pay next to a validation
        # is not picked: the cheaper ones (the final one costs one upstream run) still can be.
        # The budget as the last iteration left it, so a restart mid-collection decides alike.
        left = self.budget.left(self.history[-1].get("system_runs", self.budget.system_runs)) \
            - self.val_cost
        affordable = [n for n in self.rt.system.optimizable
                      if collect_cost(self.rt.system, n, self.opt.collect) <= left]
        fresh = [n for n in reversed(affordable) if gaps[n] is None]
        picks = [(n, {"reason": "not collected yet", "gaps": gaps}) for n in fresh[:want]]
        rng = random.Random(f"{self.run_cfg.seed}:select:{it}")
        barren = barren_components(self.history, gaps, it)
        pool = {n: gaps[n] for n in affordable if gaps[n] is not None and n not in barren}
        while len(picks) < want and pool:
            name, probs = pick_component(pool, self.opt.selection_temperature, rng)
            picks.append((name, {"reason": "softmax over preference gaps", "gaps": gaps,
                                 "selection": probs}))
            del pool[name]
        return picks

    def counted_pairs(self, name: str) -> int:
        """The pairs of `name` that count toward `min_pairs`."""
        return len(pairs_of(self.rt, self.run_dir, name, self.opt.replay_buffer_size))

    def collect(self, it: int, name: str, state: State) -> tuple[list[dict], str | None]:
        """Fresh rollouts of `name` for iteration `it`, in rounds of new inputs while it has
        fewer than `min_pairs` pairs or (`adaptive_rounds`) while its best model or
        hyperparameter values tie on measured returns, up to `max_rounds`; an adaptive
        collection stops after a round that found no new pair.

        Returns the records of this iteration and, if the component cannot be optimized
        now, why. Each round is bounded by the budget left after one validation.
        """
        cfg = self.opt.collect
        records: list[dict] = []
        have = self.counted_pairs(name)
        rounds = 0
        for rnd in range(cfg.max_rounds):
            per_input = collect_cost(self.rt.system, name, cfg)
            left = self.left() - self.val_cost
            n = cfg.num_inputs if left == math.inf else min(cfg.num_inputs, int(left // per_input))
            if n < 1:
                if records and have >= self.opt.min_pairs:
                    break  # enough pairs; a tie left goes to a trusted local reward
                return records, (f"budget: {self.left():.0f} system runs left, one input costs "
                                 f"up to {per_input} and validation {self.val_cost}")
            if rnd:
                progress.stage("collect", iteration=it, of=self.opt.num_iterations, component=name,
                               detail=f"round {rnd + 1}, {have} pairs so far")
            records += collect_rollouts(
                CollectContext(self.rt.system, name, state, self.rt.metric, cfg),
                draw_inputs(self.rt, it * 100 + rnd, name, n), self.run_dir,
                layout.rollouts(it, name, rnd), seed=f"{self.run_cfg.seed}:{it}:{rnd}")
            rounds, before = rnd + 1, have
            have = self.counted_pairs(name)
            ties = tied_choices(self.rt.system, name, records) if cfg.adaptive_rounds else {}
            if have >= self.opt.min_pairs and not ties:
                return records, None
            if cfg.adaptive_rounds and have == before:
                break  # this round found no new pair: another would most likely not either
            if ties and rnd + 1 < cfg.max_rounds:
                log.info("%s: best values tie on measured returns (%s): another round", name, ties)
        if have >= self.opt.min_pairs:
            return records, None
        return records, (f"{have} preference pairs after {rounds} collection round(s), "
                         f"fewer than optimizer.min_pairs={self.opt.min_pairs}")

    def adapt(self, it: int, name: str, own_dir: bool = False) -> tuple[dict[str, Any], str]:
        """Train `name`'s head on its pairs (the backbone too the first time it is fitted).

        Saved to lrf/iter_NNN, or lrf/iter_NNN-<name> (`own_dir`: several per iteration)."""
        pairs = pairs_of(self.rt, self.run_dir, name, self.opt.replay_buffer_size)
        first = not any(s.get("component") == name and s.get("adapted")
                        for h in self.history for s in steps_of(h))
        rel = layout.lrf(it, name if own_dir else None)
        lrf_dir = self.run_dir.path / rel
        if (lrf_dir / layout.METRICS).exists():  # a restart after the fit, before the record
            self.lrf = load_reward_model(lrf_dir)
            result = self.run_dir.read_json(f"{rel}/{layout.METRICS}")
        else:
            result = fit_local_rewards(self.lrf, pairs, self.run_cfg.reward, components=[name],
                                       head_only=not first, seed=self.run_cfg.seed + it)
            save_reward_model(self.lrf, lrf_dir, result, self.run_dir)
        result["pairs"] = len(pairs)
        return result, str(lrf_dir.relative_to(self.run_dir.path))

    def update(self, it: int, name: str, records: list[dict], lrf_dir: str,
               state: State, trust: dict[str, Any] | None = None) -> dict[str, Any]:
        """Update `name` from `state`; `trust`: its head's (the fit's held-out `trust`), None
        when not measured (then the local reward ranks nothing)."""
        ctx = UpdateContext(self.rt.system, name, [r for r in records if r["candidates"]],
                            self.lrf, state, self.opt.update, self.rt.lm,
                            seed=self.run_cfg.seed + it, workers=self.opt.collect.workers,
                            trust=trust)
        return update_component(ctx, default_model=self.run_cfg.lm.model,
                                prompt_history=prompt_history(self.history, name),
                                reward_dir=self.run_dir.path / lrf_dir,
                                weights_dir=self.run_dir.path / layout.weights(name, it),
                                rejected=[h["tried"] for h in self.history
                                          if h.get("tried") and not h.get("accepted")])

    def validate(self, it: int, candidate: State) -> dict[str, Any]:
        """The candidate on validation, and the accept decision against the incumbent. A
        candidate validated before (a rejected proposal made again) is decided on its
        earlier scores, at no cost."""
        before = validated_before(self.history, candidate)
        after = before or evaluate_val(self.rt, candidate, f"val iter {it}")
        decision = decide(after, accepted_val(self.history[-1]), accepted_scores(self.history),
                          self.opt, seed=self.run_cfg.seed + it)
        return {"val_after": after["mean"], "scores_after": after.get("scores"), "tried": candidate,
                "accepted": decision.pop("accepted"), "decision": decision,
                **({"validation_of": before["iteration"]} if before else {})}

    # -------------------------------------------------------------- driver

    @property
    def current(self) -> State:
        return self.history[-1]["state"]

    def _append(self, record: dict[str, Any]) -> None:
        append_record(self.run_dir, record)
        self.history.append(record)

    def run(self, initial: State) -> State:
        if not self.history:
            self._append(initial_record(self.rt, initial))
        for it in range(len(self.history), self.opt.num_iterations + 1):
            picks = self.select(it) if self.left() >= self.val_cost + 1 else []
            if not picks:
                log.info("no component for iteration %d: budget_system_runs=%s with %d runs "
                         "spent leaves too few for a validation and one input of collection, "
                         "or the components left gave no pairs on the current system",
                         it, self.budget.limit, self.budget.system_runs)
                break
            self._append(self.iteration(it, picks))
        return self.current

    def step(self, it: int, name: str, why: dict[str, Any], state: State,
             own_dir: bool) -> tuple[dict[str, Any], State]:
        """Collect, adapt and update one component on `state`; the step's record and the
        state it leaves (unchanged when skipped)."""
        step: dict[str, Any] = {"component": name, **why}
        where = {"iteration": it, "of": self.opt.num_iterations, "component": name}
        progress.stage("collect", **where, detail=why["reason"])
        records, skip = self.collect(it, name, state)
        step["inputs"] = len(records)
        ties = tied_choices(self.rt.system, name, records)
        if ties:  # what the rollouts could not tell apart: a trusted local reward decides
            step["tied"] = ties
        if skip is None:
            progress.stage("fit", **where)
            lrf, lrf_dir = self.adapt(it, name, own_dir)
            step.update(adapted=True, lrf=lrf.get("heldout", {}).get(name), pairs=lrf["pairs"],
                        lrf_dir=lrf_dir)
            if self.left() < self.val_cost:
                skip = f"budget: {self.left():.0f} system runs left, validation needs {self.val_cost}"
        if skip is not None:
            step["skipped"] = skip
            log.info("iteration %d: %s skipped: %s", it, name, skip)
            progress.stage("skipped", **where, detail=skip)
            return step, state
        progress.stage("update", **where)
        update = self.update(it, name, records, step["lrf_dir"], state,
                             trust=(step.get("lrf") or {}).get("trust"))
        step["update"] = update | {"state": None}
        return step, update["state"]

    def iteration(self, it: int,
                  picks: list[tuple[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
        """Iteration `it` on `picks` (what `select` chose; chosen here when not given)."""
        t0 = time.perf_counter()
        picks = self.select(it) if picks is None else picks
        names = [n for n, _ in picks]
        log.info("iteration %d: %s (%s)", it, "+".join(names),
                 "; ".join(why["reason"] for _, why in picks))
        val = accepted_val(self.history[-1])
        record: dict[str, Any] = {"iteration": it, "kind": "iteration", "component": "+".join(names),
                                  "val_before": val, "val_after": val, "changed": False,
                                  "accepted": False}
        state, steps = self.current, []
        for name, why in picks:
            step, state = self.step(it, name, why, state, own_dir=len(picks) > 1)
            steps.append(step)
        if len(steps) == 1:
            record.update(steps[0])
        else:  # the steps in order; the reward model the run goes on with is the last one fitted
            record.update(components=names, steps=steps)
            fitted = [s["lrf_dir"] for s in steps if s.get("lrf_dir")]
            if fitted:
                record["lrf_dir"] = fitted[-1]
            if all("skipped" in s for s in steps):
                record["skipped"] = "; ".join(f"{s['component']}: {s['skipped']}" for s in steps)
        record["changed"] = state != self.current
        if record["changed"]:
            progress.stage("validate", iteration=it, of=self.opt.num_iterations,
                           component=record["component"])
            record.update(self.validate(it, state))
        record["state"] = state if record["accepted"] else self.current
        record["seconds"] = time.perf_counter() - t0
        record.update(self.budget.spent())
        log.info("iteration %d: %s val %.4f -> %.4f, %s", it, record["component"],
                 record["val_before"], record["val_after"],
                 "accepted" if record["accepted"] else "kept the incumbent")
        progress.stage("accepted" if record["accepted"] else "kept the incumbent", iteration=it,
                       of=self.opt.num_iterations, component=record["component"],
                       detail=f"val {record['val_before']:.3f} -> {record['val_after']:.3f}")
        return record


def optimize(ctx: Context) -> State:
    """The Optimas method: eager start if asked for, then the iterations."""
    rt, run_dir, initial, stages = ctx.rt, ctx.run_dir, ctx.initial, ctx.stages
    opt = rt.composed.run.optimizer
    history = ctx.history()
    final = history[-1]["state"] if history else initial
    if opt.num_iterations == 0:
        return final
    eager = opt.collect.initial == "all"
    if "collect" in stages and (eager or stages == ("collect",)):
        stage_collect(rt, run_dir, initial)
    lrf = None
    if "fit" in stages and (eager or stages == ("fit",)):
        lrf, _ = stage_fit(rt, run_dir)
    if "update" in stages:
        final = OptimasLoop(rt, run_dir, lrf).run(initial)
    return final
