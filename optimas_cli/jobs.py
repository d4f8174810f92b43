"""One job = one composed config run through one stage in its own run directory.

Used by a plain command and by every job of a Hydra multirun alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from optimas_cli.config import Composed
from optimas_cli.lm.base import BudgetExceeded
from optimas_cli.run_dir import RunDir
from optimas_cli.runtime import build_runtime

console = Console(stderr=True)
log = logging.getLogger("optimas")


def stage_evaluate(rt, run_dir: RunDir, show_progress: bool) -> dict[str, Any]:
    from optimas_cli.stages.evaluate import run_evaluate

    return run_evaluate(rt, run_dir, show_progress=show_progress)


def stage_run(rt, run_dir: RunDir, show_progress: bool) -> dict[str, Any]:
    from optimas_cli.stages import loop

    return loop.run_loop(rt, run_dir, show_progress=show_progress)


STAGES: dict[str, Callable[..., dict[str, Any]]] = {
    "evaluate": stage_evaluate,
    "run": stage_run,
}


def execute(command: str, composed: Composed, *, show_progress: bool = True) -> tuple[Path, dict]:
    """Create the run directory, run the stage, and always say where the run directory is."""
    run_dir = RunDir.create(composed)
    summary: dict[str, Any] = {}
    try:
        with run_dir.guard():
            log.info("optimas %s %s %s", command, composed.path, " ".join(composed.overrides))
            rt = build_runtime(composed)
            summary = STAGES[command](rt, run_dir, show_progress)
    except BudgetExceeded as e:
        console.print(f"[yellow]stopped:[/] {e} (artifacts saved)")
        raise
    finally:
        console.print(f"run directory: {run_dir.path}")
    return run_dir.path, summary
