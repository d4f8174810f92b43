"""Evaluation throughput: the embedded model in process, behind one server, and behind two
servers balanced by lm.deployments (litellm's Router). BENCHMARKS.md, "LM calls over
several servers".

    python bench/served_throughput.py                 # 24 HotpotQA questions, SmolLM2
    python bench/served_throughput.py --questions 40 --no-write

Every setting evaluates the same questions of configs/hotpotqa.yaml's test split with the
same model (SmolLM2 135M), the same prompts (completion documents) and the same
parallelism (eval.workers=4), each on its own empty LM cache, one after another:
- in process: lm.local.instances=2, one thread each (two llama.cpp instances);
- one server: llama-cpp-python's server, one thread, as openai/smollm2 through lm.api_base;
- two servers: two such servers, one thread each, as lm.deployments with max_parallel 1.
Run it on an otherwise idle machine: the table gives questions per minute and the wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lm"))  # the servers the tests start

from llama_servers import llama_server  # noqa: E402
from sections import machine, write_section  # noqa: E402 - bench/sections.py

MODEL = "openai/smollm2"
KEY_ENV = "SERVED_BENCH_KEY"


def served(*bases: str) -> list[str]:
    common = [f"lm.model={MODEL}", f"lm.choices=[{MODEL}]", f"lm.api_key_env={KEY_ENV}"]
    if len(bases) == 1:
        return [*common, f"lm.api_base={bases[0]}"]
    servers = ", ".join(f"{{api_base: '{b}', max_parallel: 1}}" for b in bases)
    return [*common, f"+lm.deployments={{{MODEL}: [{servers}]}}"]


def evaluate(overrides: list[str], questions: int, tmp: Path, name: str) -> dict:
    """One `optimas evaluate` on its own empty cache; wall seconds and the metrics."""
    run_dir = tmp / name
    env = dict(os.environ, OPTIMAS_CACHE_DIR=str(tmp / f"cache-{name}"), **{KEY_ENV: "none"})
    argv = [sys.executable, "-m", "optimas_cli.cli", "evaluate", "configs/hotpotqa.yaml", "-q",
            f"run_dir={run_dir}", f"data.test_size={questions}", "eval.workers=4",
            "lm.prompt_style=completion", *overrides]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"seconds": seconds, "mean": metrics["mean"], "failed": metrics["failed"],
            "calls": metrics["lm"]["total"]["calls"],
            "by_deployment": metrics["lm"].get("by_deployment", {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=24)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows["in process (2 llama.cpp instances x 1 thread)"] = evaluate(
            ["lm.local.instances=2", "lm.local.n_threads=1"], args.questions, tmp, "local")
        with contextlib.ExitStack() as stack:
            a = stack.enter_context(llama_server(tmp))
            rows["one server (1 thread)"] = evaluate(served(a.base), args.questions, tmp, "one")
            b = stack.enter_context(llama_server(tmp))
            rows["two servers (1 thread each), lm.deployments"] = evaluate(
                served(a.base, b.base), args.questions, tmp, "two")
    lines = [f"`python bench/served_throughput.py --questions {args.questions}`: HotpotQA test "
             f"questions, SmolLM2 135M, completion prompts, eval.workers=4, each setting on its "
             f"own empty LM cache, run one after another. Machine: {machine()}.", "",
             "| setting | questions/min | wall s | LM calls | mean F1 | failed | calls per server |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in rows.items():
        per = "; ".join(f"{row['calls']}" for d in r["by_deployment"].values()
                        for row in d.values())
        lines.append(f"| {name} | {60 * args.questions / r['seconds']:.1f} | {r['seconds']:.0f} "
                     f"| {r['calls']} | {r['mean']:.3f} | {r['failed']} | {per} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", body, "served")
    return 0


if __name__ == "__main__":
    sys.exit(main())
