"""Best-of-n at inference against the best static choice, at equal inference cost (issue #28).

    python bench/rewards/best_of_n.py --measure TASK [TASK ...]   # CPU-s per call, uncached
    python bench/rewards/best_of_n.py [--write]                    # the table (BENCHMARKS.md)

What only a local reward can do at inference: draw n outputs of the configured component
for an input and keep the one it ranks first. From the kept rollouts (per input, the
configured output and its temperature samples are n = 1..3 draws of the configured model),
with each design's rewards cross-validated by input as in evaluate.py:
  best-of-n  the global score of the draw the reward ranks first among the first n draws
             (a tie: the mean of the tied); `oracle` ranks by the score itself
  cost       n calls of the configured model and the reward on n candidates, in CPU-seconds
             per input
  per-input model  the loop's `choice_mode: per_input` over the model variable: one call per
             ladder model, the reward picks (graph.System._choose_per_input at temperature
             -> 0); its cost is every model's call and the reward on each output
against each single source (the configured output, each other ladder model's output) at its
cost of one call, and against the best of those that cost no more than best-of-n ("at equal
cost"; chosen on the other folds, as evaluate.best_static is): the paired difference per
input with its 95% bootstrap interval.

The costs are measured (`--measure`, written to call_costs.json): per ladder model, the
process CPU time of the component's call on the first inputs of the task, uncached (a fresh
LM cache), one llama.cpp thread, after a warm-up call; per reward feature block, the CPU time
of computing it for those inputs' candidates. CPU time, not wall time, so a measurement
beside other jobs is still roughly right (shared caches inflate it somewhat).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "rewards"))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collect import data_path, load_tasks, read_records  # noqa: E402
from evaluate import FOLDS, Task, _boot, cross_validate, folds_of  # noqa: E402
from sections import code_line, commit, write_section  # noqa: E402

COSTS = Path(__file__).with_name("call_costs.json")
MEASURED_INPUTS = 6
DRAWS = ["current", "sample:1", "sample:2"]  # the configured model's draws, in order
BLOCK_OF = {"minilm_head": "minilm"}  # a design's feature block (qwen15_* read qwen15)


def block_of(design: str) -> str | None:
    """The feature block a design computes at inference (None: free, e.g. the oracle)."""
    if design in BLOCK_OF:
        return BLOCK_OF[design]
    return design.split("_", 1)[0] if design.startswith("qwen") else None


# ----------------------------------------------------------------------------- measuring


def measure(task: str) -> dict[str, object]:
    """CPU-seconds of one call of the component per ladder model, and of each reward feature
    block per candidate, on the task's first MEASURED_INPUTS inputs (uncached)."""
    os.environ["OPTIMAS_CACHE_DIR"] = tempfile.mkdtemp(prefix="optimas-cost-")
    from collect import _runtime
    from features import LLM_BLOCKS, description, minilm

    spec = load_tasks()[task]
    records = read_records(task)[: MEASURED_INPUTS + 1]
    rt = _runtime(spec | {"overrides": [*spec.get("overrides", []), "lm.local.instances=1",
                                        "lm.local.n_threads=1"]})
    name = spec["component"]
    current = dict(rt.state.get(name, {}))
    # every ladder model that wrote a candidate (a repeated output names its sources in `also`)
    models = sorted({current["model"], *(s.split("=", 1)[1] for r in read_records(task)
                                         for c in r["candidates"] for s in [c["source"], *c["also"]]
                                         if s.startswith("model="))}) if "model" in current else [None]
    calls: dict[str, float] = {}
    for m in models:
        values = current if m is None else {**current, "model": m}
        rt.system.run_step(name, records[-1]["inputs"], rt.state, values=values)  # warm-up
        t0 = time.process_time()
        for r in records[:MEASURED_INPUTS]:
            rt.system.run_step(name, r["inputs"], rt.state, values=values)
        key = m or current.get("model", "configured")
        calls[key] = (time.process_time() - t0) / MEASURED_INPUTS
        print(f"{task} {key}: {calls[key]:.2f} CPU-s per call", flush=True)
    desc = description(task)
    sample = records[:MEASURED_INPUTS]
    n_cands = sum(len(r["candidates"]) for r in sample)
    blocks: dict[str, float] = {}
    t0 = time.process_time()
    minilm(sample, desc)
    blocks["minilm"] = (time.process_time() - t0) / n_cands
    from optimas_cli.rewards.llm_features import LlamaFeaturizer

    feat = LlamaFeaturizer(LLM_BLOCKS["qwen15"], n_threads=1)
    feat.features(desc, records[-1]["inputs"], [c["outputs"] for c in records[-1]["candidates"]])
    t0 = time.process_time()
    for r in sample:
        feat.features(desc, r["inputs"], [c["outputs"] for c in r["candidates"]])
    blocks["qwen15"] = (time.process_time() - t0) / n_cands
    print(f"{task} rewards: {blocks} CPU-s per candidate", flush=True)
    return {"calls": calls, "reward_per_candidate": blocks, "inputs": MEASURED_INPUTS,
            "configured": current.get("model")}


