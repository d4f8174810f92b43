"""Runs fail loudly, and a user's code that breaks its contract is named: a loader that
returns the wrong type, a metric that returns the wrong type, a row that lacks a system
input, a metric that raises on too many rows (over eval.max_failed_share), a validation of
the starting system where every example failed. Through `optimas` itself (typer's
CliRunner), on a user's own python-component system written in tmp_path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimas_cli import api, data, failures, metrics
from optimas_cli.cli import app
from optimas_cli.components import base

runner = CliRunner()

# the user's module: y = x * factor, out = y + 1, target 2x + 1
USER_CODE = '''
from optimas_cli.api import Dataset, Example


def scale(x, factor):
    return {"y": x * factor}


def finish(y):
    return {"out": y + 1}


def rows():
    return [Example(id=f"x{i}", inputs={"x": i}, target={"out": 2 * i + 1}) for i in range(1, 41)]


def load(cfg):
    return Dataset(examples=rows())


def load_list(cfg):
    return rows()


def load_some_without_x(cfg):
    out = rows()
    for ex in out[::10]:  # x1, x11, x21, x31: their x is under another name
        ex.inputs = {"X": ex.inputs.pop("x")}
    return Dataset(examples=out)


def load_test_marked(cfg):
    out = rows()
    for ex in out[30:]:  # x31..x40: the test split
        ex.meta["split"] = "test"
    return Dataset(examples=out)


def score(example, fields):
    return {"score": float(fields["out"] == example.target["out"])}


def score_float(example, fields):
    return float(fields["out"] == example.target["out"])


def score_raises(example, fields):
    return {"score": 1.0 / (fields["out"] - fields["out"])}


def score_raises_on_thirds(example, fields):
    if example.inputs["x"] % 3 == 0:
        raise ZeroDivisionError("a third")
    return score(example, fields)


def score_raises_on_test(example, fields):
    if example.inputs["x"] > 30:
        raise LookupError("no gold for the test rows")
    return score(example, fields)
'''

CONFIG = """defaults:
  - lm: smollm2
  - optimizer: none
  - reward: minilm
  - _self_
name: userloud
system:
  name: userloud
  inputs: [x]
  final_output: out
  loader: userloud:load
  metric: userloud:score
  components:
    scale:
      kind: python
      description: Multiplies x by a factor.
      inputs: [x]
      outputs: [y]
      params: {function: "userloud:scale"}
      variables:
        factor: {type: hyperparameter, value: 2, choices: [1, 2, 3]}
    finish:
      kind: python
      description: Adds one.
      inputs: [y]
      outputs: [out]
      params: {function: "userloud:finish"}
data: {train_size: 10, val_size: 10, test_size: 10}
eval: {workers: 2}
"""


@pytest.fixture
def user(tmp_path, monkeypatch):
    """The user's system in tmp_path; returns `optimas CMD config overrides...`."""
    (tmp_path / "userloud.py").write_text(USER_CODE)
    (tmp_path / "userloud.yaml").write_text(CONFIG)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "userloud", raising=False)
    monkeypatch.chdir(tmp_path)

    def invoke(command: str, *overrides: str):
        return runner.invoke(app, [command, str(tmp_path / "userloud.yaml"),
                                   f"run_root={tmp_path / 'runs'}", *overrides, "-q"])
    return invoke


def one_run(tmp_path: Path) -> Path:
    (run,) = (tmp_path / "runs" / "userloud").iterdir()
    return run


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def flat(text: str) -> str:
    return " ".join(text.split())


def test_the_api_module_re_exports_the_classes_the_project_uses():
    assert (api.Example, api.Dataset, api.BaseComponent, api.Metric, api.Loader) == (
        data.Example, data.Dataset, base.BaseComponent, metrics.Metric, data.Loader)
    for name in api.__all__:
        assert getattr(api, name).__doc__ or name == "Loader", name


def test_a_loader_returning_a_list_fails_in_one_line_naming_it(user, tmp_path):
    result = user("evaluate", "system.loader=userloud:load_list")
    assert result.exit_code == 2, result.output
    assert "error: system.loader userloud:load_list returned list; it must return " \
           "optimas_cli.api.Dataset (Dataset(examples=[Example(...)]))" in flat(result.output)
    assert "Traceback" not in result.output and "AttributeError" not in result.output


