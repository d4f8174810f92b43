"""`make bench`: every method on one benchmark config, several seeds, one table.

    python bench/run.py                                  # configs/bench/hotpotqa_bench.yaml, 3 seeds
    python bench/run.py --methods none,optimas --seeds 0,1 --root runs/bench_try --no-write

Each (method, seed) is a separate `optimas run CONFIG optimizer=METHOD seed=SEED
run_dir=ROOT/METHOD/seed_SEED` process, all sharing one LM cache, ROOT/lmcache (started
empty, so "LM calls" counts real calls; a later method gets the answers an earlier one
already paid for, hence "LM requests", which does not depend on the order).

A finished run's small files (config.yaml, summary.json with per-question test scores,
history.jsonl, spent.jsonl, DONE) are archived at once into RESULTS/runs/METHOD/seed_SEED,
which is committed: a run archived there is kept, on this machine or a new one, an
unfinished one in ROOT is resumed, so a benchmark goes on across sessions. Then `optimas
compare RESULTS/runs` writes compare.md / compare.csv / compare.png into RESULTS, and the
section between this benchmark's markers in BENCHMARKS.md is rewritten with the table,
the failures, the machine and the exact commands.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# textgrad is left out by default: on the embedded 135M model its backward replies
# degenerate ("The output of the output of ..."), 15-20 s each at 256 tokens, so one seed
# took over 8 minutes without finishing its first step; it ends in TextGradFailure
# (tests/test_baselines.py shows that failure). `--methods ...,textgrad` runs it anyway.
METHODS = ("none", "optimas", "search", "llmselector", "mipro", "gepa")
ARCHIVED = ("config.yaml", "summary.json", "history.jsonl", "spent.jsonl", "DONE")
# Settings of one method that a small shared budget needs (each method's config group
# has its own option keys, so they cannot live in the shared YAML). MIPRO and GEPA
# reserve val_size x (1 + max_candidates) runs to re-score their candidates on our
# evaluator, and MIPRO bootstraps demos on (num_candidates - 1) x train_size runs; with
# these settings more of the budget goes to their own search (MIPRO: 8 trials instead of
# 3 at 100 runs) and the 40-run reproduction budget fits at all.
METHOD_OVERRIDES = {
    "mipro": ["optimizer.options.num_candidates=2", "optimizer.options.max_candidates=1"],
    "gepa": ["optimizer.options.max_candidates=1"],
}


def optimas_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "optimas_cli.cli", *args]


def failure_reason(run_dir: Path, proc: subprocess.CompletedProcess) -> str:
    """The last line of the run's FAILED traceback (or of stderr when it never started)."""
    failed = run_dir / "FAILED"
    text = failed.read_text() if failed.exists() else proc.stderr
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else f"exit {proc.returncode}"


