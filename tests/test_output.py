"""What a person (or a pipe) sees: `optimas show` and the end of `optimas run` render a run
for reading, `--json` gives the raw file, a FAILED run shows its error first, output that is
not a terminal keeps every row whole, and a command that fails before any work leaves no
run directory behind."""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from typer.testing import CliRunner

from optimas_cli.cli import app

runner = CliRunner()
LONG = "a_component_with_a_name_longer_than_a_table_cell"


def _config(tmp_path, **changes):
    """tests/linear.yaml as a user's own config outside configs/ (no defaults list)."""
    system = {
        "name": "own", "inputs": ["x"], "final_output": "out",
        "loader": "fns:load_linear", "metric": "fns:linear_metric",
        "components": {
            LONG: {"kind": "python", "description": "x times a factor", "inputs": ["x"],
                   "outputs": ["y"], "params": {"function": "fns:scale"},
                   "variables": {"factor": {"type": "hyperparameter", "value": 1,
                                            "choices": [1, 2]}}},
            "finish": {"kind": "python", "description": "adds one", "inputs": ["y"],
                       "outputs": ["out"], "params": {"function": "fns:finish"}},
        },
    }
    system.update(changes)
    config = {"name": "own", "run_root": str(tmp_path / "runs"),
              "lm": {"model": "local/smollm2-135m-instruct"}, "system": system,
              "data": {"train_size": 5, "val_size": 10, "test_size": 10}}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _run_dirs(tmp_path):
    root = tmp_path / "runs" / "own"
    return sorted(root.iterdir()) if root.exists() else []


@pytest.fixture
def no_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # a pipe: rich would otherwise cut at 80


def test_run_ends_with_a_readable_summary_and_show_renders_the_same(tmp_path, no_columns):
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "optimizer=search",
                                 "optimizer.budget_system_runs=30", "-q"])
    assert result.exit_code == 0, result.output
    (run,) = _run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    p = summary["test_paired"]
    for out in (result.output, runner.invoke(app, ["show", str(run)]).output):
        lines = out.splitlines()
        assert '"test_paired"' not in out and "{" not in out  # no raw JSON
        assert any(x.startswith("method: search") for x in lines)
        test = next(x for x in lines if x.startswith("test "))
        assert (f"{summary['test']['initial']['mean']:.3f} → "
                f"{summary['test']['final']['mean']:.3f}") in test
        assert (f"{p['mean']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}], paired 95% interval "
                f"over {p['n']} questions") in test
        assert any(x.startswith("validation ") and "→" in x for x in lines)
        assert any(x.startswith("spend ") and "system runs" in x for x in lines)
        # the iterations table: its row whole on one line, however long, in a pipe
        row = next(x for x in lines if f"{LONG}.factor: 1 → 2" in x)
        assert "accepted" in row and len(row) > 80
    raw = runner.invoke(app, ["show", str(run), "--json"])
    assert raw.exit_code == 0 and json.loads(raw.output) == summary


def test_show_json_of_an_evaluation_is_its_metrics_and_of_a_non_run_an_error(tmp_path):
    result = runner.invoke(app, ["evaluate", str(_config(tmp_path)), "-q"])
    assert result.exit_code == 0, result.output
    (run,) = _run_dirs(tmp_path)
    raw = runner.invoke(app, ["show", str(run), "--json"])
    assert json.loads(raw.output) == json.loads((run / "metrics.json").read_text())
    shown = runner.invoke(app, ["show", str(run)])
    assert "status: DONE" in shown.output and "test: score" in shown.output
    bad = runner.invoke(app, ["show", str(tmp_path), "--json"])
    assert bad.exit_code == 2 and "is not a run directory" in bad.output


LOADERS = '''
def broken(cfg):
    raise RuntimeError("the bucket is gone")


def missing(cfg):
    raise FileNotFoundError("data file not found (tried /nowhere/rows.jsonl)")
'''


@pytest.fixture
def loaders(tmp_path, monkeypatch):
    (tmp_path / "output_loaders.py").write_text(LOADERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "output_loaders", raising=False)


def test_show_on_a_failed_run_puts_its_error_first(tmp_path, loaders):
    result = runner.invoke(app, ["evaluate", str(_config(tmp_path, loader="output_loaders:broken"))])
    assert result.exit_code == 1 and "the bucket is gone" in result.output
    (run,) = _run_dirs(tmp_path)  # not a config problem: the traceback is kept
    assert "Traceback" in (run / "FAILED").read_text()
    lines = runner.invoke(app, ["show", str(run)]).output.splitlines()
    assert "status: FAILED" in lines[0]
    assert lines[1] == "error: RuntimeError: the bucket is gone"
    assert lines[2].strip() == f"(in full: {run / 'FAILED'})"


@pytest.mark.parametrize("changes,overrides,says", [
    ({"loader": "output_loaders:missing"}, [],
     "error: data file not found (tried /nowhere/rows.jsonl)"),
    ({}, ["data.test_size=100"],
     "error: data: train_size+val_size+test_size = 115 but the dataset has only 40 examples"),
])
def test_a_command_that_fails_before_any_work_leaves_no_run_directory(tmp_path, loaders,
                                                                      changes, overrides, says):
    result = runner.invoke(app, ["evaluate", str(_config(tmp_path, **changes)), *overrides])
    assert result.exit_code == 2
    # one "data" prefix: the loader's message already begins with the word
    assert says in " ".join(result.output.split()) and "data: data" not in result.output
    assert "run directory:" not in result.output and _run_dirs(tmp_path) == []