def test_a_metric_returning_a_float_fails_each_example_naming_it(user, tmp_path):
    result = user("evaluate", "system.metric=userloud:score_float", "eval.max_failed_share=1")
    assert result.exit_code == 0, result.output
    run = one_run(tmp_path)
    why = ("metric: userloud:score_float returned float; it must return a dict with a float "
           "'score'")
    preds = read_jsonl(run / "predictions.jsonl")
    assert len(preds) == 10 and all(p["error"] == why and p["score"] == 0.0 for p in preds)
    recorded = read_jsonl(run / failures.FILE)
    assert {r["example_id"] for r in recorded} == {p["id"] for p in preds}
    assert all(r["component"] == "metric" and r["error"] == why for r in recorded)


def test_a_row_that_lacks_a_system_input_is_its_own_recorded_failure(user, tmp_path):
    result = user("evaluate", "system.loader=userloud:load_some_without_x", "data.test_size=40",
                  "data.train_size=0", "data.val_size=0")
    assert result.exit_code == 0, result.output  # 4 of 40 failed: the others were scored
    run = one_run(tmp_path)
    preds = {p["id"]: p for p in read_jsonl(run / "predictions.jsonl")}
    bad = {"x1", "x11", "x21", "x31"}
    assert len(preds) == 40 and {i for i, p in preds.items() if p["error"]} == bad
    assert all(p["score"] == 1.0 for i, p in preds.items() if i not in bad)
    recorded = read_jsonl(run / failures.FILE)
    assert {r["example_id"] for r in recorded} == bad
    assert all("lacks system input(s) ['x']" in r["error"] and "it has ['X']" in r["error"]
               for r in recorded)


def test_a_metric_raising_on_every_row_fails_evaluate_naming_the_error_and_count(user,
                                                                               tmp_path):
    result = user("evaluate", "system.metric=userloud:score_raises")
    assert result.exit_code == 1, result.output
    run = one_run(tmp_path)
    line = (run / "FAILED").read_text().strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("evaluate test: 10 of 10 examples failed (more than "
                           "eval.max_failed_share=0.5); most common error (10 of 10 failures, "
                           "first at example x")
    assert line.endswith("metric: ZeroDivisionError: float division by zero (each one in "
                         "failures.jsonl)")
    assert f"error: {line}" in flat(result.output)
    assert len(read_jsonl(run / "predictions.jsonl")) == 10  # every result kept
    assert len(read_jsonl(run / failures.FILE)) == 10
    assert "evaluation_failed" in json.loads((run / "metrics.json").read_text())
    assert not (run / "DONE").exists()


def test_a_share_of_failures_at_or_below_the_threshold_still_ends_done(user, tmp_path):
    # x % 3 == 0 fails: 3 or so of the 10 test rows, under the default 0.5
    result = user("evaluate", "system.metric=userloud:score_raises_on_thirds")
    assert result.exit_code == 0, result.output
    run = one_run(tmp_path)
    metrics_json = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics_json["failed"] <= 5 and (run / "DONE").exists()
    # the same evaluation with a lower threshold fails, naming the error and its count
    result = user("evaluate", "system.metric=userloud:score_raises_on_thirds",
                  "eval.max_failed_share=0.1")
    assert result.exit_code == 1, result.output
    failed = flat(result.output)
    assert f"{metrics_json['failed']} of 10 examples failed (more than " \
           "eval.max_failed_share=0.1); most common error " \
           f"({metrics_json['failed']} of {metrics_json['failed']} failures" in failed
    assert "metric: ZeroDivisionError: a third" in failed


def test_an_initial_validation_where_every_example_failed_fails_the_run(user, tmp_path):
    # max_failed_share=1 lets any share pass, but not a validation of the starting system
    # where nothing succeeded: there is nothing to optimize
    result = user("run", "system.metric=userloud:score_raises", "eval.max_failed_share=1",
                  "optimizer=search", "optimizer.budget_system_runs=40")
    assert result.exit_code == 1, result.output
    line = (one_run(tmp_path) / "FAILED").read_text().strip()
    assert line.startswith("evaluate val initial: 10 of 10 examples failed (every example of "
                           "a validation of the starting system)")
    assert "(10 of 10 failures" in line and "metric: ZeroDivisionError" in line
    assert not (one_run(tmp_path) / "history.jsonl").exists()  # failed before any step


def test_a_final_test_over_the_threshold_fails_the_run(user, tmp_path):
    result = user("run", "system.loader=userloud:load_test_marked",
                  "system.metric=userloud:score_raises_on_test")
    assert result.exit_code == 1, result.output
    run = one_run(tmp_path)
    line = (run / "FAILED").read_text().strip()
    assert line.startswith("evaluate test initial: 10 of 10 examples failed")
    assert "LookupError: no gold for the test rows" in line
    history = read_jsonl(run / "history.jsonl")  # validation went well
    assert history[0]["val"]["failed"] == 0 and not (run / "summary.json").exists()
