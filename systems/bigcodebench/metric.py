"""BigCodeBench pass rate: the final code against the task's own hidden unittest module.

`metric` scores a task 1 when every hidden test passes in the sandbox (BigCodeBench's
pass@1 criterion; the mean over tasks is the pass rate) and 0 otherwise: a failed
test, a timeout, a crash or an import error. Code that does not parse scores 0 and
is counted in `parsed`. `tests_passed` is the share of hidden tests that passed, a
denser signal that `partial_metric` uses as the score.
"""

from __future__ import annotations

from typing import Any

from optimas_cli.data import Example
from optimas_cli.sandbox import extract_code, parses
from systems.bigcodebench.execution import run_tests

FIELD = "final_code"


def metric(example: Example, fields: dict[str, Any]) -> dict[str, float]:
    entry = example.target.get("entry_point", "task_func")
    code = extract_code(fields.get(FIELD, ""), entry)
    if not parses(code):
        return {"score": 0.0, "pass": 0.0, "parsed": 0.0, "tests_passed": 0.0, "timeout": 0.0}
    outcome = run_tests(code, example.target["test"], test_class="TestCases", entry_point=entry)
    return {"score": float(outcome.passed), "pass": float(outcome.passed), "parsed": 1.0,
            "tests_passed": outcome.fraction,
            "timeout": float(outcome.result.status == "timeout")}


def partial_metric(example: Example, fields: dict[str, Any]) -> dict[str, float]:
    """As `metric`, with the share of hidden tests passed as the score."""
    s = metric(example, fields)
    return dict(s, score=s["tests_passed"])
