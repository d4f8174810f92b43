"""Where everything lies in a run directory: the one place that spells artifact paths.

    config.yaml          the composed config, secrets redacted (a run directory's identity)
    overrides.txt        the command-line overrides, one a line
    run.log              every process's log lines
    history.jsonl        one HistoryRecord per step (optimas_cli.history)
    spent.jsonl          one line per process: what it spent (optimas_cli.spend)
    spent.live/<pid>.json  a live process's checkpoint of the same
    attempts.jsonl       start/end of each process (optimas_cli.attempts)
    failures.jsonl       every failed example (optimas_cli.failures)
    metrics.json         `optimas evaluate CONFIG`: the evaluation's summary
    predictions.jsonl    `optimas evaluate CONFIG`: one line per example (trace + score)
    summary.json         the final stage: test of initial and final, spend, contributions
    final/system.yaml    the final state, loadable with system_state=
    test/<which>.json    the final stage's test of the initial and the final system
    test/<which>_predictions.jsonl  their examples
    val_score.png        accepted validation score against system runs spent
    rollouts/iter_NNN/<component>[.roundK].jsonl   the Optimas method's rollouts
    lrf/iter_NNN[-<component>]/  its local reward models (metrics.json inside)
    weights/<component>/iter_NNN/  its trained LoRA adapters
    <origin>_found.json  a DSPy baseline's compiled programs, before they are evaluated
    textgrad/            the TextGrad baseline: its logger, each step, the counts
    DONE | FAILED | STOPPED  how the last process ended
    .reserve             64 KiB a working process holds, freed to write its marker on a full
                         disk (optimas_cli.run_dir); gone when the process ends
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.yaml"
OVERRIDES = "overrides.txt"
LOG = "run.log"
HISTORY = "history.jsonl"
SPENT = "spent.jsonl"
SPENT_LIVE = "spent.live"
ATTEMPTS = "attempts.jsonl"
FAILURES = "failures.jsonl"
METRICS = "metrics.json"
PREDICTIONS = "predictions.jsonl"
SUMMARY = "summary.json"
FINAL_SYSTEM = "final/system.yaml"
VAL_PLOT = "val_score.png"
ROLLOUTS = "rollouts"
LRF = "lrf"
WEIGHTS = "weights"
TEXTGRAD_LOG = "textgrad/textgrad.jsonl"
TEXTGRAD_STEPS = "textgrad/steps.jsonl"
TEXTGRAD_STATS = "textgrad/stats.json"
DONE, FAILED, STOPPED = "DONE", "FAILED", "STOPPED"
MARKERS = (DONE, FAILED, STOPPED)
RESERVE = ".reserve"


def final_test(which: str) -> str:
    """The final stage's test summary of the "initial" or the "final" system."""
    return f"test/{which}.json"


def final_test_predictions(which: str) -> str:
    """Its per-example lines."""
    return f"test/{which}_predictions.jsonl"


def dspy_found(origin: str) -> str:
    """The programs a DSPy baseline's compile found (methods/dspy/common.py save_found)."""
    return f"{origin}_found.json"


ITER_PREFIX = "iter_"


def iter_dir(i: int) -> str:
    return f"{ITER_PREFIX}{i:03d}"


def iter_dirs(parent: Path) -> list[tuple[int, Path]]:
    """(iteration, directory) of the iter_NNN directories in `parent` (e.g. the run
    directory's rollouts/), in iteration order."""
    found = [(int(d.name.removeprefix(ITER_PREFIX)), d) for d in parent.glob(f"{ITER_PREFIX}*")
             if d.is_dir() and d.name.removeprefix(ITER_PREFIX).isdigit()]
    return sorted(found)


def rollouts(iteration: int, component: str, round_: int = 0) -> str:
    """One collection round's rollout file."""
    suffix = "" if round_ == 0 else f".round{round_}"
    return f"{ROLLOUTS}/{iter_dir(iteration)}/{component}{suffix}.jsonl"


def lrf(iteration: int, component: str | None = None) -> str:
    """The local reward model an iteration saved (one per component when it fitted several)."""
    return f"{LRF}/{iter_dir(iteration)}" + (f"-{component}" if component else "")


def weights(component: str, iteration: int) -> str:
    """The LoRA adapters an iteration trained for `component`."""
    return f"{WEIGHTS}/{component}/{iter_dir(iteration)}"
