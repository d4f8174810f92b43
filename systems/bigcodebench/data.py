"""Read BigCodeBench tasks into a Dataset, keeping those whose libraries import in the sandbox.

Records: {task_id, instruct_prompt, code_prompt, canonical_solution, test, entry_point,
libs, ...}; `libs` is a Python-literal list of the modules a solution may import. The
system's input is the instruct prompt (the task in prose, ending with the starting
code); the metric's target is the hidden unittest module `test`.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

from optimas_cli.data import Dataset, Example, numbered_records, resolve_data_path
from optimas_cli.schema import DataConfig
from systems.bigcodebench.execution import importable

DEFAULT_PATH = "bigcodebench/bigcodebench_full.jsonl"  # registry names (optimas data list)
HARD_PATH = "bigcodebench/bigcodebench_hard.jsonl"
HINT = ("Set data.path to BigCodeBench JSON lines ({task_id, instruct_prompt, code_prompt, "
        "canonical_solution, test, entry_point, libs}), or to a registry name "
        "(`optimas data list`).")
REQUIRED = {"task_id", "instruct_prompt", "code_prompt", "canonical_solution", "test",
            "entry_point", "libs"}


def task_libs(record: dict) -> list[str]:
    """The task's libraries (top-level module names)."""
    libs = record["libs"]
    return sorted(set(ast.literal_eval(libs) if isinstance(libs, str) else libs))


def test_imports(record: dict) -> list[str]:
    """Top-level modules the hidden test module imports (requests_mock, pyfakefs, ...)."""
    try:
        with warnings.catch_warnings():  # the data's own invalid escapes are not our concern
            warnings.simplefilter("ignore")
            tree = ast.parse(record["test"])
    except SyntaxError:
        return []
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            mods.add(node.module.split(".")[0])
    return sorted(mods)


def needs(record: dict) -> set[str]:
    """Every module the task needs: its solution's libraries and its tests' imports."""
    return set(task_libs(record)) | set(test_imports(record))


def read_tasks(path: Path) -> list[dict]:
    records = numbered_records(path)
    for where, r in records:
        missing = REQUIRED - set(r)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)}")
    return [r for _, r in records]


def to_example(r: dict) -> Example:
    """inputs: the task; target: the hidden tests, and the canonical solution under the final
    output's name (the loop's rollouts offer it as the gold candidate, scored like any other)."""
    return Example(id=str(r["task_id"]), inputs={"task": r["instruct_prompt"]},
                   target={"test": r["test"], "entry_point": r["entry_point"],
                           "final_code": r["code_prompt"] + r["canonical_solution"]},
                   meta={"libs": task_libs(r)})


def usable(records: list[dict]) -> tuple[list[dict], set[str]]:
    """The tasks whose libraries (and test imports) all import in the sandbox, and the
    modules that do not."""
    wanted = {m for r in records for m in needs(r)}
    ok = importable(wanted)
    return [r for r in records if needs(r) <= ok], wanted - ok


def load(cfg: DataConfig) -> Dataset:
    path = resolve_data_path(cfg.path, DEFAULT_PATH, HINT)
    tasks, _missing = usable(read_tasks(path))
    return Dataset(examples=[to_example(r) for r in tasks])