# ----------------------------------------------------------------------------- scoring


def draws_of(task: Task, rec: int, sources: list[str] = DRAWS) -> list[int]:
    """Candidate indices of input `rec` for the given sources, in their order (a source that
    repeated an earlier output is the same candidate again)."""
    out = []
    for src in sources:
        ks = [k for k in task.by_rec[rec] if src in task.sources[k]]
        if ks:
            out.append(ks[0])
    return out


def best_of(task: Task, r: np.ndarray, n: int, sources: list[str] = DRAWS) -> np.ndarray:
    """Per input (sorted), the score of the candidate `r` ranks first among those of the
    first n sources (a tie: the mean of the tied)."""
    out = []
    for rec in sorted(task.by_rec):
        ks = np.array(draws_of(task, rec, sources)[:n])
        if not len(ks):
            out.append(np.nan)
            continue
        top = r[ks] >= r[ks].max() - 1e-9
        out.append(float(task.score[ks][top].mean()))
    return np.array(out)


def source_scores(task: Task) -> dict[str, np.ndarray]:
    """Per single source (the configured output, each other model's), its score per input."""
    names = sorted({s for k in range(len(task.score)) if not task.gold[k] for s in task.sources[k]
                    if s == "current" or s.startswith("model=")})
    out = {}
    for s in names:
        col = []
        for rec in sorted(task.by_rec):
            ks = [k for k in task.by_rec[rec] if s in task.sources[k]]
            col.append(task.score[ks[0]] if ks else np.nan)
        out[s] = np.array(col)
    return out


def static_within(task: Task, sources: dict[str, np.ndarray], cost: dict[str, float],
                  budget: float) -> tuple[np.ndarray, list[str]]:
    """Per input, the score of the single source that costs no more than `budget` and scored
    best on the other folds; and the sources chosen per fold."""
    recs = sorted(task.by_rec)
    out = np.full(len(recs), np.nan)
    chosen = []
    for f, held in enumerate(folds_of(task)):
        train = [recs.index(x) for g, fold in enumerate(folds_of(task)) if g != f for x in fold]
        ok = [s for s in sources if cost[s] <= budget + 1e-9]
        best = max(ok, key=lambda s: np.nanmean(sources[s][train]))
        chosen.append(best)
        for rec in held:
            out[recs.index(rec)] = sources[best][recs.index(rec)]
    return out, chosen


def source_cost(src: str, costs: dict[str, object]) -> float:
    model = costs["configured"] if src == "current" else src.split("=", 1)[1]
    return costs["calls"][model or "configured"]


def evaluate_task(name: str, designs: list[str], costs: dict[str, object]) -> dict[str, object]:
    from designs import designs as all_designs

    task = Task(name)
    scorers = all_designs(task)
    return evaluate(task, {d: scorers[d] for d in designs}, costs)


