"""The baselines' shared step: a Trial scores candidates on val within the budget.

A Trial owns a baseline's `history.jsonl`, in the Optimas loop's record format
(optimas_cli.history.HistoryRecord, documented there; a baseline's iteration adds
"candidate", what the tried state changes, and "val", its val summary), so
`stage_final` (summary.json, val_score.png) and `optimas compare` read every method
alike. Each record is validated as it is written (`history.append_record`).

Every candidate is scored end to end on the val split (one system run per example).
`try_state` accepts it by the same rule as the Optimas loop (`optimizer.accept_rule`:
mean gain, paired bootstrap or sign test against the accepted state on the same
examples, `history.decide`), and records the paired difference as "decision". A resumed run replays the records already on disk
instead of evaluating again, as long as the baseline proposes the same candidates
in the same order (deterministic baselines do).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from optimas_cli import jsonl, progress
from optimas_cli.errors import ConfigError
from optimas_cli.graph import State
from optimas_cli.history import accepted_scores, accepted_val, append_record, decide
from optimas_cli.history import short as _short
from optimas_cli.layout import HISTORY
from optimas_cli.methods.base import evaluate_val, initial_record
from optimas_cli.run_dir import RunDir

log = logging.getLogger("optimas.baselines")

def check_components(rt, names: list[str] | None, eligible: list[str], what: str) -> list[str]:
    """`optimizer.options.components` restricted to `eligible` (all of them when None)."""
    if names is None:
        return eligible
    for n in names:
        if n not in eligible:
            raise ConfigError(f"optimizer.options.components: '{n}' is not a component with {what} "
                              f"(those are: {', '.join(eligible) or 'none'})")
    return [n for n in eligible if n in names]


# ------------------------------------------------------------------ states


def state_key(state: State) -> str:
    return json.dumps(state, sort_keys=True, default=str)


def state_diff(before: State, after: State) -> State:
    """The variables whose value differs, with their values in `after`."""
    out: State = {}
    for comp, values in after.items():
        for var, value in values.items():
            if before.get(comp, {}).get(var) != value:
                out.setdefault(comp, {})[var] = value
    return out


def with_values(state: State, changes: dict[tuple[str, str], Any]) -> State:
    """A deep copy of `state` with (component, variable) -> value set."""
    out = copy.deepcopy(state)
    for (comp, var), value in changes.items():
        out.setdefault(comp, {})[var] = value
    return out


# ------------------------------------------------------------------ the trial


class Trial:
    """Evaluate candidates on val within the budget, keep the best, write history.jsonl."""

    def __init__(self, rt, run_dir: RunDir, name: str):
        self.rt = rt
        self.run_dir = run_dir
        self.name = name
        self.budget = rt.budget
        self.opt = rt.composed.run.optimizer
        self.val_cost = len(rt.splits["val"])
        numbered = jsonl.read_numbered(run_dir.path / HISTORY)  # what an earlier process wrote
        self.disk = [record for _, record in numbered]
        self.disk_lines = [line for line, _ in numbered]  # where each lies, for the messages
        self.records: list[dict[str, Any]] = []
        self.scores: dict[str, float] = {}  # state key -> val mean of every state evaluated
        self.state: State = {}
        self.val: float = 0.0
        self.stopped: str | None = None  # why the baseline stopped early, if it did

    # -------------------------------------------------------------- budget

    @property
    def replaying(self) -> bool:
        return len(self.records) < len(self.disk)

    @property
    def iteration(self) -> int:
        """The number the next record gets."""
        return len(self.records)

    def can_afford(self, extra: int = 0) -> bool:
        """Whether one more val evaluation (plus `extra` runs) stays within the budget."""
        if self.replaying:
            return True  # paid for by the process that wrote the record
        ok = self.budget.affords(self.val_cost + extra)
        if not ok and self.stopped is None:
            self.stopped = f"budget: {self.budget.describe()}; the next step needs {self.val_cost + extra}"
            log.info("%s: %s", self.name, self.stopped)
        return ok

    # -------------------------------------------------------------- steps

    def start(self, initial: State, *, replay: bool = True) -> tuple[State, float]:
        """The initial record (evaluated, or read back from disk); returns (state, val).

        On resume, `replay=True` lets `try_state` replay the records on disk one by one
        (deterministic baselines re-propose the same candidates); `replay=False` takes
        them all at once and continues after the last one.
        """
        if self.val_cost == 0:
            raise ConfigError(f"data.val_size: the '{self.name}' baseline scores candidates on the "
                              "val split, which is empty; set data.val_size > 0")
        if self.disk:
            first = self.disk[0]
            if first.get("kind") != "initial":
                raise ConfigError(f"resume: {self.run_dir.path}/{HISTORY} does not start with "
                                  "an initial record")
            self.records.append(first)
            self._set_from(first)
            self.scores[state_key(first["state"])] = first["val"]["mean"]
            if not replay:
                for record in self.disk[1:]:
                    if record.get("changed") and record.get("candidate"):
                        tried = with_values(self.state, {(c, v): x for c, vals in
                                                         record["candidate"].items()
                                                         for v, x in vals.items()})
                        self.scores[state_key(tried)] = record["val_after"]
                    self.records.append(record)
                    self._set_from(record)
            return self.state, self.val
        self.budget.require(self.val_cost, "one validation evaluation")
        record = initial_record(self.rt, initial)
        self._append(record)
        self.scores[state_key(initial)] = record["val"]["mean"]
        return self.state, self.val

    def seen(self, state: State) -> bool:
        return state_key(state) in self.scores

    def try_state(self, candidate: State, component: str, **extra: Any) -> dict[str, Any] | None:
        """Score `candidate` on val and accept it if it improves; None if it was scored before."""
        key = state_key(candidate)
        if key in self.scores:
            return None
        diff = state_diff(self.state, candidate)
        if self.replaying:
            record = self.disk[len(self.records)]
            if record.get("kind") != "iteration" or record.get("candidate") != _jsonable(diff):
                raise ConfigError(
                    f"resume: {self.run_dir.path / HISTORY} line "
                    f"{self.disk_lines[len(self.records)]} tried "
                    f"{record.get('candidate')}, but this run proposes {diff} there; the config "
                    "changed since (resume with the original config)")
            self.records.append(record)
            self._set_from(record)
            if record.get("changed"):
                self.scores[key] = record["val_after"]
            return record
        t0 = time.perf_counter()
        progress.stage("validate", iteration=self.iteration, component=component)
        val = evaluate_val(self.rt, candidate, f"val {self.name} {self.iteration}")
        self.scores[key] = val["mean"]
        decision = decide(val, self.val, accepted_scores(self.records), self.opt,
                          seed=self.rt.composed.run.seed + self.iteration)
        accepted = decision.pop("accepted")
        record = {"iteration": self.iteration, "kind": "iteration", "component": component,
                  "val_before": self.val, "val_after": val["mean"], "accepted": accepted,
                  "changed": True, "candidate": diff, "val": _short(val),
                  "scores_after": val.get("scores"), "decision": decision, **extra,
                  "state": candidate if accepted else self.state,
                  "seconds": time.perf_counter() - t0,
                  **self.budget.spent()}
        log.info("%s %d: %s val %.4f -> %.4f, %s", self.name, record["iteration"], component,
                 record["val_before"], record["val_after"], "accepted" if accepted else "reverted")
        self._append(record)
        progress.stage("accepted" if accepted else "reverted", iteration=record["iteration"],
                       component=component,
                       detail=f"val {record['val_before']:.3f} -> {record['val_after']:.3f}")
        return record

    def no_candidate(self, component: str, seconds: float = 0.0, **extra: Any) -> dict[str, Any]:
        """A step that produced nothing to evaluate (e.g. an optimizer reply that did not parse)."""
        record = {"iteration": self.iteration, "kind": "iteration", "component": component,
                  "val_before": self.val, "val_after": self.val, "accepted": False,
                  "changed": False, "candidate": {}, **extra, "state": self.state,
                  "seconds": seconds, **self.budget.spent()}
        self._append(record)
        return record

    # -------------------------------------------------------------- internals

    def _append(self, record: dict[str, Any]) -> None:
        append_record(self.run_dir, record)
        self.records.append(_jsonable(record))
        self._set_from(self.records[-1])

    def _set_from(self, record: dict[str, Any]) -> None:
        self.state = copy.deepcopy(record["state"])
        self.val = accepted_val(record)


def _jsonable(data: Any) -> Any:
    """`data` as it reads back from history.jsonl (tuples become lists, etc.)."""
    return json.loads(json.dumps(data, ensure_ascii=False, default=str))


def variables_of(rt, types: Iterable[str]) -> list[tuple[str, str]]:
    """(component, variable) of every variable of one of `types`, in run order."""
    types = set(types)
    return [(c, v) for c in rt.system.order
            for v, var in rt.system.cfg.components[c].variables.items() if var.type in types]
