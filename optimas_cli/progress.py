"""What a command shows while it works, on stderr: the stage, the iteration and component,
the budget spent against the total, and a bar for each evaluation.

On a terminal (rich): each stage as a line, under them a spinner with the current stage
and a live bar for each evaluation running. Off one (a pipe, a file, CI): plain lines,
one per stage event and a few per evaluation (every tenth of it, and its end with the
score), each stamped with the time since the work began (the models already loaded):

    [0:00:02] initial validation | 0/40 system runs
    [0:00:31] val initial: 3/3 examples in 29.1 s, score 0.000, 0 failed
    [0:00:31] iteration 1/1 | collect | answer_generator | not collected yet | 3/40 system runs
    [0:03:40] test | initial system | 10/40 system runs for the optimization, 0 for the test

`-q` (or a sweep's jobs) shows nothing. The run directory and stdout never see any of it.
Warnings and errors the "optimas" loggers write to run.log are shown too, as they happen.

jobs.execute makes a Reporter current for the command (`reporting`); the places with
something to say call `stage(...)` and `evaluation(...)` below, which say nothing when
no reporter is current (library use, tests) or it is quiet.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from optimas_cli.config import scrub

if TYPE_CHECKING:
    from optimas_cli.budget import Budget

# the stages a run reports, in the order an Optimas run goes through them ("skipped"
# when it does; a baseline's step says "validate", then "accepted" or "rejected")
STAGES = ("initial validation", "collect", "fit", "update", "validate", "test")
PLAIN_STEPS = 10  # a pipe gets an evaluation's count every tenth of it, and at its end


@dataclass(frozen=True)
class Event:
    """One thing a run does next: `stage` (e.g. "collect"), in iteration `iteration` of
    `of`, on `component`, with a `detail` (why, a score change)."""

    stage: str
    iteration: int | None = None
    of: int | None = None
    component: str | None = None
    detail: str = ""

    def text(self) -> str:
        parts = [f"iteration {self.iteration}" + (f"/{self.of}" if self.of else "")] \
            if self.iteration is not None else []
        return " | ".join([*parts, self.stage, *filter(None, (self.component, self.detail))])


def system_runs(spent: int, limit: int | None) -> str:
    """"N/M system runs" (N without a limit)."""
    return f"{spent}/{limit} system runs" if limit is not None else f"{spent} system runs"


def clock(seconds: float) -> str:
    """H:MM:SS."""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Tally:
    """One evaluation's count of finished examples; `note` is said at its end."""

    def __init__(self, reporter: Reporter, label: str, total: int):
        self.reporter, self.label, self.total = reporter, label, total
        self.done = 0
        self.note = ""
        self.t0 = time.monotonic()
        self.task: TaskID | None = None  # its bar on a terminal

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.reporter.advanced(self)

    def ending(self) -> str:
        """The line that closes it: how many in how long, and the note (a score)."""
        took = time.monotonic() - self.t0
        if self.done < self.total:
            return f"{self.label}: stopped at {self.done}/{self.total} examples after {took:.1f} s"
        note = f", {self.note}" if self.note else ""
        return f"{self.label}: {self.done}/{self.total} examples in {took:.1f} s{note}"


class Reporter:
    """Says nothing (`-q`, a sweep's jobs, no command running); the base of the two that
    speak. `budget`: the run's, whose system runs each stage line gives (None: none given)."""

    def __init__(self, budget: Budget | None = None):
        self.budget = budget
        self.t0 = time.monotonic()
        self.optimization: int | None = None  # system runs spent when the test began

    def spent(self, stage: str) -> str:
        """The budget figure of a stage line; from the test on, the optimization's is kept
        apart from what the test evaluations add (the budget caps only the former)."""
        b = self.budget
        if b is None:
            return ""
        if stage == "test" and self.optimization is None:
            self.optimization = b.system_runs
        if self.optimization is None:
            return system_runs(b.system_runs, b.limit)
        return (f"{system_runs(self.optimization, b.limit)} for the optimization, "
                f"{b.system_runs - self.optimization} for the test")

    def stage(self, event: Event) -> None:
        figure = self.spent(event.stage)
        self.emit(event.text() + (f" | {figure}" if figure else ""))

    # ------------------------------------------------------------ rendering (overridden)

    def emit(self, text: str) -> None:
        """Show one line."""

    def opened(self, tally: Tally) -> None:
        """An evaluation began."""

    def advanced(self, tally: Tally) -> None:
        """One more of its examples finished."""

    def closed(self, tally: Tally) -> None:
        """It ended (or was stopped)."""

    def close(self) -> None:
        """The command is over."""


