"""Failed examples, never silent: one JSON line each in RUN_DIR/failures.jsonl.

A line is {"stage", "label", "example_id", "component", "error"} and, for a rollout
candidate, "candidate": stage is "evaluate" (validation, test and baseline trials; the
label says which, e.g. "val initial", "test final") or "collect" (the label is the
rollout file, e.g. "rollouts/iter_001/retriever.jsonl"). The component is the failing step's (a trace error reads "component:
ErrorType: message"), or "metric" when the metric raised. Each evaluation or collection
that had failures also logs one line to run.log: how many, and the first one.

The run directory owns a FailureLog and makes it the current one while a command runs
(RunDir.guard), so evaluations find it without being handed the run directory; outside
a run directory nothing is recorded.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from optimas_cli import layout
from optimas_cli.config import scrub

FILE = layout.FAILURES
REPLAY_MISS = "cache miss in replay mode"  # the LM client's error for a request not recorded
log = logging.getLogger("optimas.failures")


def component_of(error: str | None) -> str | None:
    """The failing component named at the start of a trace error ("name: Error: ...")."""
    if not error:
        return None
    head, sep, _ = error.partition(": ")
    return head if sep and head and " " not in head else None


class FailureLog:
    """Where failures go: `append` writes one record (RunDir.append_jsonl is thread-safe)."""

    def __init__(self, append: Callable[[dict[str, Any]], None]):
        self._append = append

    def write(self, record: dict[str, Any]) -> None:
        self._append(record)


_current: ContextVar[FailureLog | None] = ContextVar("optimas_failures", default=None)


def activate(sink: FailureLog) -> Token:
    """Make `sink` the current failure log of this thread (undo with `deactivate`)."""
    return _current.set(sink)


def deactivate(token: Token) -> None:
    _current.reset(token)


def current() -> FailureLog | None:
    """The failure log of the run directory this thread works for, if any."""
    return _current.get()


class Tally:
    """Failures of one evaluation or collection: written as they come (from any thread),
    summarized at the end."""

    def __init__(self, stage: str, label: str, sink: FailureLog | None):
        self.stage, self.label, self.sink = stage, label, sink
        self.first: dict[str, Any] | None = None
        self.count = 0
        self.examples: set[str] = set()
        self._lock = threading.Lock()

    def add(self, example_id: str, error: str, component: str | None = None,
            **extra: Any) -> None:
        error = scrub(error)  # a provider error may quote the key it was sent
        record = {"stage": self.stage, "label": self.label, "example_id": example_id,
                  "component": component or component_of(error), "error": error, **extra}
        with self._lock:
            self.count += 1
            self.examples.add(example_id)
            self.first = self.first or record
        if self.sink is not None:
            self.sink.write(record)

    def summary(self, total: int) -> str | None:
        """One line for run.log (None when nothing failed)."""
        if not self.count:
            return None
        f = self.first
        return (f"{self.stage} {self.label}: {self.count} failure(s) in {len(self.examples)} of {total} "
                f"example(s); first: example {f['example_id']} at {f['component']}: {f['error']}")


@contextmanager
def tally(stage: str, label: str, total: int, sink: FailureLog | None = None) -> Iterator[Tally]:
    """Count failures of one evaluation/collection; log how many and the first at the end
    (also when it ends early, e.g. on a spent budget). `sink`: the current log by default."""
    t = Tally(stage, label, sink if sink is not None else current())
    try:
        yield t
    finally:
        line = t.summary(total)
        if line:
            log.warning("%s", line)


def by_label(records: list[dict[str, Any]]) -> Counter:
    """Failure counts per (stage, label), in first-seen order."""
    return Counter((r.get("stage", "?"), r.get("label", "?")) for r in records)


def replay_misses(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failures that are LM requests missing from a replayed cache."""
    return [r for r in records if REPLAY_MISS in str(r.get("error", ""))]
