"""`optimas`: parse CONFIG + overrides, compose, hand over to a stage. No logic lives here."""

from __future__ import annotations

import os
import sys

# litellm fetches its cost map at import and retries for seconds offline; use its bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import typer  # noqa: E402
from rich.markup import escape  # noqa: E402

from optimas_cli.console import make_console  # noqa: E402
from optimas_cli.errors import ConfigError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                  help="Optimize compound AI systems with globally aligned local rewards (Optimas).")
console = make_console(stderr=True)

CONFIG = typer.Argument(..., help="A run config YAML, e.g. configs/hotpotqa.yaml")
TARGET = typer.Argument(..., help="A run config YAML, or an existing run directory")
OVERRIDES = typer.Argument(None, help="Hydra overrides: key=value, +key=value, ~key, group=option")
MULTIRUN = typer.Option(False, "--multirun", "-m",
                        help="Sweep: run every combination of a=1,2 b=x,y, each in its own run dir")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress on stderr (stages, budget, bars)")


def _fail(e: Exception, code: int = 2) -> None:
    from optimas_cli.config import scrub  # an error may quote a key a provider was sent

    # soft_wrap: never hard-wrap a message, so the paths and keys in it stay copyable
    console.print(f"[red]error:[/] {escape(scrub(str(e)))}", soft_wrap=True)
    raise typer.Exit(code)


def _target(target: str, overrides: list[str]) -> tuple[str, list[str], bool]:
    """A run directory stands for its own config.yaml, resumed in place."""
    from pathlib import Path

    from optimas_cli.layout import CONFIG

    p = Path(target)
    if p.is_dir():
        if not (p / CONFIG).exists():
            _fail(ConfigError(f"{p} is a directory but not a run directory (no {CONFIG})"))
        return str(p / CONFIG), [*overrides, f"resume={p.resolve()}"], True
    return target, overrides, False


def _dispatch(command: str, target: str, overrides: list[str] | None, multirun: bool, quiet: bool):
    from optimas_cli.failures import EvaluationFailed
    from optimas_cli.jobs import execute
    from optimas_cli.lm.base import RunStopped
    from optimas_cli.methods import load_checked as load
    from optimas_cli.reports import print_summary

    config, overrides, is_run_dir = _target(target, list(overrides or []))
    if is_run_dir and command == "evaluate":
        command = "final"
    try:
        if multirun:
            from optimas_cli.sweep import launch

            sweep = launch(command, config, overrides, show_progress=False)
            console.print(f"sweep directory: {escape(str(sweep))}", soft_wrap=True)
            return
        composed = load(config, overrides)
        path, summary = execute(command, composed, show_progress=not quiet)
    except ConfigError as e:
        _fail(e)
    except RunStopped:
        raise typer.Exit(3) from None
    except EvaluationFailed as e:  # too many failed examples: the one line from FAILED
        _fail(e, code=1)
    except Exception as e:  # noqa: BLE001 - the traceback is in FAILED; say what broke
        _fail(f"{type(e).__name__}: {e}", code=1)
    else:
        print_summary(path, make_console(stderr=True))  # its width: where stderr is now


@app.command()
def run(config: str = CONFIG, overrides: list[str] = OVERRIDES, multirun: bool = MULTIRUN,
        quiet: bool = QUIET):
    """Run the configured method (`optimizer=`, default the Optimas loop), then test initial and final.

    Examples: `optimas run configs/hotpotqa.yaml optimizer.num_iterations=6`;
    resume a killed run: `optimas run configs/hotpotqa.yaml resume=runs/hotpotqa/<stamp>`
    """
    _dispatch("run", config, overrides, multirun, quiet)


@app.command()
def evaluate(target: str = TARGET, overrides: list[str] = OVERRIDES, multirun: bool = MULTIRUN,
             quiet: bool = QUIET):
    """Evaluate a config on its eval split (default: test), or a run directory's initial and final system.

    Examples: `optimas evaluate configs/hotpotqa.yaml data.test_size=20`;
    `optimas evaluate configs/hotpotqa.yaml system_state=runs/hotpotqa/<stamp>/final/system.yaml`;
    `optimas evaluate configs/hotpotqa.yaml --multirun system.components.retriever.variables.k.value=1,5`
    """
    _dispatch("evaluate", target, overrides, multirun, quiet)


def _stage_command(stage: str, doc: str):
    def command(target: str = TARGET, overrides: list[str] = OVERRIDES, quiet: bool = QUIET):
        _dispatch(stage, target, overrides, False, quiet)

    command.__doc__ = doc
    app.command(name=stage)(command)


_stage_command("collect", "Optimas method: collect rollouts for every optimizable component "
               "(its eager start).\n\nExample: `optimas collect runs/hotpotqa/<stamp>`")
_stage_command("fit", "Optimas method: fit the local reward functions on the collected rollouts.")
_stage_command("update", "Run the method's optimization without the test evaluation (Optimas: "
               "its iterations of select, collect, adapt, update, accept or revert).")


@app.command()
def validate(config: str = CONFIG, overrides: list[str] = OVERRIDES):
    """Check a config without running a model, and list every problem: the schemas, the graph,
    every dotted path, the model names against `choices`, and the loader's first example."""
    from optimas_cli.graph import topological_order
    from optimas_cli.methods import load_checked as load

    try:
        composed = load(config, list(overrides or []), read_data=True)
    except ConfigError as e:
        _fail(e)
    except Exception as e:  # noqa: BLE001 - nothing runs here: whatever broke is the config's
        _fail(ConfigError(f"{config}: {type(e).__name__}: {e}".splitlines()[0]))
    order = " -> ".join(topological_order(composed.run.system))
    console.print(f"[green]ok[/] {composed.path}: system '{composed.run.system.name}': {order}")


@app.command()
def show(run_dir: str = typer.Argument(..., help="A run directory"),
         markdown: bool = typer.Option(False, "--markdown",
                                       help="Only the iterations table, as markdown"),
         as_json: bool = typer.Option(False, "--json",
                                      help="summary.json as written (an evaluation: metrics.json)")):
    """Print a run's status (a failed run's error), method, validation and test before -> after
    with the paired interval, spend, and what each iteration did."""
    from optimas_cli.reports import iterations_markdown, print_summary, raw_summary

    try:
        if markdown or as_json:
            typer.echo(iterations_markdown(run_dir) if markdown else raw_summary(run_dir), nl=False)
            return
        print_summary(run_dir, make_console())
    except FileNotFoundError as e:
        _fail(e)


def _register_extensions() -> None:
    from optimas_cli.compare import register
    from optimas_cli.data_files import register as register_data
    from optimas_cli.doctor import register as register_doctor
    from optimas_cli.html_report import register as register_report
    from optimas_cli.options import register as register_options
    from optimas_cli.scaffold import register as register_init

    register(app)
    register_options(app)
    register_data(app)
    register_init(app)
    register_doctor(app)
    register_report(app)


_register_extensions()


def _terminated(signum, frame):
    # A kill (SIGTERM) unwinds like Ctrl-C, so the run directory gets its FAILED marker.
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    # A config's dotted paths (loader, metric, python functions) may name the user's own
    # modules beside it: import them from the working directory, as `python -m` does, but
    # after the installed packages, so that a file there cannot shadow one optimas needs.
    sys.path.append(os.getcwd())
    try:
        app()
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
