"""Sandbox overhead per execution: a sandboxed `python -c` against a bare one.

    python bench/sandbox_overhead.py            # 30 runs of each, after 3 warm-up runs
    python bench/sandbox_overhead.py --runs 100 --code "import numpy"

Every setting runs the same tiny program, one run at a time, the settings taking turns;
the table gives the median and 90th percentile of wall time per run, and the median
overhead over bare.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimas_cli.sandbox import Sandbox  # noqa: E402


def timed(settings: dict, runs: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per run of each setting, interleaved round by round so that a change in
    the machine's load falls on every setting alike."""
    out: dict[str, list[float]] = {name: [] for name in settings}
    for n in range(warmup + runs):
        for name, fn in settings.items():
            t0 = time.perf_counter()
            fn()
            if n >= warmup:
                out[name].append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--code", default="print(1)")
    args = ap.parse_args()

    def bare():
        subprocess.run([sys.executable, "-c", args.code], check=True, capture_output=True)

    settings = {"bare python -c": bare}
    for mode in ("bwrap", "rlimits"):
        box = Sandbox(mode=mode)  # bwrap raises where bubblewrap cannot run
        if box.resolved != mode:
            continue

        def sandboxed(box=box):
            r = box.run({}, ["python", "-c", args.code])
            assert r.ok, r

        settings[f"sandbox, {mode} mode"] = sandboxed
    rows = timed(settings, args.runs)
    base = statistics.median(rows["bare python -c"])
    print(f"`{args.code}`, {args.runs} runs each, one at a time, interleaved")
    print("| setting | median ms | p90 ms | overhead ms (median) |\n|---|---:|---:|---:|")
    for name, times in rows.items():
        ms = sorted(t * 1000 for t in times)
        med = statistics.median(ms)
        p90 = ms[int(0.9 * (len(ms) - 1))]
        print(f"| {name} | {med:.1f} | {p90:.1f} | {med - base * 1000:+.1f} |")


if __name__ == "__main__":
    main()
