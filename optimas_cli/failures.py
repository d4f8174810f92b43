"""Failed examples, never silent: one JSON line each in RUN_DIR/failures.jsonl.

A line is {"stage", "label", "example_id", "component", "error"} and, for a rollout
candidate, "candidate": stage is "evaluate" (validation, test and baseline trials; the
label says which, e.g. "val initial", "test final") or "collect" (the label is the
rollout file, e.g. "rollouts/iter_001/retriever.jsonl"). The component is the failing step's (a trace error reads "component:
ErrorType: message"), or "metric" when the metric raised. Each evaluation or collection
that had failures also logs one line to run.log: how many, and the first one.

Runs fail loudly: an evaluation whose share of failed examples is over
`eval.max_failed_share` (`optimas evaluate`, the final test, the validation of the starting
system), or a validation of the starting system where every example failed, raises
EvaluationFailed: one line naming the most common error and its count; the run ends FAILED
(that line in RUN_DIR/FAILED) with exit code 1. A candidate's validation never does: its
failures score 0 and the candidate is rejected.

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


class EvaluationFailed(RuntimeError):
    """Too many examples of one evaluation failed: the run cannot be trusted, it ends FAILED."""


def kind_of(error: str) -> str:
    """What failures are grouped by: "component: ErrorType" of a trace or metric error
    ("component: ErrorType: message"), else the whole error."""
    head, _, rest = error.partition(": ")
    etype = rest.partition(": ")[0]
    if component_of(error) and etype and " " not in etype and etype[:1].isupper():
        return f"{head}: {etype}"
    return error


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
        self.kinds: Counter = Counter()  # failures per kind_of(error)
        self._first_of: dict[str, dict[str, Any]] = {}  # the first failure of each kind
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
            kind = kind_of(error)
            self.kinds[kind] += 1
            self._first_of.setdefault(kind, record)
        if self.sink is not None:
            self.sink.write(record)

    def summary(self, total: int) -> str | None:
        """One line for run.log (None when nothing failed)."""
        if not self.count:
            return None
        f = self.first
        return (f"{self.stage} {self.label}: {self.count} failure(s) in {len(self.examples)} of {total} "
                f"example(s); first: example {f['example_id']} at {f['component']}: {f['error']}")

    def check(self, total: int, max_share: float, *, all_failed: bool = False) -> None:
        """EvaluationFailed when more than `max_share` of the `total` examples failed, or
        (`all_failed`) every one of them did; the message names the most common error."""
        n = len(self.examples)
        if not total or not (n / total > max_share or (all_failed and n == total)):
            return
        kind, count = self.kinds.most_common(1)[0]
        f = self._first_of[kind]
        error = (f["error"].splitlines() or [""])[0][:300]  # one line, however long the error
        why = (f"more than eval.max_failed_share={max_share:g}" if n / total > max_share
               else "every example of a validation of the starting system")
        raise EvaluationFailed(
            f"{self.stage} {self.label}: {n} of {total} examples failed ({why}); most common "
            f"error ({count} of {self.count} failures, first at example {f['example_id']}): "
            f"{error} (each one in {FILE})")


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
