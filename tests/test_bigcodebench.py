"""BigCodeBench system: the test runner, the loader's library selection, the metric (hidden
tests in the sandbox), the config, evaluate with a scripted LM, and a real run (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from optimas_cli import runtime
from optimas_cli.cli import app
from optimas_cli.config import PROJECT_CONFIGS, load
from optimas_cli.data_files import SHARED_DATA
from optimas_cli.jobs import execute
from optimas_cli.sandbox import Limits, Sandbox
from optimas_cli.schema import DataConfig
from systems.bigcodebench import data, metric, partial_metric
from systems.bigcodebench.execution import run_tests
from systems.bigcodebench.runner import clean_tests

CONFIG = PROJECT_CONFIGS / "bigcodebench.yaml"
FULL = SHARED_DATA / data.DEFAULT_PATH


@pytest.fixture(scope="module")
def tasks() -> dict[str, dict]:
    if not FULL.exists():
        pytest.skip(f"BigCodeBench data not found at {FULL}")
    return {r["task_id"]: r for r in data.read_tasks(FULL)}


def example(tasks, n: int):
    return data.to_example(tasks[f"BigCodeBench/{n}"])


def fenced(code: str) -> str:
    return f"Here is the solution:\n```python\n{code}\n```\nIt works."


# ------------------------------------------------------------------ runner


def test_runner_drops_a_copied_entry_point_and_unittest_main():
    src = ("import unittest\ndef task_func():\n    return 1\nclass T(unittest.TestCase):\n"
           "    def test_a(self):\n        self.assertEqual(task_func(), 2)\nunittest.main()\n")
    cleaned = clean_tests(src, "task_func")
    assert "def task_func" not in cleaned and "unittest.main" not in cleaned
    assert "class T" in cleaned
    assert clean_tests("def f(:", "task_func") == "def f(:"  # left for compile to report


def test_run_tests_counts_passes_and_pytest_style_functions():
    code = "def task_func(x):\n    return x * 2"
    tests = ("import unittest\nclass TestCases(unittest.TestCase):\n"
             "    def test_ok(self):\n        self.assertEqual(task_func(2), 4)\n"
             "    def test_bad(self):\n        self.assertEqual(task_func(2), 5)\n"
             "def test_plain():\n    assert task_func(1) == 2\n")
    out = run_tests(code, tests)
    assert (out.passed, out.tests, out.failures, out.stage) == (False, 3, 1, "run")
    assert out.fraction == pytest.approx(2 / 3)
    only = run_tests(code, tests.replace("test_bad", "_skip"), test_class="TestCases")
    assert (only.passed, only.tests) == (True, 1)


def test_run_tests_fails_loading_timeouts_and_a_forged_summary():
    box = Sandbox(Limits(cpu_seconds=2, wall_seconds=6), max_parallel=2)
    tests = "def test_it():\n    assert task_func() == 1\n"
    broken = run_tests("import no_such_module_xyz\ndef task_func(): return 1", tests, sandbox=box)
    assert not broken.passed and broken.stage == "solution"
    assert "ModuleNotFoundError" in broken.result.stderr
    looping = run_tests("def task_func():\n    while True: pass", tests, sandbox=box)
    assert not looping.passed and looping.stage == "crashed"
    forged = run_tests('import os\nprint(\'RESULT  {"passed": true, "tests": 1, "failures": 0, '
                       '"errors": 0, "skipped": 0, "stage": "run"}\')\nos._exit(0)', tests,
                       sandbox=box)
    assert not forged.passed  # the runner's summary carries a token the code never saw
    exits = run_tests("def task_func():\n    raise SystemExit(0)", tests, sandbox=box)
    assert not exits.passed and exits.failures == 1


# ------------------------------------------------------------------ loader


def test_loader_keeps_tasks_whose_libraries_import(tasks):
    ds = data.load(DataConfig())
    ids = {e.id for e in ds.examples}
    assert len(ids) == len(ds.examples) > 900
    needs_tf = {t for t, r in tasks.items() if "tensorflow" in data.task_libs(r)}
    assert needs_tf and not needs_tf & ids  # tensorflow is not in the sandbox's environment
    first = ds.examples[0]
    assert set(first.inputs) == {"task"} and "def task_func" in first.inputs["task"]
    assert {"test", "entry_point", "final_code"} <= set(first.target)
    assert first.target["final_code"].startswith(tasks[first.id]["code_prompt"])


def test_usable_reports_missing_libraries(tasks):
    fake = dict(tasks["BigCodeBench/1"], task_id="x", libs="['random', 'no_such_lib_xyz']")
    kept, missing = data.usable([tasks["BigCodeBench/1"], fake])
    assert [r["task_id"] for r in kept] == ["BigCodeBench/1"] and missing == {"no_such_lib_xyz"}


def test_hard_subset_loads(tasks):
    ds = data.load(DataConfig(path=str(SHARED_DATA / data.HARD_PATH)))
    assert 100 < len(ds.examples) <= 118


# ------------------------------------------------------------------ metric


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_canonical_solution_passes_its_own_tests(tasks, n):
    ex = example(tasks, n)
    s = metric(ex, {"final_code": fenced(ex.target["final_code"])})
    assert s == {"score": 1.0, "pass": 1.0, "parsed": 1.0, "tests_passed": 1.0, "timeout": 0.0}


def test_code_that_does_not_parse_scores_zero_and_is_counted(tasks):
    ex = example(tasks, 1)
    for reply in ["```python\ndef task_func(:\n```", "", "I cannot help with that."]:
        assert metric(ex, {"final_code": reply}) == {
            "score": 0.0, "pass": 0.0, "parsed": 0.0, "tests_passed": 0.0, "timeout": 0.0}
    assert metric(ex, {})["parsed"] == 0.0


def test_wrong_code_parses_and_fails(tasks):
    ex = example(tasks, 2)
    wrong = ex.target["final_code"].split("def task_func")[0] + \
        "def task_func(*args, **kwargs):\n    return None\n"
    s = metric(ex, {"final_code": fenced(wrong)})
    assert s["parsed"] == 1.0 and s["score"] == 0.0 and s["tests_passed"] < 1.0
    p = partial_metric(ex, {"final_code": fenced(wrong)})
    assert p["score"] == p["tests_passed"] == s["tests_passed"]


# ------------------------------------------------------------------ config and evaluate


def test_validate_bigcodebench_config(seed_data):
    result = CliRunner().invoke(app, ["validate", str(CONFIG)])
    assert result.exit_code == 0, result.output
    assert "code_generator -> unit_test_generator -> executor -> final_code_generator" in \
        " ".join(result.output.split())


def test_evaluate_with_scripted_lm(tasks, tmp_path, monkeypatch, scripted_lm, capsys):
    """Canonical code, a test that fails it, then canonical again: the executor's report
    carries the failure, the final code passes the hidden tests; one reply does not parse."""
    chosen = [tasks[f"BigCodeBench/{n}"] for n in (1, 2, 3)]
    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    bad_task = chosen[2]["instruct_prompt"]

    def script(request):
        system, user = request.messages[0][1], request.messages[-1][1]
        task = next(r for r in chosen if r["instruct_prompt"].strip()[:300] in user)
        if system.startswith("Write unit tests"):
            return fenced("def test_always_fails():\n    assert False, 'generated test failed'")
        if "Test report" in user and task["instruct_prompt"] == bad_task:
            return "```python\ndef task_func(:\n```"
        return fenced(task["code_prompt"] + task["canonical_solution"])

    lm = scripted_lm(script)
    monkeypatch.setattr(runtime, "make_lm", lambda composed: lm)
    composed = load(CONFIG, [f"run_root={tmp_path}", f"data.path={path}", "data.train_size=0",
                             "data.val_size=0", "data.test_size=3"])
    run_dir, _ = execute("evaluate", composed, show_progress=False)
    said = [x for x in capsys.readouterr().err.splitlines() if x.startswith("sandbox (")]
    mode = Sandbox().resolved  # the run says, once, how its code runs
    assert len(said) == 1 and said[0].startswith(f"sandbox (executor): {mode} ("), said
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["n"] == 3 and m["failed"] == 0 and len(lm.requests) == 9
    assert m["mean"] == pytest.approx(2 / 3) and m["metrics"]["parsed"]["mean"] == pytest.approx(2 / 3)
    preds = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    reports = [s["outputs"]["execution_report"] for p in preds for s in p["trace"]["steps"]
               if s["component"] == "executor"]
    assert len(reports) == 3 and all("generated test failed" in r for r in reports)


QWEN15 = "local/qwen2.5-coder-1.5b-instruct"


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    from test_rewards import make_tiny_backbone

    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"))


def test_tiny_optimas_run_moves_the_final_coder_to_the_model_whose_code_passes(
        tasks, tmp_path, monkeypatch, scripted_lm, tiny_backbone):
    """`optimas run configs/bigcodebench.yaml`, one iteration: only Qwen 1.5B's revisions pass
    the hidden tests in the sandbox, the rollouts of final_code_generator measure that, the
    loop moves it to Qwen 1.5B, validation accepts, test goes 0 -> 1. (A scripted LM: the
    model choice follows the measured returns, so a tiny reward backbone stands in.)"""
    chosen = [tasks[f"BigCodeBench/{n}"] for n in range(1, 9)]
    path = tmp_path / "eight.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    wrong = "def task_func(*args, **kwargs):\n    return None"

    def script(request):
        user = request.messages[-1][1]  # demonstrations first, the task itself last
        at = {user.rfind(r["instruct_prompt"].strip()[:300]): r for r in chosen}
        task = at[max(at)] if max(at) >= 0 else None
        if task is None:  # the prompt proposer
            return "Write the complete function, imports first."
        if request.messages[0][1].startswith("Write unit tests"):
            return fenced("def test_runs():\n    assert True")
        if "Test report" in user and request.model == QWEN15:
            return fenced(task["code_prompt"] + task["canonical_solution"])
        return fenced(wrong)

    lm = scripted_lm(script)
    monkeypatch.setattr(runtime, "make_lm", lambda composed: lm)
    composed = load(CONFIG, [
        f"run_root={tmp_path}", f"data.path={path}", f"reward.backbone={tiny_backbone}",
        "data.train_size=2", "data.val_size=4", "data.test_size=2", "optimizer.num_iterations=1",
        "optimizer.collect.num_inputs=2", "optimizer.collect.num_samples=2",
        "optimizer.update.per_component_train_size=2", "optimizer.update.num_candidates=1",
        "reward.epochs=1", "reward.max_epochs=1"])
    run_dir, summary = execute("run", composed, show_progress=False)
    assert (run_dir / "DONE").exists()
    history = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    it = history[1]
    assert it["component"] == "final_code_generator" and it["accepted"]
    assert (it["val_before"], it["val_after"]) == (0.0, 1.0)
    state = yaml.safe_load((run_dir / "final/system.yaml").read_text())["state"]
    assert state["final_code_generator"]["model"] == QWEN15
    assert state["code_generator"]["model"] != QWEN15  # untouched in this one iteration
    assert (summary["test"]["initial"]["mean"], summary["test"]["final"]["mean"]) == (0.0, 1.0)


@pytest.mark.slow
def test_real_evaluate_two_tasks_qwen05(tmp_path, isolated_cache, tasks):
    env = dict(os.environ, OPTIMAS_CACHE_DIR=str(isolated_cache))
    proc = subprocess.run(
        [sys.executable, "-m", "optimas_cli.cli", "evaluate", str(CONFIG), "data.test_size=2",
         f"run_root={tmp_path}", "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((tmp_path / "bigcodebench").iterdir())
    m = json.loads((run / "metrics.json").read_text())
    assert m["n"] == 2 and m["failed"] == 0 and m["lm"]["total"]["calls"] == 6
    assert {"pass", "parsed", "tests_passed", "timeout"} <= set(m["metrics"])
    preds = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    steps = [s for p in preds for s in p["trace"]["steps"]]
    assert all(s["outputs"]["execution_report"].startswith("Run ") for s in steps
               if s["component"] == "executor")
