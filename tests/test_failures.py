"""No silent failures: every failed example of every stage lands in failures.jsonl with its
component and error, run.log counts them per stage and quotes the first, `optimas show`
lists them, and bench/reproduce.py names every replay miss."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimas_cli import failures
from optimas_cli.cli import app
from optimas_cli.config import load
from optimas_cli.jobs import execute
from optimas_cli.methods.optimas.collect import CollectContext, collect_rollouts
from optimas_cli.run_dir import RunDir
from optimas_cli.runtime import build_runtime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import reproduce  # noqa: E402

# ---- a numeric system whose steps fail on known inputs: y = x * factor, out = y + 1


def load_numbers(cfg):
    from optimas_cli.data import Dataset, Example

    return Dataset(examples=[Example(id=f"x{i}", inputs={"x": i}, target={"out": 2 * i + 1})
                             for i in range(1, 41)])


def number_metric(example, fields) -> dict:
    return {"score": 1.0 / (1.0 + abs(fields["out"] - example.target["out"]))}


def scale(x: int, factor: int) -> dict:
    if x % 5 == 0:
        raise RuntimeError(f"scale cannot take {x}")
    return {"y": x * factor}


def finish(y: int) -> dict:
    if y == 21:
        raise ValueError("finish cannot take 21")
    return {"out": y + 1}


CONFIG = """defaults:
  - lm: smollm2
  - optimizer: none
  - reward: minilm
  - _self_
name: numbers
system:
  name: numbers
  inputs: [x]
  final_output: out
  loader: test_failures:load_numbers
  metric: test_failures:number_metric
  components:
    scale:
      kind: python
      description: Multiplies x by a factor.
      inputs: [x]
      outputs: [y]
      params: {function: "test_failures:scale"}
      variables:
        factor: {type: hyperparameter, value: 1, choices: [1, 2, 3]}
    finish:
      kind: python
      description: Adds one.
      inputs: [y]
      outputs: [out]
      params: {function: "test_failures:finish"}
