"""The reliability figures of BENCHMARKS.md (section Reliability), from the tests themselves.

Runs the reliability tests with OPTIMAS_RELIABILITY_LOG set, so each test appends what it
injected and how the run ended (tests/reliability_log.py), then rewrites the block between
<!-- bench:reliability:begin/end --> with the tables, the machine and the command. A failing
test writes nothing and exits 1. Run it with a Python that has the `ray` extra for the Ray
row (otherwise that test is skipped and the table says so):

    make reliability   (or .venv/bin/python bench/reliability.py; about 6 min on 2 busy cores)
    .venv/bin/python bench/reliability.py --dry-run  # print the block, leave BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

from sections import machine, write_section  # bench/sections.py: the machine line and the markers

ROOT = Path(__file__).resolve().parents[1]
TESTS = {  # test file -> what it covers (issue 9's items)
    "tests/test_lm_faults.py": "LM faults in whole runs",
    "tests/test_kill9.py": "kill -9 at random points",
    "tests/test_jsonl.py": "torn JSONL lines",
    "tests/test_disk_full.py": "a full disk (simulated)",
    "tests/test_config_fuzz.py": "config fuzzing",
    "tests/test_secrets.py": "secrets",
    "tests/test_ray_launcher.py": "Ray launcher",
    "tests/test_sandbox_containment.py": "sandbox containment: leftovers, whole-run memory",
    "tests/test_sandbox_attacks.py": "sandbox attacks",
    "tests/lm/test_cache_integrity.py": "a corrupt LM cache",
}


def run_tests(log: Path) -> dict[str, dict]:
    """Each test file in its own pytest process; its wall time and outcome line."""
    env = dict(os.environ, OPTIMAS_RELIABILITY_LOG=str(log), HF_HUB_OFFLINE="1",
               LITELLM_LOCAL_MODEL_COST_MAP="True")
    out = {}
    for path in TESTS:
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "-rs", path], cwd=ROOT, env=env, capture_output=True, text=True)
        lines = [x for x in proc.stdout.splitlines() if x.strip()]
        out[path] = {"seconds": time.monotonic() - t0, "rc": proc.returncode,
                     "result": lines[-1].strip("= ") if lines else "",
                     "skipped": [x for x in lines if x.startswith("SKIPPED")]}
        print(f"{path}: {out[path]['result']} ({out[path]['seconds']:.0f} s)", flush=True)
        if proc.returncode not in (0, 5):
            print(proc.stdout[-5000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
    return out


def ray_version() -> str:
    try:
        from importlib.metadata import version

        return version("ray")
    except Exception:  # noqa: BLE001 - any failure: not installed here
        return "not installed (the Ray test is skipped)"


def faults_table(rows: list[dict]) -> list[str]:
    out = ["| fault injected | runs | how the run ended | examples hit | recorded failed "
           "| results lost |", "|---|---:|---|---:|---:|---:|"]
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    for kind, rs in by_kind.items():
        r = rs[0]
        ended = {"retried": "completed, every call answered after retries",
                 "failed": "completed (DONE); the examples recorded as failed",
                 "stopped": "stopped cleanly (STOPPED), resumed to DONE with the "
                            "uninterrupted run's history and scores"}[r["outcome"]]
        if r["outcome"] == "stopped":
            hit = f"{r['answers_before_stop']} answers before the stop"
            ended += (f"; {r['answers_after_resume']} answers after, "
                      f"{r['reference_answers']} in the uninterrupted run")
        else:
            hit = str(r.get("faulty", r.get("examples", "")))
        out.append(f"| {kind} | {len(rs)} | {ended} | {hit} | {r.get('failed', 0)} "
                   f"| {sum(x['lost'] for x in rs)} |")
    return out


def containment_lines(attacks: list[dict], cache: list[dict]) -> list[str]:
    """The sandbox attacks with what each left running and its peak memory; the corrupt-cache
    cases with how many were served."""
    out = []
    if attacks:
        out += ["", f"**Containment** (`tests/test_sandbox_containment.py`, the fork bomb of "
                f"`tests/test_sandbox_attacks.py`): {len(attacks)} attacks over both modes; "
                f"processes left after them: **{sum(a['left'] for a in attacks)}**. Peak memory "
                "is the run's cgroup's (memfds and forks included); the reaper, outside it, "
                "adds its own 9-10 MB (its RSS, measured).", "",
                "| attack | mode | processes left | peak memory (MB) | bound (MB) |",
                "|---|---|---:|---:|---:|"]
        for a in attacks:
            peak = f"{a['peak_mb']:.0f}" if a.get("peak_mb") is not None else ""
            out.append(f"| {a['attack']} | {a['mode']} | {a['left']} | {peak} "
                       f"| {a.get('bound_mb', '')} |")
    if cache:
        out += ["", f"**Corrupt LM cache** (`tests/lm/test_cache_integrity.py`): {len(cache)} "
                f"entries changed after they were written ({', '.join(c['case'] for c in cache)})"
                f"; served wrong: **{sum(c['served_wrong'] for c in cache)}** (each a miss, "
                "asked again)."]
    return out


def section(records: list[dict], tests: dict[str, dict], seconds: float, command: str,
            note: str) -> str:
    by = defaultdict(list)
    for r in records:
        by[r["item"]].append(r)
    lines = [f"Generated by `{command}` on {datetime.now():%Y-%m-%d %H:%M} "
             f"({seconds / 60:.1f} min). Machine: {machine()}; Ray: {ray_version()}."
             + (f" {note}" if note else ""), ""]
    lines += ["| test | covers | result | wall time |", "|---|---|---|---:|"]
    for path, t in tests.items():
        skipped = f" ({t['skipped'][0].split(': ', 1)[-1]})" if t["skipped"] else ""
        lines.append(f"| `{path}` | {TESTS[path]} | {t['result']}{skipped} | {t['seconds']:.0f} s |")
    faults = by["lm_fault"]
    if faults:
        outcomes = Counter(r["outcome"] for r in faults)
        lines += ["", f"**LM faults** (`tests/test_lm_faults.py`): {len(faults)} runs on the API "
                  "path (litellm mock responses) and the embedded engine (a corrupt GGUF); "
                  f"{outcomes['retried']} completed with retries, {outcomes['failed']} recorded "
                  f"their examples as failed, {outcomes['stopped']} stopped cleanly and resumed.",
                  "", *faults_table(faults)]
    for k in by["kill9"]:
        landed = ", ".join(f"{s} {n}" for s, n in k["landed"] if n)
        lines += ["", f"**kill -9** (`tests/test_kill9.py`): {k['trials']} SIGKILLs of real "
                  f"`optimas run` processes (tests/linear.yaml, the Optimas loop) in "
                  f"{k['chains']} chains, each resumed with `resume=`; kills landed in: {landed}. "
                  f"Resumed runs identical to the uninterrupted one (history, test scores, "
                  f"rollouts, reward-model metrics, final/system.yaml): **{k['resumed_identical']} "
                  f"of {k['chains']}**. Torn JSONL lines left by a kill: {k['torn_by_kill']}; "
                  f"torn lines injected after a kill: {k['torn_injected']}, all recovered. "
                  f"Reference run {k['reference_s']} s; harness {k['seconds']} s."]
    for f in by["config_fuzz"]:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(f["kinds"].items()))
        lines += ["", f"**Config fuzzing** (`tests/test_config_fuzz.py`): {f['cases']} malformed "
                  f"configs and overrides ({kinds}); one clear error line each: "
                  f"**{f['clear']} of {f['cases']}**."]
    if by["secrets"]:
        s = by["secrets"]
        lines += ["", f"**Secrets** (`tests/test_secrets.py`): {len(s)} runs on the API path "
                  f"({sum(x['api_calls'] for x in s)} calls), {sum(x['files'] for x in s)} files "
                  f"of run directories and caches scanned: **{sum(x['leaks'] for x in s)} keys "
                  "found**."]
    for r in by["ray"]:
        lines += ["", f"**Ray launcher** (`tests/test_ray_launcher.py`): a {r['jobs']}-job sweep "
                  f"`-m hydra/launcher=ray` on a local Ray {r['ray']}, {r['seconds']} s; each "
                  "job's test scores equal the same job run in process."]
    lines += containment_lines(by["containment"], by["cache_corrupt"])
    lost = sum(r.get("lost", 0) for r in records)
    lines += ["", f"**Results lost: {lost}** (computed results missing after a fault, a stop "
              "or a kill, over every run above)."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--dry-run", action="store_true", help="print the block only")
    ap.add_argument("--note", default="", help="a sentence about the machine's state, e.g. "
                    "'A benchmark was running on the same cores.'")
    args = ap.parse_args()
    command = "python bench/reliability.py"
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "reliability.jsonl"
        tests = run_tests(log)
        records = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    failed = [p for p, t in tests.items() if t["rc"] not in (0, 5)]
    if failed:
        print(f"failed: {', '.join(failed)}; BENCHMARKS.md left as it was", file=sys.stderr)
        return 1
    body = section(records, tests, time.monotonic() - t0, command, args.note)
    print(body)
    if not args.dry_run:
        write_section(Path(args.out), body, "reliability")
        print(f"wrote {args.out} ({shlex.quote(command)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
