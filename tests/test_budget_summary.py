"""One budget figure: summary.json, `optimas show` and `optimas compare` report the
optimization's system runs (test excluded) and the test evaluations' apart, in the same words."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from optimas_cli.budget import SPENT_KEYS, inference_cost, optimization_and_test
from optimas_cli.compare import compare
from optimas_cli.config import load
from optimas_cli.jobs import execute
from optimas_cli.reports import print_summary

LINEAR = Path(__file__).parent / "linear.yaml"  # val 10, test 10 examples; python components


def test_optimization_and_test_split_the_total():
    total = {"system_runs": 42, "component_calls": 3, "lm_calls": 50, "lm_requests": 60,
             "lm_tokens": 900}
    last = {"kind": "iteration", "system_runs": 22, "component_calls": 3, "lm_calls": 30,
            "lm_requests": 35, "lm_tokens": 500}
    out = optimization_and_test(total, last)
    assert {k: out[k] for k in SPENT_KEYS} == {k: last[k] for k in SPENT_KEYS}
    assert out["test_system_runs"] == 20 and out["test_lm_requests"] == 25
    assert out["test_component_calls"] == 0
    assert optimization_and_test(total, None)["test_system_runs"] == 42  # nothing recorded


def test_summary_show_and_compare_say_the_same_system_runs(tmp_path):
    path, summary = execute("run", load(LINEAR, [f"run_root={tmp_path}", "optimizer=search",
                                                 "optimizer.budget_system_runs=30"]),
                            show_progress=False)
    history = [json.loads(x) for x in (path / "history.jsonl").read_text().splitlines()]
    spent = [json.loads(x) for x in (path / "spent.jsonl").read_text().splitlines()]
    on_disk = json.loads((path / "summary.json").read_text())
    assert on_disk["system_runs"] == summary["system_runs"] == history[-1]["system_runs"] <= 30
    assert on_disk["test_system_runs"] == 2 * 10  # the initial and the final system on test
    assert on_disk["system_runs"] + on_disk["test_system_runs"] == sum(
        row["system_runs"] for row in spent)  # together: everything the run spent
    (row,), _ = compare([path], tmp_path / "out")
    assert row["system_runs"] == on_disk["system_runs"]
    console = Console(width=200, record=True)
    print_summary(path, console)
    text = console.export_text()
    assert f'{on_disk["system_runs"]} system runs + 20 test system runs' in text


def test_inference_cost_counts_hits_tokens_and_prices_them_at_measured_calls():
    test = {"n": 4, "repeats": 1, "per_component": {
        "a": {"calls": 2, "cache_hits": 2, "prompt_tokens": 300, "completion_tokens": 100,
              "latency_s": 3.0},
        "b": {"calls": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
              "latency_s": 0.0}}}  # a component with no LM
    assert inference_cost(test) == {"tokens_per_question": 100.0,
                                    "lm_seconds_per_question": 1.5}  # 1.5 s a call, 4 calls
    test["per_component"]["a"]["calls"] = 0  # a replay measured nothing
    assert inference_cost(test)["lm_seconds_per_question"] is None
    assert inference_cost({"n": 0})["tokens_per_question"] is None