class Plain(Reporter):
    """Lines for a pipe or a file: one per event, a few per evaluation."""

    def __init__(self, budget: Budget | None = None, file: TextIO | None = None):
        super().__init__(budget)
        self.file = file

    def emit(self, text: str) -> None:
        print(f"[{clock(time.monotonic() - self.t0)}] {text}", file=self.file or sys.stderr,
              flush=True)

    def advanced(self, tally: Tally) -> None:
        step = max(1, math.ceil(tally.total / PLAIN_STEPS))
        if tally.done < tally.total and tally.done % step == 0:
            self.emit(f"{tally.label}: {tally.done}/{tally.total} examples")

    def closed(self, tally: Tally) -> None:
        self.emit(tally.ending())


class Live(Reporter):
    """rich on a terminal: stage lines above a spinner on the current stage and a live
    bar per running evaluation (gone when the command ends)."""

    def __init__(self, budget: Budget | None = None, console: Console | None = None):
        super().__init__(budget)
        self.bars = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                             TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                             console=console or Console(stderr=True), transient=True,
                             redirect_stdout=False)  # stdout stays the command's own
        self.current = self.bars.add_task("starting", total=None, count="")
        self.bars.start()

    def emit(self, text: str) -> None:
        stamp = clock(time.monotonic() - self.t0)
        self.bars.console.print(f"[dim]{stamp}[/] {escape(text)}", soft_wrap=True, highlight=False)

    def stage(self, event: Event) -> None:
        super().stage(event)
        self.bars.reset(self.current, description=escape(event.text()), total=None)

    def opened(self, tally: Tally) -> None:
        tally.task = self.bars.add_task(escape(tally.label), total=tally.total,
                                        count=f"0/{tally.total}")

    def advanced(self, tally: Tally) -> None:
        self.bars.update(tally.task, completed=tally.done, count=f"{tally.done}/{tally.total}")

    def closed(self, tally: Tally) -> None:
        self.bars.remove_task(tally.task)
        self.emit(tally.ending())

    def close(self) -> None:
        self.bars.stop()


def make_reporter(budget: Budget | None = None, *, quiet: bool = False,
                  console: Console | None = None) -> Reporter:
    """Silent when `quiet`; rich on a terminal; plain lines otherwise."""
    if quiet:
        return Reporter(budget)
    if (console or Console(stderr=True)).is_terminal:
        return Live(budget, console)
    return Plain(budget, console.file if console else None)  # None: sys.stderr as it is then


class _Forward(logging.Handler):
    """The "optimas" loggers' warnings and errors, shown by the reporter as they happen."""

    def __init__(self, reporter: Reporter):
        super().__init__(logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.emit(f"{record.levelname.lower()}: {scrub(record.getMessage())}")


_current: ContextVar[Reporter | None] = ContextVar("optimas_progress", default=None)
_SILENT = Reporter()  # when no command is running


def current() -> Reporter:
    """The reporter of the command running (a silent one outside a command)."""
    return _current.get() or _SILENT


@contextmanager
def reporting(budget: Budget | None = None, *, quiet: bool = False,
              console: Console | None = None) -> Iterator[Reporter]:
    """Make a reporter current for one command (see `make_reporter`); ended on the way out."""
    reporter = make_reporter(budget, quiet=quiet, console=console)
    token = _current.set(reporter)
    handler = _Forward(reporter)
    logger = logging.getLogger("optimas")
    logger.addHandler(handler)
    try:
        yield reporter
    finally:
        logger.removeHandler(handler)
        _current.reset(token)
        reporter.close()


def stage(name: str, *, iteration: int | None = None, of: int | None = None,
          component: str | None = None, detail: Any = "") -> None:
    """Say that the run begins `name` (STAGES), with the budget spent so far."""
    current().stage(Event(name, iteration, of, component, str(detail)))


@contextmanager
def evaluation(label: str, total: int, *, show: bool = True) -> Iterator[Tally]:
    """A bar for an evaluation of `total` examples: `advance()` the tally as each one
    finishes and set its `note` (the score) before it ends. `show=False`, or nothing to
    do: no bar."""
    reporter = current() if show and total else _SILENT
    tally = Tally(reporter, label, total)
    reporter.opened(tally)
    try:
        yield tally
    finally:
        reporter.closed(tally)
