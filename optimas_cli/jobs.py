"""One job = one composed config run through one stage in its own run directory.

Used by a plain command and by every job of a Hydra multirun alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from optimas_cli import spend
from optimas_cli.config import Composed, scrub
from optimas_cli.errors import ConfigError
from optimas_cli.lm.base import RunStopped
from optimas_cli.methods import run_method
from optimas_cli.run_dir import RunDir
from optimas_cli.runtime import Runtime, build_runtime
from optimas_cli.stages.evaluate import run_evaluate
from optimas_cli.stages.final import stage_final

console = Console(stderr=True)
log = logging.getLogger("optimas")


def stage_evaluate(rt: Runtime, run_dir: RunDir, show_progress: bool) -> dict[str, Any]:
    return run_evaluate(rt, run_dir, show_progress=show_progress)


def method_stages(*stages: str) -> Callable[..., dict[str, Any]]:
    """The configured method's stages (all of them for `run`), then the final test stage."""
    def run(rt: Runtime, run_dir: RunDir, show_progress: bool) -> dict[str, Any]:
        final = run_method(rt, run_dir, rt.state, tuple(s for s in stages if s != "evaluate"))
        if "evaluate" in stages:
            return stage_final(rt, run_dir, rt.state, final)
        return {"stages": list(stages), "history": len(run_dir.read_jsonl("history.jsonl"))}

    return run


STAGES: dict[str, Callable[..., dict[str, Any]]] = {
    "evaluate": stage_evaluate,  # a config on its eval split
    "run": method_stages("collect", "fit", "update", "evaluate"),
    "collect": method_stages("collect"),
    "fit": method_stages("fit"),
    "update": method_stages("update"),
    "final": method_stages("evaluate"),  # `optimas evaluate RUN_DIR`: the test evaluation
}


def open_run_dir(composed: Composed) -> RunDir:
    """The run directory: the one to resume, or a new one."""
    if composed.run.resume:
        rd = RunDir(Path(composed.run.resume).resolve())
        if not (rd.path / "config.yaml").exists():
            raise ConfigError(f"resume: {rd.path} is not a run directory (no config.yaml)")
        return rd
    return RunDir.create(composed)


def execute(command: str, composed: Composed, *, show_progress: bool = True) -> tuple[Path, dict]:
    """Open the run directory, run the stage, and always say where the run directory is.

    A resumed run, or a stage command on an existing run directory, counts on from what
    earlier processes spent (optimas_cli.spend: a line per process, a SIGKILL-ed one's
    from its last checkpoint).
    """
    run_dir = open_run_dir(composed)
    summary: dict[str, Any] = {}
    try:
        with run_dir.guard():
            log.info("optimas %s %s %s", command, composed.path, " ".join(composed.overrides))
            rt = build_runtime(composed)
            rt.offset = spend.spent_before(run_dir)
            rt.system.runs = rt.offset["system_runs"]
            with spend.recording(run_dir, command, rt.offset, rt.spent):
                summary = STAGES[command](rt, run_dir, show_progress)
    except RunStopped as e:
        console.print(f"[yellow]stopped:[/] {escape(scrub(str(e)))} (artifacts saved; "
                      f"resume={escape(str(run_dir.path))} goes on from them)", soft_wrap=True)
        raise
    finally:
        console.print(f"run directory: {escape(str(run_dir.path))}", soft_wrap=True)
    return run_dir.path, summary
