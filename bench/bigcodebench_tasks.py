"""Which BigCodeBench tasks this machine can run: their libraries import in the sandbox,
and (with --solutions) their canonical solutions pass their own hidden tests there.

    python bench/bigcodebench_tasks.py                   # usable tasks, missing libraries
    python bench/bigcodebench_tasks.py --solutions 0     # + every usable task's canonical solution
    python bench/bigcodebench_tasks.py --hard --solutions 0

A canonical solution that fails shows where the environment differs from BigCodeBench's
(library versions, data that needs the network); those tasks can be solved by no model.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimas_cli.data import resolve_data_path  # noqa: E402
from systems.bigcodebench import data  # noqa: E402
from systems.bigcodebench.execution import run_tests, task_sandbox  # noqa: E402


def library_report(records: list[dict]) -> dict:
    tasks, missing = data.usable(records)
    blocked = collections.Counter(m for r in records for m in data.needs(r) if m in missing)
    return {"tasks": len(records), "usable": len(tasks), "sandbox_mode": task_sandbox().resolved,
            "missing_libs": dict(blocked.most_common()), "usable_records": tasks}


def solution_report(records: list[dict], limit: int, workers: int) -> dict:
    """Canonical solutions against their hidden tests: pass count and each failure's kind."""
    if limit:
        records = random.Random(0).sample(records, min(limit, len(records)))
    start = time.monotonic()

    def check(r: dict) -> tuple[str, str, float]:
        ex = data.to_example(r)
        out = run_tests(ex.target["final_code"], ex.target["test"], test_class="TestCases")
        why = "passed" if out.passed else (out.result.status if out.stage == "crashed"
                                           else f"{out.stage}: {out.failures}/{out.tests} failed")
        return r["task_id"], why, out.result.seconds

    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(check, records))
    failed = {tid: why for tid, why, _ in rows if why != "passed"}
    secs = sorted(s for _, _, s in rows)
    return {"checked": len(rows), "passed": len(rows) - len(failed),
            "wall_s": round(time.monotonic() - start, 1),
            "median_run_s": round(secs[len(secs) // 2], 2) if secs else None,
            "max_run_s": round(secs[-1], 2) if secs else None, "failed": failed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hard", action="store_true", help="the Hard subset instead of the full set")
    ap.add_argument("--solutions", type=int, default=None, metavar="N",
                    help="run N canonical solutions (0: all usable tasks)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args()
    path = resolve_data_path(None, data.HARD_PATH if args.hard else data.DEFAULT_PATH, data.HINT)
    report = library_report(data.read_tasks(path))
    usable = report.pop("usable_records")
    print(f"{path.name}: {report['usable']} of {report['tasks']} tasks usable "
          f"(sandbox mode: {report['sandbox_mode']})")
    print("missing libraries (tasks needing each):",
          ", ".join(f"{k} {v}" for k, v in report["missing_libs"].items()) or "none")
    if args.solutions is not None:
        report["solutions"] = solution_report(usable, args.solutions, args.workers)
        s = report["solutions"]
        print(f"canonical solutions: {s['passed']} of {s['checked']} pass "
              f"({s['wall_s']} s wall, median run {s['median_run_s']} s, max {s['max_run_s']} s)")
        kinds = collections.Counter(why.split(":")[0] for why in s["failed"].values())
        print("failures by kind:", dict(kinds))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
