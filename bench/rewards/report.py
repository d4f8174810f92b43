"""The reward benchmark's tables: the data card and the cross-validated results, in BENCHMARKS.md.

    python bench/rewards/report.py bench/rewards/results.json [--write]

Prints markdown; `--write` replaces the part of BENCHMARKS.md between the markers
`<!-- bench-rewards:start -->` and `<!-- bench-rewards:end -->`, naming the machine, the
commit and the command.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "rewards"))

from collect import read_records  # noqa: E402
from features import load  # noqa: E402

START, END = "<!-- bench-rewards:start -->", "<!-- bench-rewards:end -->"


def card(task: str) -> dict[str, object]:
    """What a task's data holds (the data card)."""
    recs = read_records(task)
    n_cands, spread, differ, sampled_pairs, gold_pairs, failed = [], [], 0, 0, 0, 0
    models: dict[str, int] = {}
    for r in recs:
        cands = r["candidates"]
        own = [c for c in cands if c["source"] != "gold"]
        n_cands.append(len(own))
        failed += bool(r.get("error"))
        scores = [c["score"] for c in own]
        if scores:
            spread.append(max(scores) - min(scores))
            differ += len(set(scores)) > 1
        for c in own:
            models[c["model"] or "?"] = models.get(c["model"] or "?", 0) + 1
        for i, a in enumerate(cands):
            for b in cands[i + 1:]:
                if a["score"] != b["score"]:
                    if "gold" in (a["source"], b["source"]):
                        gold_pairs += 1
                    else:
                        sampled_pairs += 1
    return {"task": task, "inputs": len(recs), "failed_inputs": failed,
            "candidates_per_input": float(np.mean(n_cands)),
            "score_spread": float(np.mean(spread)) if spread else 0.0,
            "inputs_differ": differ / len(recs), "sampled_pairs": sampled_pairs,
            "gold_pairs": gold_pairs, "models": models}


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def feature_costs(task: str) -> list[str]:
    out = []
    for block in ["minilm", "lexical", "qwen05", "qwen15"]:
        try:
            meta = load(task, block)[1]
        except FileNotFoundError:
            continue
        out.append(f"{block} {meta['seconds'] / meta['inputs']:.2f} s/input, "
                   f"peak RSS {meta['peak_rss_mb'] / 1024:.1f} GiB")
    return out


def task_table(res: dict) -> list[str]:
    lines = [f"**{res['task']}** ({res['inputs']} inputs; features: "
             f"{'; '.join(feature_costs(res['task']))})", "",
             "| design | pairwise acc. [95%] | Spearman | pick / random / oracle / current | "
             "gap recovered [95%] | pick − best static [95%] | beats every control | fit s/fold |",
             "|---|---|---|---|---|---|---|---|"]
    rows = sorted(res["designs"].items(), key=lambda kv: (not kv[1]["control"], -kv[1]["accuracy"]))
    for name, d in rows:
        beats = "(control)" if d["control"] else ("yes" if d["beats_controls"] else "no")
        sp = f"{d['spearman']:.2f}" if d["spearman"] is not None else "-"
        cur = f"{d['current']:.3f}" if d["current"] is not None else "-"
        static = (f"{d['pick_minus_static']:+.3f} {_ci(d['pick_minus_static_ci'])} (static "
                  f"{d['static']:.3f})" if "static" in d else "-")
        lines.append(
            f"| {name} | {d['accuracy']:.3f} {_ci(d['accuracy_ci'])} | {sp} | "
            f"{d['pick']:.3f} / {d['random']:.3f} / {d['oracle']:.3f} / {cur} | "
            f"{d['recovered']:.2f} {_ci(d['recovered_ci'])} | {static} | {beats} | "
            f"{d['fit_seconds_per_fold']:.1f} |")
    curves = {n: d["curve"] for n, d in res["designs"].items() if d.get("curve")}
    if curves:
        sizes = list(next(iter(curves.values())))
        lines += ["", "Learning curve (pairwise accuracy on held-out sampled pairs, by training "
                  "inputs per fold):", "",
                  "| design | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
        for n, c in curves.items():
            lines.append(f"| {n} | " + " | ".join(f"{c[s]:.3f}" for s in sizes) + " |")
    return lines


def render(results: list[dict]) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    lines = [f"Machine: {platform.machine()}, {_cores()} cores, Python {platform.python_version()}; "
             f"commit {commit}; `make bench-rewards`.", "",
             "Data (bench/rewards/data/, collected once by `bench/rewards/collect.py`):", "",
             "| task | inputs | own candidates / input | mean score spread | inputs whose "
             "candidates differ | sampled pairs | gold pairs |", "|---|---|---|---|---|---|---|"]
    for res in results:
        c = card(res["task"])
        lines.append(f"| {c['task']} | {c['inputs']} | {c['candidates_per_input']:.1f} | "
                     f"{c['score_spread']:.2f} | {c['inputs_differ']:.0%} | {c['sampled_pairs']} | "
                     f"{c['gold_pairs']} |")
    for res in results:
        lines += ["", *task_table(res)]
    return "\n".join(lines) + "\n"


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    text = render(json.loads(args.results.read_text()))
    print(text)
    if args.write:
        bm = ROOT / "BENCHMARKS.md"
        doc = bm.read_text()
        if START not in doc:
            sys.exit(f"{bm}: no {START} marker")
        head, rest = doc.split(START, 1)
        _, tail = rest.split(END, 1)
        bm.write_text(head + START + "\n" + text + END + tail)


if __name__ == "__main__":
    main()
