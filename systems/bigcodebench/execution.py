"""Running BigCodeBench code in the sandbox: tests against a solution, and the library check."""

from __future__ import annotations

import functools
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from optimas_cli.sandbox import Limits, Result, Sandbox

RUNNER = Path(__file__).with_name("runner.py")
# The hidden tests of a few tasks train small models or draw plots: generous limits,
# and still every run ends within a minute.
TEST_LIMITS = Limits(cpu_seconds=30, wall_seconds=60, memory_mb=4096, max_processes=64,
                     max_file_mb=64, disk_mb=256)


@functools.cache
def task_sandbox() -> Sandbox:
    """The sandbox of hidden-test runs and the library check: one per process, so that
    concurrent metric calls share its slots (one per CPU)."""
    return Sandbox(TEST_LIMITS, max_parallel=os.cpu_count() or 2)


@dataclass
class TestOutcome:
    passed: bool  # every test passed (and there was at least one)
    tests: int
    failures: int  # failed assertions and errors
    stage: str  # where it stopped: solution (it did not load), tests, run
    result: Result

    @property
    def fraction(self) -> float:
        return (self.tests - self.failures) / self.tests if self.tests else 0.0


def run_tests(code: str, tests: str, *, sandbox: Sandbox | None = None,
              test_class: str | None = None, entry_point: str = "task_func") -> TestOutcome:
    """Run `tests` against `code` in one sandboxed process (systems/bigcodebench/runner.py).
    A timeout, crash or load error is a fail."""
    token = secrets.token_hex(8)
    command = ["python", "runner.py", "solution.py", "tests.py", "--entry-point", entry_point]
    if test_class:
        command += ["--test-class", test_class]
    files = {"runner.py": RUNNER.read_text(), "solution.py": code, "tests.py": tests}
    result = (sandbox or task_sandbox()).run(files, command, stdin=token + "\n")
    summary = parse_summary(result.stdout, token)
    if summary is None:  # killed, timed out or exited before the runner could report
        return TestOutcome(False, 0, 0, "crashed", result)
    failures = int(summary["failures"]) + int(summary["errors"])
    return TestOutcome(bool(summary["passed"]) and result.ok, int(summary["tests"]), failures,
                       str(summary["stage"]), result)


def parse_summary(stdout: str, token: str) -> dict | None:
    prefix = f"RESULT {token} "
    for line in reversed(stdout.splitlines()):
        if line.startswith(prefix):
            try:
                return json.loads(line[len(prefix):])
            except json.JSONDecodeError:
                return None
    return None


_IMPORT_CHECK = """
import importlib, json, sys
ok = []
for name in json.loads(sys.stdin.read()):
    try:
        importlib.import_module(name)
        ok.append(name)
    except BaseException:
        pass
print(json.dumps(ok))
"""


def importable(libs: Iterable[str], sandbox: Sandbox | None = None) -> frozenset[str]:
    """The libraries among `libs` that import in the sandbox (one sandboxed run, ~5 s for
    all of BigCodeBench's; remembered for the process)."""
    return _importable(tuple(sorted(set(libs))), sandbox or task_sandbox())


@functools.cache
def _importable(libs: tuple[str, ...], sandbox: Sandbox) -> frozenset[str]:
    limits = sandbox.limits.model_copy(update={"wall_seconds": 300, "cpu_seconds": 240})
    r = sandbox.run({"check.py": _IMPORT_CHECK}, ["python", "check.py"], stdin=json.dumps(libs),
                    limits=limits)
    lines = r.stdout.strip().splitlines()
    if not r.ok or not lines:
        raise RuntimeError(f"the sandbox's library check failed ({r.describe()}): "
                           f"{r.stderr.strip()[-500:]}")
    return frozenset(json.loads(lines[-1]))