def archive(run_dir: Path, dest: Path) -> None:
    """Copy a finished run's small files (what `optimas compare` reads) to `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ARCHIVED:
        if (run_dir / name).exists():
            shutil.copy(run_dir / name, dest / name)


def run_one(config: Path, method: str, seed: int, root: Path, extra: list[str],
            results: Path) -> dict:
    """Run (or resume, or keep) one method/seed; returns its status and the command."""
    run_dir = root / method / f"seed_{seed}"
    kept = results / "runs" / method / f"seed_{seed}"
    if (kept / "DONE").exists():
        return {"method": method, "seed": seed, "status": "kept", "dir": kept}
    if (run_dir / "DONE").exists():
        archive(run_dir, kept)
        return {"method": method, "seed": seed, "status": "kept", "dir": kept}
    resume = [f"resume={run_dir}"] if (run_dir / "config.yaml").exists() else []
    args = ["run", str(config), *resume, f"optimizer={method}", f"seed={seed}",
            f"run_dir={run_dir}", "-q", *METHOD_OVERRIDES.get(method, []), *extra]
    t0 = time.perf_counter()
    print(f"[bench] {method} seed {seed}: optimas {shlex.join(args)}", flush=True)
    proc = subprocess.run(optimas_cmd(*args), cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, OPTIMAS_CACHE_DIR=str(root / "lmcache")))
    took = time.perf_counter() - t0
    status = "done" if proc.returncode == 0 else "failed"
    reason = "" if proc.returncode == 0 else failure_reason(run_dir, proc)
    if status == "done":
        archive(run_dir, kept)
    print(f"[bench] {method} seed {seed}: {status} in {took:.0f} s {reason}", flush=True)
    return {"method": method, "seed": seed, "status": status, "dir": run_dir, "reason": reason}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def write_section(path: Path, body: str, name: str = "hotpotqa") -> None:
    BEGIN, END = markers(name)
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default="configs/bench/hotpotqa_ladder.yaml")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--root", default=None, help="run directories (default runs/bench/<config stem>)")
    ap.add_argument("--results", default=None,
                    help="archived runs and compare.md/.csv/.png for BENCHMARKS.md "
                         "(default bench/results/<config stem>, the BENCHMARKS.md section's name)")
    ap.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    ap.add_argument("--table-only", action="store_true",
                    help="run nothing: the table and section from the runs archived so far")
    ap.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    a = ap.parse_args()
    stem = Path(a.config).stem
    a.root = a.root or f"runs/bench/{stem}"
    a.results = a.results or f"bench/results/{stem}"
    config, root = (ROOT / a.config).resolve(), (ROOT / a.root).resolve()
    methods, seeds = a.methods.split(","), [int(s) for s in a.seeds.split(",")]
    started = datetime.now()
    t0 = time.perf_counter()
    results_dir = ROOT / a.results
    # seed by seed, so an interrupted benchmark has every method on its first seeds
    results = [] if a.table_only else [run_one(config, m, s, root, a.overrides, results_dir)
                                       for s in seeds for m in methods]
    wall = time.perf_counter() - t0
    out = root / "compare"
    proc = subprocess.run(optimas_cmd("compare", str(results_dir / "runs"), "--out", str(out)),
                          cwd=ROOT, capture_output=True, text=True)
    print(proc.stdout + proc.stderr, flush=True)
    if proc.returncode != 0:
        return proc.returncode
    failed = [r for r in results if r["status"] == "failed"]
    kept = sum(1 for r in results if r["status"] == "kept")
    ran = len(results) - kept
    if a.no_write:
        return 0
    results_dir.mkdir(parents=True, exist_ok=True)
    for name in ("compare.md", "compare.csv", "compare.png"):
        shutil.copy(out / name, results_dir / name)
    table = (out / "compare.md").read_text()
    rel = os.path.relpath(results_dir, ROOT)
    cmd = (f"python bench/run.py --config {a.config} --table-only" if a.table_only else
           f"python bench/run.py --config {a.config} --methods {a.methods} --seeds {a.seeds} "
           f"--root {a.root}" + (" " + " ".join(a.overrides) if a.overrides else ""))
    archived = sorted(str(p.parent.relative_to(results_dir / "runs"))
                      for p in (results_dir / "runs").glob("*/seed_*/DONE"))
    made = (f"{ran} run(s) made in {wall / 60:.0f} min, {kept} kept from an earlier invocation"
            if results else "the table of the runs archived so far")
    lines = [
        f"Made by `make bench` ({cmd}), {started:%Y-%m-%d %H:%M}: {made}; archived: "
        f"{', '.join(archived)}.",
        f"Machine: {machine()}.",
        f"Each run: `OPTIMAS_CACHE_DIR={a.root}/lmcache python -m optimas_cli.cli run "
        f"{a.config} optimizer=METHOD seed=SEED run_dir={a.root}/METHOD/seed_SEED -q`; "
        f"table and plot: `optimas compare {rel}/runs --out {a.root}/compare` "
        f"(copied to `{rel}/`; finished runs archived in `{rel}/runs/`).",
        "",
        table.strip(),
        "",
    ]
    if failed:
        lines.append("Runs that failed (not in the table):")
        lines += [f"- {r['method']} seed {r['seed']}: {r['reason']}" for r in failed]
        lines.append("")
    lines.append(f"![validation score against system runs spent]({rel}/compare.png)")
    write_section(ROOT / "BENCHMARKS.md", "\n".join(lines), name=results_dir.name)
    print(f"[bench] BENCHMARKS.md updated; {len(failed)} failed run(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