def evaluate(task: Task, scorers: dict, costs: dict[str, object]) -> dict[str, object]:
    """Best-of-n and the per-input model choice of each scorer (and the oracle), each against
    the best single source at no more cost."""
    sources = source_scores(task)
    cost = {s: source_cost(s, costs) for s in sources}
    call = cost["current"]
    res = {"task": task.name, "inputs": len(task.records), "sources": {
        s: {"score": float(np.nanmean(v)), "cpu_s": cost[s]} for s, v in sources.items()},
        "draws_per_input": float(np.mean([len({*draws_of(task, r)}) for r in task.by_rec])),
        "designs": {}}
    for d in ["oracle", *scorers]:
        r = task.score.copy() if d == "oracle" else cross_validate(task, scorers[d])[0]
        per_cand = 0.0 if block_of(d) is None else costs["reward_per_candidate"][block_of(d)]
        rows = {}
        models = sorted(sources)  # the per-input choice: one call per model, the reward picks
        for n in ("1", "2", "3", "per-input model"):
            if n == "per-input model":
                if len(models) < 2:
                    continue
                picked = best_of(task, r, len(models), models)
                budget = sum(cost.values()) + len(models) * per_cand
            else:
                picked = best_of(task, r, int(n))
                budget = int(n) * (call + (per_cand if n != "1" else 0.0))
            static, chosen = static_within(task, sources, cost, budget)
            diff = picked - static
            ok = ~np.isnan(diff)
            rows[n] = {"score": float(np.nanmean(picked)), "cpu_s": budget,
                       "static": float(np.nanmean(static)), "static_sources": chosen,
                       "minus_static": float(diff[ok].mean()),
                       "minus_static_ci": _boot(lambda ix, d=diff[ok]: d[ix].mean(), int(ok.sum()))}
        res["designs"][d] = rows
    return res


# ----------------------------------------------------------------------------- report


def render(results: list[dict], sha: str) -> str:
    lines = [code_line(sha), f"Made by `python bench/rewards/best_of_n.py --write` "
             f"(costs: `--measure`, bench/rewards/call_costs.json). CPU-s per input; "
             f"\"static at equal cost\": the single source best on the other folds among those "
             f"costing no more than best-of-n ({FOLDS} folds).", ""]
    for res in results:
        src = ", ".join(f"{s.removeprefix('model=local/')} {v['score']:.3f} ({v['cpu_s']:.1f} s)"
                        for s, v in sorted(res["sources"].items(), key=lambda kv: kv[1]["cpu_s"]))
        lines += [f"**{res['task']}** ({res['inputs']} inputs, {res['draws_per_input']:.1f} distinct "
                  f"draws of the configured model per input). Single sources: {src}.", "",
                  "| reward | n | best-of-n | CPU-s / input | static at equal cost | "
                  "best-of-n − static [95%] |", "|---|---:|---:|---:|---:|---:|"]
        for d, rows in res["designs"].items():
            for n, row in rows.items():
                lo, hi = row["minus_static_ci"]
                srcs = sorted({s.removeprefix("model=local/") for s in row["static_sources"]})
                lines.append(f"| {d} | {n} | {row['score']:.3f} | {row['cpu_s']:.1f} | "
                             f"{row['static']:.3f} ({', '.join(srcs)}) | "
                             f"{row['minus_static']:+.3f} [{lo:+.3f}, {hi:+.3f}] |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tasks", nargs="*", help="default: every task with data and measured costs")
    ap.add_argument("--measure", action="store_true", help="measure the tasks' costs (CPU)")
    ap.add_argument("--designs", default="minilm_head,qwen15_judge,qwen15_judge+writer,qwen15_scalars+lexical")
    ap.add_argument("--write", action="store_true", help="the table into BENCHMARKS.md")
    args = ap.parse_args()
    costs = json.loads(COSTS.read_text()) if COSTS.exists() else {}
    if args.measure:
        for t in args.tasks:
            costs[t] = measure(t)
            COSTS.write_text(json.dumps(costs, indent=1, sort_keys=True) + "\n")
        return
    tasks = args.tasks or [t for t in load_tasks() if data_path(t).exists() and t in costs]
    missing = [t for t in tasks if t not in costs]
    if missing:
        ap.error(f"no measured costs for {missing}: run --measure {' '.join(missing)} first")
    results = [evaluate_task(t, args.designs.split(","), costs[t]) for t in tasks]
    text = render(results, commit())
    print(text)
    Path(__file__).with_name("best_of_n.json").write_text(json.dumps(results, indent=1) + "\n")
    if args.write:
        write_section(ROOT / "BENCHMARKS.md", text, "best-of-n")

if __name__ == "__main__":
    main()
