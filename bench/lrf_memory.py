"""Memory and time of one reward-model fit (MiniLM backbone + heads), with and without
activation checkpointing, and the RSS left behind before and after `heap.release`.

    python bench/lrf_memory.py                       # both settings, 60 HotpotQA questions
    python bench/lrf_memory.py --questions 30

Each setting runs in a fresh process. The pairs are built from the HotpotQA sample file the
way the answer_generator's rollouts are: inputs are the question and its retrieved
paragraphs (long: each text is cut to reward.max_length tokens, as in a run), the gold
answer is chosen over two wrong answers (other questions' answers). The fit is
`stages.fit.fit_local_rewards` with the default reward config (configs/reward/minilm.yaml),
3 epochs of the backbone, so the peak is a run's first fit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "hotpotqa" / "hotpot_distractor_sample.jsonl"


def status_mib() -> dict[str, float]:
    text = Path("/proc/self/status").read_text()
    return {k: int(text.split(f"{k}:")[1].split()[0]) / 1024 for k in ("VmRSS", "VmHWM", "RssAnon")}


def hotpot_pairs(n: int) -> list:
    from optimas_cli.rewards import PreferencePair

    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:n]]
    pairs = []
    for i, r in enumerate(rows):
        context = "\n".join(f"{title}: {''.join(sents)}" for title, sents in r["context"][:5])
        inputs = {"question": r["question"], "retrieve_content": context, "hints": ""}
        for j in (1, 2):
            wrong = rows[(i + j) % len(rows)]["answer"]
            pairs.append(PreferencePair("answer_generator", inputs, {"answer": r["answer"]},
                                        {"answer": wrong}, 1.0, 0.0, r["_id"]))
    return pairs


def measure(checkpointing: bool, questions: int) -> dict[str, float]:
    from optimas_cli import heap
    from optimas_cli.methods.optimas import fit as fit_mod
    from optimas_cli.rewards import LocalRewardModel
    from optimas_cli.schema import RewardConfig

    cfg = RewardConfig(gradient_checkpointing=checkpointing)
    pairs = hotpot_pairs(questions)
    model = LocalRewardModel({"answer_generator": "Answers the question from the context."},
                             backbone=cfg.backbone, max_length=cfg.max_length, seed=0)
    before = status_mib()
    release, fit_mod.heap.release = heap.release, lambda: False  # measure before it runs
    t0 = time.perf_counter()
    fit_mod.fit_local_rewards(model, pairs, cfg, seed=0)
    seconds = time.perf_counter() - t0
    after = status_mib()
    release()
    released = status_mib()
    return {"pairs": len(pairs), "seconds": seconds, "rss_before": before["VmRSS"],
            "peak": after["VmHWM"], "rss_after_fit": after["VmRSS"],
            "rss_after_release": released["VmRSS"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--child", choices=["on", "off"], default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(measure(a.child == "on", a.questions)))
        return 0
    print("| reward.gradient_checkpointing | pairs | fit s | RSS before MiB | peak RSS MiB | "
          "RSS after the fit MiB | after heap.release MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for setting in ("off", "on"):
        proc = subprocess.run([sys.executable, __file__, "--child", setting,
                               "--questions", str(a.questions)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {setting} | {r['pairs']} | {r['seconds']:.0f} | {r['rss_before']:.0f} | "
              f"{r['peak']:.0f} | {r['rss_after_fit']:.0f} | {r['rss_after_release']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
