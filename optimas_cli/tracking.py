"""Experiment tracking outside the run directory: `tracking=mlflow`.

With `tracking.kind: mlflow` (off by default; the `mlflow` extra), each run is also an
MLflow run, written through MlflowClient to `tracking.uri` (default: a local `mlruns/`
store in the working directory: mlruns/mlflow.db, SQLite, and mlruns/artifacts/), in the experiment `tracking.experiment` (default: the
run config's name):
- params: the resolved config, flattened to dotted keys (`optimizer.budget_system_runs`);
- metrics, one step per history record (record 0 the initial system): `val` (the accepted
  system's validation mean), `val_candidate`, `accepted`, the paired difference of the
  candidate against the incumbent (`paired_mean`, `paired_low`, `paired_high`), each
  component's local reward held-out accuracy (`lrf_accuracy.<component>`) and the spend
  (`system_runs`, `lm_calls`, `lm_tokens`);
- at the end: the test results (`test_initial`, `test_final`, `test_improvement`, the
  paired interval), and as artifacts `final/system.yaml`, `history.jsonl`, `summary.json`
  and the plots;
- a sweep's jobs (a run directory whose parent holds Hydra's `multirun.yaml`) are child
  runs of one parent run per sweep directory.

`tracking.json` in the run directory keeps the MLflow run id and how many history records
were logged: a killed run resumed with `resume=` continues its MLflow run, and logs the
records the killed process had written but not logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimas_cli import layout
from optimas_cli.errors import ConfigError

if TYPE_CHECKING:
    from optimas_cli.config import Composed
    from optimas_cli.run_dir import RunDir

STATE = "tracking.json"
LOCAL_STORE = "mlruns"  # tracking.uri null: mlruns/mlflow.db and mlruns/artifacts/
PARENT = "mlflow_parent.json"  # in a sweep directory: the parent run's id
_PARAM_CHARS = 6000  # MLflow's limit on a param value
ARTIFACTS = (layout.FINAL_SYSTEM, layout.HISTORY, layout.SUMMARY, layout.VAL_PLOT)


class Tracker:
    """No tracking: every hook does nothing."""

    def record(self, record: dict[str, Any]) -> None:
        """A history record was appended."""

    def finish(self, status: str) -> None:
        """The command ended: FINISHED, FAILED or KILLED."""


_NONE = Tracker()
_current: ContextVar[Tracker | None] = ContextVar("optimas_tracker", default=None)


def current() -> Tracker:
    """The tracker of the command running (one that does nothing outside a command)."""
    return _current.get() or _NONE


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Dotted keys -> values as text (lists as JSON), for MLflow params."""
    if isinstance(data, dict) and data:
        out: dict[str, str] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    text = data if isinstance(data, str) else json.dumps(data, sort_keys=True, default=str)
    return {prefix: text[:_PARAM_CHARS]}


def record_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The metrics of one history record (see the module doc)."""
    out: dict[str, float] = {}
    if record.get("kind") == "initial":
        out["val"] = record["val"]["mean"]
    else:
        accepted = bool(record.get("accepted"))
        out["val"] = record["val_after"] if accepted else record["val_before"]
        out["val_candidate"] = record["val_after"]
        out["accepted"] = float(accepted)
        paired = (record.get("decision") or {}).get("paired") or {}
        for k in ("mean", "low", "high"):
            if paired.get(k) is not None:
                out[f"paired_{k}"] = paired[k]
        for step in record.get("steps") or [record]:
            acc = (step.get("lrf") or {}).get("pairwise_accuracy")
            if acc is not None and step.get("component"):
                out[f"lrf_accuracy.{step['component']}"] = acc
    for k in ("system_runs", "lm_calls", "lm_tokens"):
        if record.get(k) is not None:
            out[k] = record[k]
    return {k: float(v) for k, v in out.items()}


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The test results of summary.json."""
    out = {f"test_{which}": t["mean"] for which, t in summary.get("test", {}).items()}
    if "test_improvement" in summary:
        out["test_improvement"] = summary["test_improvement"]
    for k in ("mean", "low", "high"):
        if (summary.get("test_paired") or {}).get(k) is not None:
            out[f"test_paired_{k}"] = summary["test_paired"][k]
    return {k: float(v) for k, v in out.items()}


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ConfigError("tracking=mlflow needs the mlflow package: pip install -e "
                          "'.[mlflow]' (or tracking=none)") from None
    return mlflow


