"""`tracking=mlflow`: each run is an MLflow run, read back with mlflow.search_runs: the
resolved config as params, one metric step per history record, the test results, the run's
files as artifacts; a sweep's jobs are child runs of one parent; a killed and resumed run
continues its MLflow run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optimas_cli.config import load
from optimas_cli.jobs import execute
from optimas_cli.tracking import flatten, record_metrics

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed: pip install -e '.[mlflow]'")
HERE = Path(__file__).parent
LINEAR = HERE / "linear.yaml"


def runs(uri: str, experiment: str = "linear"):
    """The experiment's runs as dicts, oldest first."""
    mlflow.set_tracking_uri(uri)
    df = mlflow.search_runs(experiment_names=[experiment], order_by=["start_time ASC"])
    return df.to_dict("records")


def optimas(cwd: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    return subprocess.Popen([str(Path(sys.executable).with_name("optimas")), *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_a_run_is_read_back_with_its_config_metrics_tests_and_files(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    composed = load(LINEAR, [f"run_root={tmp_path}", "tracking=mlflow", f"tracking.uri={uri}",
                             "optimizer.num_iterations=2"])
    run_dir, summary = execute("run", composed, show_progress=False)
    (row,) = runs(uri)
    assert row["status"] == "FINISHED" and row["tags.optimas.run_dir"] == str(run_dir)
    assert row["params.optimizer.name"] == "optimas" and row["params.data.val_size"] == "10"
    assert row["params.system.components.scale.variables.factor.choices"] == "[1, 2, 3]"
    assert row["metrics.test_final"] == summary["test"]["final"]["mean"]
    assert row["metrics.test_initial"] == summary["test"]["initial"]["mean"]
    client = mlflow.MlflowClient(uri)
    history = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    val = sorted((m.step, m.value) for m in client.get_metric_history(row["run_id"], "val"))
    assert [s for s, _ in val] == [h["iteration"] for h in history]
    assert val[-1][1] == summary["val"]["final"]
    spent = client.get_metric_history(row["run_id"], "system_runs")
    assert max(m.value for m in spent) == history[-1]["system_runs"]
    files = {a.path for a in client.list_artifacts(row["run_id"])}
    assert {"history.jsonl", "summary.json", "val_score.png", "final"} <= files
    assert [a.path for a in client.list_artifacts(row["run_id"], "final")] == ["final/system.yaml"]


@pytest.mark.slow
def test_a_sweep_is_one_parent_run_with_a_child_per_job_in_the_local_store(tmp_path):
    proc = optimas(tmp_path, "run", str(LINEAR), "-m", "optimizer=none", "seed=0,1",
                   "data.seed=${seed}", f"run_root={tmp_path}", "tracking=mlflow")
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    rows = runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")  # the default: ./mlruns
    parents = [r for r in rows if not isinstance(r.get("tags.mlflow.parentRunId"), str)]
    children = [r for r in rows if isinstance(r.get("tags.mlflow.parentRunId"), str)]
    assert len(parents) == 1 and len(children) == 2
    assert {c["tags.mlflow.parentRunId"] for c in children} == {parents[0]["run_id"]}
    assert sorted(c["params.seed"] for c in children) == ["0", "1"]
    assert {r["status"] for r in rows} == {"FINISHED"}
    assert (tmp_path / "mlruns" / "artifacts").is_dir()


@pytest.mark.slow
def test_a_killed_run_resumed_continues_its_mlflow_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["run", str(LINEAR), f"run_dir={tmp_path / 'run'}", "tracking=mlflow",
            f"tracking.uri={uri}", "optimizer.num_iterations=2"]
    proc = optimas(tmp_path, *args)
    history = tmp_path / "run" / "history.jsonl"
    deadline = time.monotonic() + 300
    while not (history.exists() and history.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "no history record"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (before,) = runs(uri)
    assert before["status"] == "RUNNING"  # killed: nobody ended it
    proc = optimas(tmp_path, "run", str(tmp_path / "run"))  # a run directory resumes
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    (after,) = runs(uri)  # the same run, not another
    assert after["run_id"] == before["run_id"] and after["status"] == "FINISHED"
    records = [json.loads(x) for x in history.read_text().splitlines()]
    steps = [m.step for m in mlflow.MlflowClient(uri).get_metric_history(after["run_id"], "val")]
    assert sorted(set(steps)) == [r["iteration"] for r in records]  # every record (at least once)
    assert after["metrics.test_final"] is not None


def test_metrics_of_a_record_and_params_of_a_config():
    record = {"iteration": 3, "kind": "iteration", "val_before": 0.2, "val_after": 0.5,
              "accepted": False, "decision": {"paired": {"mean": 0.3, "low": -0.1, "high": 0.6}},
              "steps": [{"component": "a", "lrf": {"pairwise_accuracy": 0.75}},
                        {"component": "b", "lrf": None}], "system_runs": 40}
    assert record_metrics(record) == {"val": 0.2, "val_candidate": 0.5, "accepted": 0.0,
                                      "paired_mean": 0.3, "paired_low": -0.1, "paired_high": 0.6,
                                      "lrf_accuracy.a": 0.75, "system_runs": 40.0}
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x" * 7000}) == {
        "a.b": "1", "a.c": "[1, 2]", "d": "x" * 6000}
