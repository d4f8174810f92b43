"""Memory of the embedded model ladder in one process: RSS and PSS with every model loaded.

    python bench/lm_memory.py                 # instances 2 (the default) and 1
    python bench/lm_memory.py --instances 2

Each setting runs in a fresh process: it sends two concurrent greedy requests to each of the
four embedded models through the engine pool (so a pool of two instances builds both), then
reads /proc/self/smaps_rollup. RSS counts a GGUF mapped by two instances twice; PSS counts
shared file pages once, so it is the memory the process really holds. The optimizer's own
memory (torch, the reward model, data, the retriever's index) comes on top.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LADDER = ["local/smollm2-135m-instruct", "local/gemma3-270m",
          "local/qwen2.5-coder-0.5b-instruct", "local/qwen2.5-coder-1.5b-instruct"]


def measure(instances: int) -> dict[str, float]:
    """In this process: load the ladder with `instances` per model, return its memory."""
    from optimas_cli.lm.base import LMRequest
    from optimas_cli.lm.config import LocalEngineConfig
    from optimas_cli.lm.local import complete_local

    cfg = LocalEngineConfig(instances=instances)
    for model in LADDER:
        calls = [threading.Thread(target=complete_local, args=(
            LMRequest(model=model, prompt=f"Question {i}: what is the capital of France? Answer:",
                      max_tokens=4), cfg)) for i in range(2)]
        for t in calls:
            t.start()
        for t in calls:
            t.join()
    from optimas_cli.heap import smaps_rollup

    m = {k: v / 1024 / 1024 for k, v in smaps_rollup().items()}
    return {"instances": instances, "rss_gib": m["Rss"], "pss_gib": m["Pss"],
            "anon_gib": m["Pss_Anon"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--instances", default="2,1", help="settings to measure, comma-separated")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(measure(a.child)))
        return 0
    print("| lm.local.instances | models loaded | RSS GiB | PSS GiB | anonymous (PSS) GiB |")
    print("|---:|---|---:|---:|---:|")
    for n in (int(x) for x in a.instances.split(",")):
        proc = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True,
                              text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {n} | the four of the ladder | {r['rss_gib']:.2f} | {r['pss_gib']:.2f} | "
              f"{r['anon_gib']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