def open_experiment(uri: str | None, name: str) -> tuple[Any, str]:
    """(an MlflowClient of `uri`, the id of experiment `name`, made if new). No `uri`: the
    local store `mlruns/` in the working directory (an SQLite file, MLflow's file store
    being retired, with the artifacts beside it), opened under a file lock so that the
    jobs of a parallel sweep do not race to create it."""
    mlflow = _mlflow()
    if uri is not None:
        client = mlflow.MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(name)
        return client, found.experiment_id if found else client.create_experiment(name)
    from filelock import FileLock

    store = (Path.cwd() / LOCAL_STORE).resolve()
    store.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store / ".lock")):
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
        found = client.get_experiment_by_name(name)
        experiment = found.experiment_id if found else client.create_experiment(
            name, artifact_location=(store / "artifacts").as_uri())
    return client, experiment


class MlflowTracker(Tracker):
    """One run directory's MLflow run, through MlflowClient (no global active run)."""

    def __init__(self, composed: Composed, run_dir: RunDir) -> None:
        cfg = composed.run.tracking
        self.run_dir = run_dir
        self.client, self.experiment = open_experiment(cfg.uri, cfg.experiment or composed.run.name)
        self.uri = self.client.tracking_uri
        state = self._state()
        if state.get("run_id"):  # a resumed run continues its MLflow run
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {"optimas.run_dir": str(run_dir.path), "optimas.command_config": str(composed.path)}
            parent = self._parent()
            if parent:
                tags["mlflow.parentRunId"] = parent
            run = self.client.create_run(self.experiment, run_name=run_dir.path.name, tags=tags)
            self.run_id = run.info.run_id
            self._save({"run_id": self.run_id, "logged": 0, "uri": self.uri})
            self._log_params(composed)
        self.sync()

    def _state(self) -> dict[str, Any]:
        path = self.run_dir.path / STATE
        return json.loads(path.read_text()) if path.exists() else {}

    def _save(self, state: dict[str, Any]) -> None:
        self.run_dir.write_json(STATE, state)

    def _parent(self) -> str | None:
        """A sweep job's parent run (made once per sweep directory, under a file lock)."""
        sweep = self.run_dir.path.parent
        if not (sweep / "multirun.yaml").exists():
            return None
        from filelock import FileLock

        with FileLock(str(sweep / (PARENT + ".lock"))):
            path = sweep / PARENT
            if path.exists():
                return json.loads(path.read_text())["run_id"]
            run = self.client.create_run(self.experiment, run_name=sweep.name,
                                         tags={"optimas.sweep_dir": str(sweep)})
            path.write_text(json.dumps({"run_id": run.info.run_id}))
            return run.info.run_id

    def _log_params(self, composed: Composed) -> None:
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flatten(composed.run.model_dump(mode="json")).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def sync(self) -> None:
        """Log the history records not logged yet (all of them after a kill)."""
        from mlflow.entities import Metric

        history = self.run_dir.read_jsonl(layout.HISTORY) \
            if (self.run_dir.path / layout.HISTORY).exists() else []
        state = self._state()
        new = history[state.get("logged", 0):]
        if not new:
            return
        metrics = [Metric(k, v, 0, step=int(r["iteration"]))
                   for r in new for k, v in record_metrics(r).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])
        self._save(state | {"logged": len(history)})

    def record(self, record: dict[str, Any]) -> None:
        self.sync()

    def finish(self, status: str) -> None:
        from mlflow.entities import Metric

        self.sync()
        path = self.run_dir.path / layout.SUMMARY
        if path.exists():
            summary = json.loads(path.read_text())
            metrics = [Metric(k, v, 0, step=0) for k, v in summary_metrics(summary).items()]
            if metrics:
                self.client.log_batch(self.run_id, metrics=metrics)
        for name in ARTIFACTS:
            file = self.run_dir.path / name
            if file.exists():
                parent = str(Path(name).parent)
                self.client.log_artifact(self.run_id, str(file), None if parent == "." else parent)
        self.client.set_terminated(self.run_id, status=status)
        parent = self._state_parent()
        if parent:
            self.client.set_terminated(parent, status="FINISHED")

    def _state_parent(self) -> str | None:
        path = self.run_dir.path.parent / PARENT
        return json.loads(path.read_text())["run_id"] if path.exists() else None


@contextmanager
def tracking(composed: Composed, run_dir: RunDir) -> Iterator[Tracker]:
    """The command's tracker (per `tracking.kind`), current inside the block; the MLflow
    run ends FINISHED, or FAILED / KILLED (a stop, an interrupt) as the command did."""
    from optimas_cli.lm.base import RunStopped

    if composed.run.tracking.kind == "none":
        yield current()
        return
    tracker = MlflowTracker(composed, run_dir)
    token = _current.set(tracker)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except (RunStopped, KeyboardInterrupt):
        status = "KILLED"
        raise
    finally:
        _current.reset(token)
        tracker.finish(status)