data: {train_size: 20, val_size: 10, test_size: 10}
eval: {workers: 2}
"""


def bad_ids(results) -> set[str]:
    return {r["id"] for r in results if r["error"]}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def numbers(write_yaml):
    return write_yaml("numbers.yaml", CONFIG)


def test_component_of_reads_the_failing_step_from_a_trace_error():
    assert failures.component_of("hint_generator: LMError: cache miss") == "hint_generator"
    assert failures.component_of("metric: KeyError: 'out'") == "metric"
    assert failures.component_of("no component here") is None
    assert failures.component_of(None) is None


def test_every_failed_evaluation_is_recorded_logged_and_shown(numbers, tmp_path):
    """A run of the `search` baseline: validation of the initial system and of every
    trial, and both test evaluations; each failed example is in failures.jsonl."""
    composed = load(numbers, [f"run_root={tmp_path / 'runs'}", "optimizer=search",
                              "optimizer.budget_system_runs=30"])
    path, _ = execute("run", composed, show_progress=False)
    assert (path / "DONE").exists()
    recorded = read(path / failures.FILE)
    # the test evaluations: failures.jsonl holds exactly the failed predictions
    for which in ("initial", "final"):
        preds = read(path / f"test/{which}_predictions.jsonl")
        mine = [r for r in recorded if r["label"] == f"test {which}"]
        assert bad_ids(preds) == {r["example_id"] for r in mine} and len(mine) == len(bad_ids(preds))
        assert json.loads((path / f"test/{which}.json").read_text())["failed"] == len(mine) > 0
    # validation: every history record's failed count is in failures.jsonl under its label
    history = read(path / "history.jsonl")
    labels = failures.by_label(recorded)
    assert labels[("evaluate", "val initial")] == history[0]["val"]["failed"] == 2
    trials = [h for h in history if h.get("kind") == "iteration"]
    assert len(trials) == 2  # the baseline's trials
    for h in trials:
        assert labels[("evaluate", f"val search {h['iteration']}")] == h["val"]["failed"] > 0
    for r in recorded:
        x = int(r["example_id"][1:])
        assert r["stage"] == "evaluate"
        if x % 5:  # x7 under factor=3: y = 21 fails at finish
            assert (x, r["component"]) == (7, "finish") and r["label"].startswith("val search")
            assert r["error"] == "finish: ValueError: finish cannot take 21"
        else:
            assert r["component"] == "scale"
            assert r["error"] == f"scale: RuntimeError: scale cannot take {x}"
    # run.log: one line per evaluation with failures, counting them and quoting the first
    logged = [line for line in (path / "run.log").read_text().splitlines()
              if "failure(s) in" in line]
    assert len(logged) == len(labels)
    first_test = next(r for r in recorded if r["label"] == "test initial")
    assert any(f"evaluate test initial: {labels[('evaluate', 'test initial')]} failure(s) in "
               f"{labels[('evaluate', 'test initial')]} of 10 example(s); first: example "
               f"{first_test['example_id']} at scale: {first_test['error']}" in line
               for line in logged)
    # optimas show: the total, the count per stage and the first failures
    shown = " ".join(CliRunner().invoke(app, ["show", str(path)]).output.split())
    assert f"failures: {len(recorded)}" in shown
    assert f"evaluate test final: {labels[('evaluate', 'test final')]}" in shown
    assert f"- val initial example {recorded[0]['example_id']} at scale: " \
           f"{recorded[0]['error']}" in shown


def test_failed_rollouts_candidates_and_downstream_runs_are_recorded(numbers, tmp_path):
    rt = build_runtime(load(numbers))
    rd = RunDir(tmp_path)
    examples = [e for e in rt.dataset.examples if e.id in ("x1", "x5", "x7")]
    cfg = rt.composed.run.optimizer.collect.model_copy(update={"workers": 2})
    scale = CollectContext(rt.system, "scale", rt.state, rt.metric, cfg)
    collect_rollouts(scale, examples, rd, "r/scale.jsonl")
    collect_rollouts(CollectContext(rt.system, "finish", rt.state, rt.metric, cfg), examples, rd,
                     "r/finish.jsonl")
    got = sorted((r["label"], r["example_id"], r["component"], r.get("candidate"), r["error"])
                 for r in read(tmp_path / failures.FILE))
    assert got == [
        # finish's upstream (scale) fails on x5: the whole input failed
        ("r/finish.jsonl", "x5", "scale", None, "scale: RuntimeError: scale cannot take 5"),
        # x5: every candidate value of scale fails at scale itself
        *[("r/scale.jsonl", "x5", "scale", c, "scale: RuntimeError: scale cannot take 5")
          for c in sorted(["current", "factor=2", "factor=3"])],
        # x7, factor=3: y = 21, its downstream run fails at finish
        ("r/scale.jsonl", "x7", "finish", "factor=3", "finish: ValueError: finish cannot take 21"),
    ]
    assert all(r["stage"] == "collect" for r in read(tmp_path / failures.FILE))
    # the rollout record keeps its failures too, and a resumed collection adds none
    x7 = next(r for r in read(tmp_path / "r/scale.jsonl") if r["example_id"] == "x7")
    assert x7["failures"] == [{"component": "finish", "error": "finish: ValueError: finish cannot "
                               "take 21", "rollout": 0, "candidate": "factor=3"}]
    collect_rollouts(scale, examples, rd, "r/scale.jsonl")
    assert len(read(tmp_path / failures.FILE)) == len(got)


def test_replay_misses_are_recorded_and_named_by_reproduce(tmp_path):
    """lm.cache.mode=replay with an empty cache: every request is a miss; each example's
    miss is in failures.jsonl at its component, and reproduce.py names every one."""
    composed = load(ROOT / "tests" / "words.yaml",  # every example fails: allowed here
                    [f"run_dir={tmp_path / 'replay' / 'none'}", "lm.cache.mode=replay",
                     "eval.max_failed_share=1"])
    path, summary = execute("evaluate", composed, show_progress=False)
    recorded = read(path / failures.FILE)
    assert summary["failed"] == summary["n"] == len(recorded) == 4
    assert all(r["component"] == "upper" and failures.REPLAY_MISS in r["error"] for r in recorded)
    assert failures.replay_misses(recorded) == recorded
    # reproduce.py: from failures.jsonl, plus a miss that only a log mentions
    (tmp_path / "replay" / "gepa").mkdir()
    (tmp_path / "replay" / "gepa" / "run.log").write_text(
        f"x WARNING dspy: LMError: {failures.REPLAY_MISS} (lm.cache.mode=replay): model 'm'\n")
    named = reproduce.replay_misses(tmp_path / "replay")
    assert len(named) == 5 and named[-1].startswith("gepa log run.log: ")
    for r in recorded:
        assert f"none evaluate test: example {r['example_id']} at upper: {r['error']}" in named


def test_nothing_is_recorded_outside_a_run_directory(numbers, tmp_path, monkeypatch):
    from optimas_cli.stages.evaluate import EvalOptions, evaluate_examples

    monkeypatch.chdir(tmp_path)
    rt = build_runtime(load(numbers))
    results = evaluate_examples(rt.system, rt.state, rt.dataset.examples[:10], rt.metric,
                                EvalOptions(show_progress=False))
    assert bad_ids(results) == {"x5", "x10"} and not list(tmp_path.rglob(failures.FILE))
