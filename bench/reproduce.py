"""`make reproduce`: rerun a pinned small benchmark from a recorded LM cache; fail on any drift.

    python bench/reproduce.py            # check: replay bench/reproduce/, compare to expected.csv
    python bench/reproduce.py --record   # record: real model calls, new cache + expected.csv

The benchmark is configs/bench/hotpotqa_reproduce.yaml run once per method (seed 0). In check
mode every LM request is answered from the recorded cache (lm.cache.mode=replay: a
request that is not in it fails the example instead of calling a model), so the run
needs no model and no key, and every number of the table must come out equal:
test mean/std, initial test mean/std, system runs, and LM requests (model calls +
cache hits). Wall time differs by machine and real model calls are zero in a replay,
so those two columns are not compared. Differing cells are printed; exit status 1.
Every replay miss (a request the record lacks) is named, whichever stage it happened in:
the failures.jsonl of every run (optimas_cli.failures), then any other miss in a log.

Recording with API models (a user's own table in CI): record on a machine that can
reach the provider, with the key set, then commit bench/reproduce/:

    python bench/reproduce.py --record --config configs/bench/hotpotqa_reproduce.yaml lm=openai
    git add bench/reproduce && git commit -m "Recorded benchmark cache"

CI then runs `python bench/reproduce.py --config ... lm=openai` with no key and no
network: replay mode never calls the provider (the key check is skipped in replay).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import METHOD_OVERRIDES, failure_reason  # noqa: E402  (bench/run.py, shared)

from optimas_cli.failures import FILE as FAILURES  # noqa: E402
from optimas_cli.failures import REPLAY_MISS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "reproduce"
METHODS = ("none", "optimas", "search", "llmselector", "mipro", "gepa")
CHECKED = ("seeds", "test_mean", "test_std", "initial_mean", "initial_std", "system_runs",
           "lm_requests")
CACHE_FILE = "responses.sqlite3"  # in bench/reproduce/; the LM cache keeps it at $OPTIMAS_CACHE_DIR/lm/


def run_all(config: str, methods: list[str], root: Path, cache_dir: Path, mode: str,
            overrides: list[str]) -> list[str]:
    """Run every method; returns the failures (method: last line of FAILED)."""
    env = dict(os.environ, OPTIMAS_CACHE_DIR=str(cache_dir))
    failures = []
    for method in methods:
        run_dir = root / method
        args = ["run", config, f"optimizer={method}", "seed=0", f"run_dir={run_dir}",
                f"lm.cache.mode={mode}", "-q", *METHOD_OVERRIDES.get(method, []), *overrides]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "optimas_cli.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        ok = proc.returncode == 0
        print(f"[reproduce] {method}: {'ok' if ok else 'FAILED'} in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        if not ok:
            failures.append(f"{method}: {failure_reason(run_dir, proc)}")
    return failures


def compare_table(root: Path, out: Path) -> list[dict[str, str]]:
    proc = subprocess.run([sys.executable, "-m", "optimas_cli.cli", "compare", str(root),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"optimas compare failed:\n{proc.stdout}{proc.stderr}")
    with (out / "compare.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def diff_tables(expected: list[dict[str, str]], got: list[dict[str, str]]) -> list[str]:
    """Every cell of CHECKED that differs, as 'method/system column: expected -> got'."""
    key = lambda r: (r["method"], r["system"])  # noqa: E731
    exp, new = {key(r): r for r in expected}, {key(r): r for r in got}
    cells = []
    for k in sorted(set(exp) | set(new)):
        if k not in new:
            cells.append(f"{k[0]}/{k[1]}: row missing from this run")
            continue
        if k not in exp:
            cells.append(f"{k[0]}/{k[1]}: row not in the committed table")
            continue
        for col in CHECKED:
            if exp[k][col] != new[k][col]:
                cells.append(f"{k[0]}/{k[1]} {col}: expected {exp[k][col]!r}, got {new[k][col]!r}")
    return cells


def replay_misses(root: Path) -> list[str]:
    """Every replay miss under `root`, one line each: 'method stage label: example at
    component: error' from each run's failures.jsonl, then miss lines of logs that no
    failure record holds (a miss outside an evaluation or a collection)."""
    out, errors = [], set()
    for path in sorted(root.rglob(FAILURES)):
        method = path.relative_to(root).parts[0]
        for line in path.read_text(errors="replace").splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if REPLAY_MISS in str(r.get("error", "")):
                errors.add(r["error"])
                out.append(f"{method} {r.get('stage')} {r.get('label')}: example "
                           f"{r.get('example_id')} at {r.get('component')}: {r['error']}")
    for log in sorted(root.rglob("*.log")):
        method = log.relative_to(root).parts[0]
        for line in log.read_text(errors="replace").splitlines():
            if REPLAY_MISS in line and not any(e in line for e in errors):
                out.append(f"{method} log {log.name}: {line.strip()}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default="configs/bench/hotpotqa_reproduce.yaml")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--data", default=str(DATA), help="recorded cache + expected table")
    ap.add_argument("--record", action="store_true", help="call the models and write a new record")
    ap.add_argument("--keep", default=None, help="keep the run directories here")
    ap.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    a = ap.parse_args()
    data = Path(a.data).resolve()
    methods = a.methods.split(",")
    work = Path(a.keep).resolve() if a.keep else Path(tempfile.mkdtemp(prefix="optimas-repro-"))
    if work.exists() and a.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    cache.mkdir()
    if a.record:
        failures = run_all(a.config, methods, work / "runs", cache, "on", a.overrides)
        if failures:
            print("[reproduce] recording failed:\n  " + "\n  ".join(failures))
            return 1
        table = compare_table(work / "runs", work / "compare")
        data.mkdir(parents=True, exist_ok=True)
        # one self-contained file: fold the WAL into the database first
        import sqlite3

        conn = sqlite3.connect(cache / "lm" / CACHE_FILE)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.close()
        shutil.copy(cache / "lm" / CACHE_FILE, data / CACHE_FILE)
        for name in ("compare.csv", "compare.md"):
            shutil.copy(work / "compare" / name, data / name.replace("compare", "expected"))
        print(f"[reproduce] recorded {len(table)} rows and "
              f"{(data / CACHE_FILE).stat().st_size / 2**20:.1f} MiB of cache into {data}; "
              "now checking that a replay reproduces them")
        shutil.rmtree(cache)
        cache.mkdir()
    if not (data / CACHE_FILE).exists() or not (data / "expected.csv").exists():
        print(f"[reproduce] no record in {data}: run with --record first")
        return 1
    (cache / "lm").mkdir(parents=True, exist_ok=True)
    shutil.copy(data / CACHE_FILE, cache / "lm" / CACHE_FILE)  # a copy: the record stays untouched
    failures = run_all(a.config, methods, work / "replay", cache, "replay", a.overrides)
    got = compare_table(work / "replay", work / "replay_compare")
    with (data / "expected.csv").open(newline="") as f:
        expected = list(csv.DictReader(f))
    cells = diff_tables(expected, got)
    for line in failures:
        print(f"[reproduce] run failed: {line}")
    misses = replay_misses(work / "replay")
    if misses:
        print(f"[reproduce] {len(misses)} request(s) missing from the record (the runs asked "
              "something new):")
        for m in misses:
            print(f"  {m}")
    if cells:
        print(f"[reproduce] {len(cells)} cell(s) differ from {data / 'expected.csv'}:")
        for c in cells:
            print(f"  {c}")
        return 1
    print(f"[reproduce] all {len(got)} rows x {len(CHECKED)} columns equal the committed table")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
