"""A run's budget: the one owner of what a method may spend and what it has spent.

Units (the same words in history.jsonl, spent.jsonl, summary.json and `optimas compare`):

system_runs      (partial) executions of the system: the unit methods are compared by, and
                 the one `optimizer.budget_system_runs` caps (read here, and nowhere else)
component_calls  one component run alone, outside a system run (the Optimas update step
                 scoring candidate outputs against a local reward, a rollout resampling a
                 component's output): counted, reported beside system runs, not capped
lm_calls         real model calls; lm_tokens their prompt + completion tokens
lm_requests      model calls + cache hits: the same whether answers come from the model or
                 from a recorded cache, so a replayed run reproduces it

The optimization's spend and the test evaluations' are reported apart: summary.json's
`system_runs` (and each unit above) is the optimization's, the test evaluations excluded, as
in history.jsonl's last record and `optimas compare`; `test_system_runs` (`test_<unit>`) is
what the final stage's test of the initial and final systems added
(`optimization_and_test`). The budget caps the optimization only.

Every method asks `affords(n)` (or reads `left()`) before it spends and records through
`record_system_run` / `record_component_call`; `graph.System` does the recording for the
runs it executes, the DSPy bridge's `RunCounter` for the runs DSPy drives. A resumed run
(or a stage command on an existing run directory) starts from what earlier processes
spent (`resume`, fed by optimas_cli/spend.py).
"""

from __future__ import annotations

import math
import resource
import threading
from typing import Any

from optimas_cli.errors import ConfigError

SPENT_KEYS = ("system_runs", "component_calls", "lm_calls", "lm_requests", "lm_tokens")


class Budget:
    """System runs and component calls of this run, LM usage read from the LM client."""

    def __init__(self, limit: int | None = None, lm: Any = None):
        self.limit = limit
        self.lm = lm
        self.system_runs = 0
        self.component_calls = 0
        self.offset: dict[str, int] = {}  # what earlier processes on the run directory spent
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, optimizer: Any, lm: Any = None) -> Budget:
        """The budget of a run config's `optimizer` section."""
        return cls(optimizer.budget_system_runs, lm)

    def resume(self, offset: dict[str, int]) -> None:
        """Count on from what earlier processes on the same run directory spent."""
        self.offset = dict(offset)
        self.system_runs = int(offset.get("system_runs", 0))
        self.component_calls = int(offset.get("component_calls", 0))

    # ------------------------------------------------------------ asking

    def left(self, spent: int | None = None) -> float:
        """System runs still allowed (inf without a limit); `spent`: as of an earlier count."""
        used = self.system_runs if spent is None else spent
        return math.inf if self.limit is None else self.limit - used

    def affords(self, runs: int) -> bool:
        """Whether `runs` more system runs stay within the limit."""
        return runs <= self.left()

    def require(self, runs: int, what: str) -> None:
        """ConfigError unless `runs` more system runs fit: `what` could never run on it."""
        if not self.affords(runs):
            raise ConfigError(f"optimizer.budget_system_runs={self.limit} does not cover {what} "
                              f"({runs} system runs, {self.system_runs} already spent)")

    def describe(self) -> str:
        return f"{self.system_runs} of optimizer.budget_system_runs={self.limit} system runs spent"

    # ------------------------------------------------------------ recording

    def record_system_run(self) -> None:
        with self._lock:
            self.system_runs += 1

    def record_component_call(self) -> None:
        with self._lock:
            self.component_calls += 1

    def spent(self) -> dict[str, int]:
        """Spend so far, earlier processes included (keys: SPENT_KEYS)."""
        usage = self.lm.usage_summary() if hasattr(self.lm, "usage_summary") else {}
        total = usage.get("total", {})
        calls = int(total.get("calls", 0))
        tokens = int(total.get("prompt_tokens", 0)) + int(total.get("completion_tokens", 0))
        off = self.offset
        return {"system_runs": self.system_runs,
                "component_calls": self.component_calls,
                "lm_calls": calls + off.get("lm_calls", 0),
                "lm_tokens": tokens + off.get("lm_tokens", 0),  # of real calls
                "lm_requests": calls + int(total.get("cache_hits", 0)) + off.get("lm_requests", 0)}


def optimization_and_test(total: dict[str, int], optimization: dict[str, Any] | None
                          ) -> dict[str, int]:
    """A finished run's spend, reported apart (summary.json, `optimas show`, README): each
    SPENT_KEYS key is the optimization's, as of `optimization` (the last history record, which
    `optimas compare` reads too; the test evaluations excluded), and `test_<key>` what the
    final stage's test evaluations added, the rest of `total` (Budget.spent())."""
    record = optimization or {}
    opt = {k: int(record.get(k) or 0) for k in SPENT_KEYS}
    return opt | {f"test_{k}": total[k] - opt[k] for k in SPENT_KEYS}


def inference_cost(test: dict[str, Any]) -> dict[str, float | None]:
    """What a system costs per question at test, from an evaluation's LM usage per component
    (stages/evaluate.summarize, summed over repeats): prompt + completion tokens per question
    (cache hits' tokens included: the same whatever the cache held), and LM seconds per
    question, each component's measured seconds per real call times its calls and hits
    (None where a component's every call was a cache hit: nothing was measured)."""
    per = test.get("per_component") or {}
    n = int(test.get("n") or 0) * int(test.get("repeats") or 1)
    if not n:
        return {"tokens_per_question": None, "lm_seconds_per_question": None}
    tokens = sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for u in per.values())
    seconds: float | None = 0.0
    for u in per.values():
        asked = u.get("calls", 0) + u.get("cache_hits", 0)
        if not asked:
            continue
        if not u.get("calls"):
            seconds = None
            break
        seconds += u.get("latency_s", 0.0) / u["calls"] * asked
    return {"tokens_per_question": tokens / n,
            "lm_seconds_per_question": None if seconds is None else seconds / n}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its children that have ended (sandboxed
    programs, servers it started): what a run cost the machine, unlike its wall time, whatever
    else ran beside it. A resumed run's process counts since the resume."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return round(own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime, 1)

