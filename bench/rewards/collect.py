"""Collect the reward benchmark's rollouts once, resumably; the result is kept in the repo.

    python bench/rewards/collect.py hotpotqa.answer_generator      # one task of tasks.yaml
    python bench/rewards/collect.py --all                            # every task, in order

For each training input of a task (bench/rewards/tasks.yaml), the system as configured runs
up to the component; the component's candidate outputs are the loop's own
(methods/optimas/collect.py: the configured output, temperature samples of it, one output per
other ladder model, the gold answer on the final component), each completed downstream and
scored by the global metric. One JSON line per input goes to
bench/rewards/data/<task>.partial.jsonl as soon as it is done (a killed collection resumes
there; LM replies are cached, so what was asked before is not asked again). When every
input is in, the lines are written, in input order, to <task>.jsonl.gz and the partial
file is removed. A task whose .jsonl.gz exists is not collected again. A partial file is
committed like the finished ones, so that a collection stopped on one machine resumes on
another (the inputs are the training split's, drawn by the task's seeded config); beside
it, <task>.partial.spec.json keeps the task's spec, and a collection whose spec has changed
since stops with an error instead of mixing the two.

A record keeps what a reward model is shown and what it is judged by: the component's
inputs, and per candidate its outputs, its source ("current", "sample:i", "model=...",
"gold"; `also`: other sources that gave the same output), the model that wrote it, and
its global score.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from optimas_cli import config as config_mod  # noqa: E402
from optimas_cli.methods.optimas.collect import CollectContext, collect_example  # noqa: E402
from optimas_cli.runtime import build_runtime  # noqa: E402

TASKS = Path(__file__).with_name("tasks.yaml")
DATA = Path(__file__).with_name("data")
SEED = 0  # the sampling seed of every collection (a task is collected once)


def load_tasks() -> dict[str, dict]:
    return yaml.safe_load(TASKS.read_text())


def data_path(task: str) -> Path:
    return DATA / f"{task}.jsonl.gz"


def read_records(task: str) -> list[dict]:
    """A finished task's records (bench/rewards/data/<task>.jsonl.gz), in input order."""
    with gzip.open(data_path(task), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _runtime(spec: dict):
    overrides = [*spec.get("overrides", []), f"data.train_size={spec['inputs']}",
                 "data.val_size=0", "data.test_size=0", "data.seed=0",
                 "optimizer.budget_system_runs=1000000",
                 "optimizer.collect.num_samples=2", "optimizer.collect.add_gold=true"]
    composed = config_mod.load(ROOT / spec["config"], overrides)
    return build_runtime(composed)


def _model_of(cand: dict, current_model: str | None) -> str | None:
    if cand["source"] == "gold":
        return None
    return cand["values"].get("model", current_model)


def _compact(record: dict, spec: dict, rt) -> dict:
    """What the benchmark keeps of a rollout record (methods/optimas/collect.collect_example)."""
    comp = rt.system.cfg.components[spec["component"]]
    fields = record["fields"]
    current_model = rt.state.get(spec["component"], {}).get("model")
    cands = []
    for c in record["candidates"]:
        cands.append({"source": c["source"], "also": c.get("also", []),
                      "model": _model_of(c, current_model), "outputs": c["outputs"],
                      "score": c["score"]})
    out = {"example_id": record["example_id"], "component": spec["component"],
           "inputs": {k: fields.get(k) for k in comp.inputs}, "candidates": cands}
    if record.get("error"):
        out["error"] = record["error"]
    if record.get("failures"):
        out["failures"] = [{k: v for k, v in f.items() if k != "error"} | {"error": str(f["error"])[:200]}
                           for f in record["failures"]]
    return out


def _spec_path(partial: Path) -> Path:
    return partial.with_name(partial.name.removesuffix(".jsonl") + ".spec.json")


def read_partial(partial: Path, spec: dict) -> dict[str, dict]:
    """The inputs a stopped collection finished, by example id. Beside the partial file,
    <task>.partial.spec.json keeps the task's spec it was collected under; a spec that has
    changed since (tasks.yaml edited) stops the collection rather than mix records of two
    setups."""
    spec_file = _spec_path(partial)
    if spec_file.exists():
        before = json.loads(spec_file.read_text(encoding="utf-8"))
        if before != spec:
            raise SystemExit(f"{partial}: collected under {before}, but tasks.yaml now says "
                             f"{spec}; remove {partial.name} and {spec_file.name} to collect anew")
    done: dict[str, dict] = {}
    if partial.exists():
        for line in partial.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a torn last line of a killed collection
                continue
            done[rec["example_id"]] = rec
    return done


def collect(task: str, spec: dict, workers: int) -> Path:
    final = data_path(task)
    if final.exists():
        print(f"{task}: {final.relative_to(ROOT)} exists; not collected again", flush=True)
        return final
    partial = DATA / f"{task}.partial.jsonl"
    done = read_partial(partial, spec)
    # a new collection (or one from before the spec was kept): this spec from now on
    _spec_path(partial).write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    rt = _runtime(spec)
    examples = rt.splits["train"]
    ctx = CollectContext(system=rt.system, name=spec["component"], state=rt.state,
                         metric=rt.metric, cfg=rt.composed.run.optimizer.collect)
    todo = [e for e in examples if e.id not in done]
    print(f"{task}: {len(done)} of {len(examples)} inputs collected before; {len(todo)} to go",
          flush=True)
    lock = threading.Lock()
    t0 = time.time()
    with open(partial, "a", encoding="utf-8") as f, ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(collect_example, ctx, ex, SEED): ex for ex in todo}
        for n, fut in enumerate(as_completed(futures), 1):
            rec = _compact(fut.result(), spec, rt)
            with lock:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
            done[rec["example_id"]] = rec
            if n % 10 == 0 or n == len(todo):
                rate = (time.time() - t0) / n
                print(f"{task}: {len(done)}/{len(examples)} ({rate:.1f} s per input)", flush=True)
    ordered = [done[e.id] for e in examples]
    tmp = final.with_suffix(".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for rec in ordered:
            gz.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
    tmp.replace(final)
    partial.unlink()
    _spec_path(partial).unlink(missing_ok=True)
    print(f"{task}: wrote {final.relative_to(ROOT)} ({final.stat().st_size // 1024} KiB)", flush=True)
    return final


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tasks", nargs="*", help="task names of tasks.yaml")
    ap.add_argument("--all", action="store_true", help="every task, in the file's order")
    ap.add_argument("--workers", type=int, default=2, help="inputs in flight (2 cores: 2)")
    args = ap.parse_args()
    tasks = load_tasks()
    names = list(tasks) if args.all else args.tasks
    unknown = [n for n in names if n not in tasks]
    if unknown or not names:
        ap.error(f"unknown task(s) {unknown}; tasks.yaml has {sorted(tasks)}")
    for name in names:
        collect(name, tasks[name], args.workers)


if __name__ == "__main__":
    main()
