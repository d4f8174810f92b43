"""One job = one composed config run through one command in its own run directory.

Used by a plain command and by every job of a Hydra multirun alike. `optimas evaluate
CONFIG` evaluates a state on a split; every other command runs the configured method
(optimas_cli.methods) if it supports the command, and `run` (or `evaluate RUN_DIR`,
here "final") then tests the initial and the final system.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from optimas_cli import layout, progress, spend, tracking
from optimas_cli.config import Composed, scrub
from optimas_cli.errors import ConfigError
from optimas_cli.lm.base import RunStopped
from optimas_cli.methods import method_class, run_method
from optimas_cli.methods.base import Method
from optimas_cli.run_dir import RunDir
from optimas_cli.runtime import Runtime, build_runtime
from optimas_cli.stages.evaluate import run_evaluate
from optimas_cli.stages.final import stage_final

console = Console(stderr=True)
log = logging.getLogger("optimas")

# the method's stages each command runs; "final" is `optimas evaluate RUN_DIR`
STAGES: dict[str, tuple[str, ...]] = {
    "run": ("collect", "fit", "update"),
    "collect": ("collect",),
    "fit": ("fit",),
    "update": ("update",),
    "final": (),
}


def check_command(command: str, composed: Composed) -> type[Method] | None:
    """The method class if `command` runs one; ConfigError if the method does not support it."""
    if command == "evaluate":
        return None
    cls = method_class(composed.run.optimizer.name)
    if command not in (*cls.commands, "final"):
        raise ConfigError(f"optimizer={composed.run.optimizer.name}: the '{cls.name}' method "
                          f"supports {', '.join((*cls.commands, 'evaluate'))}; not {command}")
    return cls


def run_command(command: str, rt: Runtime, run_dir: RunDir, show_progress: bool) -> dict[str, Any]:
    """Evaluate a config, or run the method's stages (then the final test for run/final)."""
    if command == "evaluate":
        return run_evaluate(rt, run_dir, show_progress=show_progress)
    final = run_method(rt, run_dir, STAGES[command])
    if command in ("run", "final"):
        return stage_final(rt, run_dir, rt.state, final)
    return {"stages": list(STAGES[command]), "history": len(run_dir.read_jsonl(layout.HISTORY))}


def open_run_dir(composed: Composed) -> RunDir:
    """The run directory: the one to resume, or a new one."""
    if composed.run.resume:
        rd = RunDir(Path(composed.run.resume).resolve())
        if not (rd.path / layout.CONFIG).exists():
            raise ConfigError(f"resume: {rd.path} is not a run directory (no {layout.CONFIG})")
        return rd
    return RunDir.create(composed)


def _runtime(composed: Composed) -> tuple[Runtime | None, Exception | None]:
    """The runtime, or the error that building it raised; a ConfigError propagates."""
    try:
        return build_runtime(composed), None
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - raised again inside the run directory's guard
        return None, e


def announce_sandboxes(rt: Runtime) -> None:
    """Say once, at the top, how each component that executes code is contained."""
    for name, component in rt.system.components.items():
        if (box := getattr(component, "sandbox", None)) is not None:
            line = f"sandbox ({name}): {box.describe()}"
            log.info(line)
            console.print(escape(line), soft_wrap=True, highlight=False)


def execute(command: str, composed: Composed, *, show_progress: bool = True) -> tuple[Path, dict]:
    """Open the run directory, run the command, and always say where the run directory is.

    A command the method does not support, or whose runtime fails on a ConfigError (a bad
    data path, a loader's error, a missing API key), fails before a run directory is made:
    nothing was done. Any other error building the runtime is recorded in a run directory's
    FAILED, with its traceback. A resumed run, or a stage command on an existing run
    directory, counts on from what earlier processes spent (optimas_cli.spend: a line per
    process, a SIGKILL-ed one's from its last checkpoint). While it works it shows its
    progress on stderr (optimas_cli.progress), unless not `show_progress` (-q).
    """
    check_command(command, composed)
    resumed = open_run_dir(composed) if composed.run.resume else None  # checked before work
    rt, error = _runtime(composed)
    run_dir = resumed or open_run_dir(composed)
    summary: dict[str, Any] = {}
    try:
        with run_dir.guard():
            log.info("optimas %s %s %s", command, composed.path, " ".join(composed.overrides))
            if error is not None:
                raise error
            announce_sandboxes(rt)
            rt.budget.resume(spend.spent_before(run_dir))
            with spend.recording(run_dir, command, rt.budget.offset, rt.budget.spent), \
                    progress.reporting(None if command == "evaluate" else rt.budget,
                                       quiet=not show_progress), \
                    tracking.tracking(composed, run_dir):
                summary = run_command(command, rt, run_dir, show_progress)
    except RunStopped as e:
        console.print(f"[yellow]stopped:[/] {escape(scrub(str(e)))} (artifacts saved; "
                      f"resume={escape(str(run_dir.path))} goes on from them)", soft_wrap=True)
        raise
    finally:
        console.print(f"run directory: {escape(str(run_dir.path))}", soft_wrap=True)
    return run_dir.path, summary
