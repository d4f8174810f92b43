"""Run candidate code against a unittest module; copied into the sandbox and run there.

    python runner.py SOLUTION TESTS [--entry-point task_func] [--test-class TestCases]

The solution and the tests share one module namespace, as in BigCodeBench, where
the tests call the solution's function by name. In the tests, a top-level
definition of the entry point (models often repeat the function) and a bare
`unittest.main()` are dropped, so the tests exercise the candidate and the runner
stays in charge. Tests: the unittest.TestCase classes the tests define (only
--test-class when given) and top-level pytest-style `test_*` functions.

The last line of output is `RESULT <token> {json}`, the token read from the first
line of stdin, so that text the code prints cannot pass for the summary. Only the
standard library is used: this file runs in the sandbox's interpreter.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import traceback
import types
import unittest


def clean_tests(source: str, entry_point: str) -> str:
    """The test source without a top-level `def <entry_point>` or `unittest.main()` call."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source  # compiling it reports the error with its line
    keep = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
                ast.unparse(node.value.func) in ("unittest.main", "main", "pytest.main"):
            continue
        keep.append(node)
    tree.body = keep
    return ast.unparse(tree)


def collect(namespace: dict, before: dict, test_class: str | None) -> unittest.TestSuite:
    """Tests that the test source added to `namespace` (`before`: names and ids until then)."""
    loader, suite = unittest.TestLoader(), unittest.TestSuite()
    new = {k: v for k, v in namespace.items() if before.get(k) != id(v)}
    for name, obj in new.items():
        if isinstance(obj, type) and issubclass(obj, unittest.TestCase) \
                and obj is not unittest.TestCase and (test_class is None or name == test_class):
            suite.addTests(loader.loadTestsFromTestCase(obj))
    if test_class is None:
        for name, obj in new.items():
            if name.startswith("test") and isinstance(obj, types.FunctionType) \
                    and obj.__code__.co_argcount == 0:
                suite.addTest(unittest.FunctionTestCase(obj))
    return suite


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("solution")
    ap.add_argument("tests")
    ap.add_argument("--entry-point", default="task_func")
    ap.add_argument("--test-class", default=None)
    args = ap.parse_args(argv)
    token = sys.stdin.readline().strip()
    out = os.fdopen(os.dup(1), "w")  # the summary goes here even if the code swaps sys.stdout
    summary = {"stage": "solution", "tests": 0, "failures": 0, "errors": 0, "skipped": 0,
               "passed": False}

    def finish(code: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        out.write(f"\nRESULT {token} {json.dumps(summary)}\n")
        out.flush()
        return code

    module = types.ModuleType("candidate")
    sys.modules["candidate"] = module
    namespace = module.__dict__
    try:
        with open(args.solution, encoding="utf-8") as f:
            exec(compile(f.read(), "solution.py", "exec"), namespace)
        summary["stage"] = "tests"
        before = {k: id(v) for k, v in namespace.items()}
        with open(args.tests, encoding="utf-8") as f:
            exec(compile(clean_tests(f.read(), args.entry_point), "tests.py", "exec"), namespace)
    except BaseException:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: it is a fail
        traceback.print_exc()
        return finish(1)
    summary["stage"] = "run"
    suite = collect(namespace, before, args.test_class)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    summary.update(tests=result.testsRun, failures=len(result.failures),
                   errors=len(result.errors), skipped=len(result.skipped),
                   passed=result.wasSuccessful() and result.testsRun > 0)
    return finish(0 if summary["passed"] else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
