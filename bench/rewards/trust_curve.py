"""How many collected inputs before the loop may trust the zero-shot judge (reward=judge)?

    python bench/rewards/trust_curve.py [--tasks a,b] [--draws 200] [--write]

For each task with the judge's features cached (features.py --block qwen15), draw N inputs
of the kept rollouts at random (N = 4, 8, 16, 32, 64, 128; `--draws` times each), build the
pairs the loop builds from them (methods/optimas/collect.pairs_from_record: every two
candidates whose scores differ, the gold answer included, each side's writing model named),
score them with the judge's
cached log-odds, and run the loop's own trust rule (optimas_cli/rewards/trust.py, a
zero-shot model: every own-output pair held out, the output prior of the other inputs). The
table: the share of draws in which the judge is trusted, and the mean number of own-output
pairs, per N. A loop collection is 4 inputs (HotpotQA's default, `optimizer.collect`),
2 rounds at most before the adaptive rounds stop.

Written to bench/rewards/trust_curve.json and, with --write, into BENCHMARKS.md between the
bench:reward-trust markers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "rewards"))
sys.path.insert(0, str(ROOT / "bench"))

from collect import load_tasks, read_records  # noqa: E402
from features import candidates, load  # noqa: E402
from sections import code_line, commit, machine, write_section  # noqa: E402

from optimas_cli.rewards import PreferencePair  # noqa: E402
from optimas_cli.rewards.trust import component_trust  # noqa: E402

SIZES = [4, 8, 16, 32, 64, 128]


class CachedJudge:
    """The judge's log-odds, read from the benchmark's cache: what component_trust asks of a
    reward model (score_items, trains)."""

    trains = False

    def __init__(self, scores: dict[tuple[int, str], float]) -> None:
        self.scores = scores

    def score_items(self, items):
        return [self.scores[(i["input"], json.dumps(o, sort_keys=True))] for _, i, o in items]


def pairs_of(records: list[dict], idx: list[int]) -> list[PreferencePair]:
    """collect.pairs_from_record's pairs, with an input reduced to its record index."""
    out = []
    for i in idx:
        rec = records[i]
        for a, b in itertools.combinations(rec["candidates"], 2):
            if a["score"] == b["score"]:
                continue
            win, lose = (a, b) if a["score"] > b["score"] else (b, a)
            out.append(PreferencePair("c", {"input": i}, win["outputs"], lose["outputs"],
                                      win["score"], lose["score"], str(i),
                                      gold="gold" in (win["source"], lose["source"]),
                                      chosen_writer=win.get("model") or "gold",
                                      rejected_writer=lose.get("model") or "gold"))
    return out


def curve(task: str, draws: int) -> dict[str, object]:
    records = read_records(task)
    judge = load(task, "qwen15")[0]["judge"]
    scores = {(i, json.dumps(records[i]["candidates"][j]["outputs"], sort_keys=True)): float(s)
              for (i, j), s in zip(candidates(records), judge, strict=True)}
    model = CachedJudge(scores)
    rng = random.Random(0)
    rows = {}
    for n in [s for s in SIZES if s <= len(records)] + [len(records)]:
        trusted, own = [], []
        for _ in range(draws if n < len(records) else 1):
            t = component_trust(model, "c", pairs_of(records, rng.sample(range(len(records)), n)))
            trusted.append(bool(t["trusted"]))
            own.append(t["n_pairs"])
        rows[str(n)] = {"trusted": float(np.mean(trusted)), "own_pairs": float(np.mean(own)),
                        "draws": len(trusted)}
        print(f"{task} N={n}: trusted in {rows[str(n)]['trusted']:.2f} of {len(trusted)} draws, "
              f"{rows[str(n)]['own_pairs']:.1f} own pairs", flush=True)
    return {"task": task, "inputs": len(records), "sizes": rows}


def table(results: list[dict]) -> str:
    sizes = sorted({int(n) for r in results for n in r["sizes"]})
    head = "| component | " + " | ".join(f"N={n}" for n in sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(sizes)]
    for r in results:
        cells = [(f"{r['sizes'][str(n)]['trusted']:.2f} ({r['sizes'][str(n)]['own_pairs']:.0f})"
                  if str(n) in r["sizes"] else "-") for n in sizes]
        lines.append(f"| {r['task']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    tasks = [t for t in a.tasks.split(",") if t] or [
        t for t in load_tasks() if (ROOT / "bench/rewards/data" / f"{t}.jsonl.gz").exists()]
    results = []
    for t in tasks:
        try:
            load(t, "qwen15")
        except FileNotFoundError:
            print(f"{t}: no qwen15 features cached (features.py {t} --block qwen15)")
            continue
        results.append(curve(t, a.draws))
    out = ROOT / "bench/rewards/trust_curve.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    if a.write:
        body = "\n".join([
            code_line(commit()),
            f"Made by `python bench/rewards/trust_curve.py --draws {a.draws} --write` on "
            f"{machine()}: per collection size N (inputs drawn from the kept rollouts), the "
            "share of draws in which the loop's trust rule lets it use the zero-shot Qwen 1.5B "
            "judge (reward=judge), and in brackets the mean number of pairs of the "
            "component's own outputs it is judged on.", "", table(results)])
        write_section(ROOT / "BENCHMARKS.md", body, "reward-trust")


if __name__ == "__main__":
    main()
