"""What a run shows on stderr while it works (optimas_cli.progress), fed a fake sequence of
events: plain lines in a pipe, rich on a terminal, nothing with -q or outside a command."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from optimas_cli import progress
from optimas_cli.budget import Budget

STAMP = re.compile(r"^\[\d+:\d\d:\d\d\] ", re.M)


def lines(text: str) -> list[str]:
    """The lines of a pipe's output, each checked for its time stamp, without it."""
    out = text.splitlines()
    assert all(STAMP.match(line) for line in out), text
    return [STAMP.sub("", line) for line in out]


@contextmanager
def current(reporter: progress.Reporter) -> Iterator[None]:
    """`reporter` as the command's, as jobs.execute makes it through `progress.reporting`."""
    token = progress._current.set(reporter)
    try:
        yield
    finally:
        progress._current.reset(token)


def spend(budget: Budget, runs: int) -> None:
    for _ in range(runs):
        budget.record_system_run()


def a_run(budget: Budget) -> None:
    """The events of a small Optimas run, as the stages say them."""
    progress.stage("initial validation")
    with progress.evaluation("val initial", 3) as bar:
        for _ in range(3):
            spend(budget, 1)
            bar.advance()
        bar.note = "score 0.333, 0 failed"
    progress.stage("collect", iteration=1, of=2, component="answer_generator",
                   detail="not collected yet")
    spend(budget, 4)
    progress.stage("fit", iteration=1, of=2, component="answer_generator")
    progress.stage("test", detail="initial system")
    spend(budget, 3)
    progress.stage("test", detail="final system")


def test_a_pipe_gets_one_plain_line_per_event_and_the_budget_spent_against_the_total():
    out = io.StringIO()
    budget = Budget(limit=40)
    with current(progress.Plain(budget, out)):
        a_run(budget)
    got = lines(out.getvalue())
    assert got[:4] == ["initial validation | 0/40 system runs",
                       "val initial: 1/3 examples", "val initial: 2/3 examples"] + got[3:4]
    assert re.fullmatch(r"val initial: 3/3 examples in \d+\.\d s, score 0\.333, 0 failed", got[3])
    assert got[4:] == [
        "iteration 1/2 | collect | answer_generator | not collected yet | 3/40 system runs",
        "iteration 1/2 | fit | answer_generator | 7/40 system runs",
        # the budget caps the optimization: the test's runs are counted apart from it
        "test | initial system | 7/40 system runs for the optimization, 0 for the test",
        "test | final system | 7/40 system runs for the optimization, 3 for the test"]


def test_a_pipe_gets_an_evaluation_every_tenth_and_at_its_end():
    out = io.StringIO()
    with current(progress.Plain(None, out)), progress.evaluation("test", 95) as bar:
        for _ in range(95):
            bar.advance()
    got = lines(out.getvalue())
    assert got[:-1] == [f"test: {n}/95 examples" for n in range(10, 95, 10)]
    assert got[-1].startswith("test: 95/95 examples in ")


def test_no_budget_no_limit_and_a_stopped_evaluation():
    out = io.StringIO()
    budget = Budget(limit=None)
    with current(progress.Plain(budget, out)):
        progress.stage("validate", iteration=3, component="retriever")
        progress.stage("evaluate", detail="5 test examples")
        with progress.evaluation("val search 3", 4) as bar:
            bar.advance()
    got = lines(out.getvalue())
    assert got[:2] == ["iteration 3 | validate | retriever | 0 system runs",
                       "evaluate | 5 test examples | 0 system runs"]
    assert re.fullmatch(r"val search 3: stopped at 1/4 examples after \d+\.\d s", got[-1])


def test_a_terminal_gets_stage_lines_above_a_live_bar_per_evaluation():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    budget = Budget(limit=40)
    with progress.reporting(budget, console=console) as reporter:
        assert isinstance(reporter, progress.Live)
        progress.stage("initial validation")
        with progress.evaluation("val initial", 3) as bar:
            bar.advance()
            bar.advance()
            (task,) = [t for t in reporter.bars.tasks if t.id == bar.task]
            assert (task.description, task.completed, task.total) == ("val initial", 2, 3)
            reporter.bars.refresh()
            live = out.getvalue()
            assert "val initial" in live and "2/3" in live and "━" in live  # the bar drawn
            bar.advance()
        assert bar.task not in [t.id for t in reporter.bars.tasks]  # gone when it ended
        progress.stage("collect", iteration=1, of=2, component="answer_generator")
        (stage_task,) = reporter.bars.tasks
        assert stage_task.description == "iteration 1/2 | collect | answer_generator"
    text = out.getvalue()
    assert reporter.bars.live.is_started is False
    for expected in ("initial validation | 0/40 system runs", "val initial: 3/3 examples in",
                     "iteration 1/2 | collect | answer_generator | 0/40 system runs"):
        assert expected in text, text
    assert text.index("initial validation") < text.index("val initial: 3/3") \
        < text.index("iteration 1/2 | collect")


def test_reporting_in_a_pipe_writes_stderr_with_the_optimas_warnings_and_quiet_writes_nothing(
        capsys, monkeypatch):
    # a library imported by an earlier test in this worker may have left a root handler on a
    # stream pytest has since closed ("--- Logging error ---" on stderr): keep pytest's only
    monkeypatch.setattr(logging.root, "handlers", [h for h in logging.root.handlers
                                                   if type(h).__module__.startswith("_pytest")])
    budget = Budget(limit=10)
    with progress.reporting(budget):
        progress.stage("initial validation")
        logging.getLogger("optimas.loop").warning("LRF %s does not beat chance", "retriever")
        logging.getLogger("optimas.loop").info("an info line stays in run.log")
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout is the command's own
    assert lines(captured.err) == ["initial validation | 0/10 system runs",
                                   "warning: LRF retriever does not beat chance"]
    # the reporter is gone with the command: its handler too
    logging.getLogger("optimas.loop").warning("after the command")
    progress.stage("initial validation")
    assert "after the command" not in capsys.readouterr().err
    with progress.reporting(budget, quiet=True):
        progress.stage("initial validation")
        with progress.evaluation("val initial", 2) as bar:
            bar.advance()
            bar.advance()
        logging.getLogger("optimas.loop").warning("quiet means quiet")
    assert capsys.readouterr() == ("", "")


def test_an_evaluation_not_shown_says_nothing_even_inside_a_command():
    out = io.StringIO()
    with current(progress.Plain(None, out)), \
            progress.evaluation("textgrad 1 batch", 4, show=False) as bar:
        for _ in range(4):
            bar.advance()
    assert out.getvalue() == ""
