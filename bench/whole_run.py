"""Time one whole `optimas run` as a new user meets it: a fresh LM cache, wall time, memory.

    python bench/whole_run.py --out runs/measure/default configs/hotpotqa.yaml [overrides...]

The run gets an empty LM cache (`lm.cache.dir` under OUT), so every answer is generated.
While it runs, the child's RSS and PSS are read from /proc every few seconds: RSS counts a
GGUF mapped by two llama.cpp instances twice, PSS once (BENCHMARKS.md, "Memory of the
ladder"). Written to OUT/whole_run.json: wall seconds, CPU seconds, peak RSS (the kernel's
ru_maxrss of the child) and sampled peak RSS / PSS / anonymous PSS in MiB, and the run's
test scores with the paired difference to the initial system.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimas_cli.heap import smaps_rollup  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="directory for the run and the record")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between memory samples")
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir, cache = args.out / "run", args.out / "lm_cache"
    if run_dir.exists() or cache.exists():
        sys.exit(f"{args.out} holds an earlier measurement: give an empty --out")
    cmd = [sys.executable, "-m", "optimas_cli.cli", "run", args.config, f"run_dir={run_dir}",
           f"lm.cache.dir={cache}", "-q", *args.overrides]
    t0 = time.monotonic()
    peak = {"Rss": 0, "Pss": 0, "Pss_Anon": 0}
    with open(args.out / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        while proc.poll() is None:
            now = smaps_rollup(proc.pid)
            for k in peak:
                peak[k] = max(peak[k], now.get(k, 0))
            time.sleep(args.every)
    wall = time.monotonic() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {"command": " ".join(["optimas run", args.config, *args.overrides]),
              "returncode": proc.returncode, "wall_s": round(wall, 1),
              "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
              "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
              "sampled_peak_mib": {k: round(v / 1024, 1) for k, v in peak.items()}}
    summary = run_dir / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        record |= {"test_initial": s["test"]["initial"]["mean"],
                   "test_final": s["test"]["final"]["mean"],
                   "test_paired": s.get("test_paired")}
        # the optimization's spend and the test's, apart (summary.json, optimas_cli/budget.py)
        record |= {k: s.get(k) for k in ("system_runs", "lm_calls", "test_system_runs",
                                         "test_lm_calls")}
    (args.out / "whole_run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
