"""HotpotQA evaluation throughput through the real CLI: sequential vs concurrent, cold vs warm cache.

    python bench/hotpotqa_eval.py --n 20

Each setting is a fresh `optimas evaluate` process; its peak RSS is read from the
kernel's accounting of that child (os.wait4), so model loading is included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "hotpotqa.yaml"


def evaluate_once(n: int, workers: int, cache: Path, root: Path) -> dict[str, Any]:
    """One `optimas evaluate` run; wall time, peak RSS, model calls and score."""
    env = dict(os.environ, OPTIMAS_CACHE_DIR=str(cache))
    cmd = [sys.executable, "-m", "optimas_cli.cli", "evaluate", str(CONFIG), f"data.test_size={n}",
           f"eval.workers={workers}", f"run_root={root}", "-q"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    run = max((root / "hotpotqa").iterdir(), key=lambda p: p.stat().st_mtime)
    metrics = json.loads((run / "metrics.json").read_text())
    total = metrics["lm"]["total"]
    return {"examples": n, "workers": workers, "wall_s": round(wall, 2),
            "examples_per_s": round(n / wall, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "model_calls": total["calls"], "cache_hits": total["cache_hits"],
            "f1": round(metrics["mean"], 4)}


def run(n: int) -> list[dict[str, Any]]:
    """sequential cold, concurrent cold, concurrent warm (same cache as the concurrent cold)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for label, workers, cache in (("sequential, cold cache", 1, "seq"),
                                      ("concurrent, cold cache", 4, "conc"),
                                      ("concurrent, warm cache", 4, "conc")):
            print(f"[bench] hotpotqa {label} ...", file=sys.stderr, flush=True)
            rows.append({"setting": label, **evaluate_once(n, workers, tmp_path / cache,
                                                           tmp_path / "runs")})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| setting | examples | workers | wall s | examples/s | peak RSS MiB | model calls "
            "| cache hits | F1 |\n|---|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *(f"| {r['setting']} | {r['examples']} | {r['workers']} | "
                              f"{r['wall_s']} | {r['examples_per_s']} | {r['peak_rss_mib']} | "
                              f"{r['model_calls']} | {r['cache_hits']} | {r['f1']} |" for r in rows)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="test examples")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    rows = run(args.n)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
