"""kill -9 at random points: real `optimas run` processes on tests/linear.yaml (python
components, no model; `scale` sleeps so every stage lasts long enough to be hit; the reward
model on a tiny random BERT, which loads and fits faster than MiniLM) get SIGKILL
at random times spread over the stages, and are resumed with `optimas run CONFIG resume=DIR`
until one finishes. Every finished run must equal an uninterrupted reference run: the same
history, scores, rollouts, reward-model metrics and final/system.yaml (timings and spend
counters aside: killed processes spent more in all, and spent.jsonl must count at least
what the uninterrupted run spent, since every saved result's cost is checkpointed). After each kill
every JSONL line with its newline must parse; half the kills also get a torn last line
appended to the file written last (what a kill in the middle of a large write leaves), which
the resumed run must recover from.

Each chain kills one run several times, a stage further along each time, at a random moment
within the stage (its length as the reference run took it). Sizes: KILL9_CHAINS (default 4)
x KILL9_KILLS (default 5) kills, KILL9_WORKERS (default 2) chains at a time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from reliability_log import record
from test_rewards import make_tiny_backbone

from optimas_cli import jsonl, spend
from optimas_cli.run_dir import RunDir

HERE = Path(__file__).parent
LINEAR = HERE / "linear.yaml"
OVERRIDES = [
    "system.components.scale.params.function=fns:slow_scale",
    "+system.components.scale.params.kwargs={delay_s: 0.05}",
    "data.train_size=8", "data.val_size=6", "data.test_size=6",
    "optimizer.collect.num_inputs=6", "optimizer.update.per_component_train_size=6",
    "reward.epochs=1", "reward.max_epochs=1", "reward.max_length=32",
]
# Stages in the order a run passes them; `stage_of` reads which one a run directory is in.
STAGES = ["startup", "initial validation", "collect", "fit", "update+validate", "test",
          "summary", "done"]
# spend repeats work a kill cut off (optimas_cli/budget.py SPENT_KEYS, and their test_ twins)
SPEND = {"system_runs", "component_calls", "lm_calls", "lm_tokens", "lm_requests"}
VOLATILE = {"seconds", "wall_time_s", "latency_s", "lm", "usage", "peak_rss_mb", "cpu_s",
            "lm_seconds_per_question",
            *SPEND, *(f"test_{k}" for k in SPEND)}
CHAINS = int(os.environ.get("KILL9_CHAINS", 4))
KILLS = int(os.environ.get("KILL9_KILLS", 5))
WORKERS = int(os.environ.get("KILL9_WORKERS", 2))
SEED = int(os.environ.get("KILL9_SEED", 0))


def optimas(*args: str, cache: Path, overrides: list[str]) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("optimas")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "optimas_cli.cli"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
               OPTIMAS_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    return subprocess.Popen([*cmd, "run", str(LINEAR), *args, "-q", *overrides], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


START = "INFO optimas: optimas run "  # each process logs it once its run directory is open


def starts(run: Path) -> int:
    try:
        return (run / "run.log").read_text().count(START)
    except FileNotFoundError:
        return 0


def stage_of(run: Path, started: int) -> str:
    """The stage the run directory shows, for the process whose start is the `started`-th
    START line of its run.log."""
    try:
        log = (run / "run.log").read_text()
    except FileNotFoundError:
        return "startup"
    if (run / "DONE").exists():
        return "done"
    if log.count(START) < started:
        return "startup"
    if (run / "summary.json").exists():
        return "summary"
    history = jsonl.read(run / "history.jsonl")
    if not history:
        return "initial validation"
    if len(history) > 1:
        return "test"
    if (run / "lrf/iter_001/metrics.json").exists():
        return "update+validate"
    return "fit" if "INFO optimas.collect: scale:" in log else "collect"


def jsonl_files(run: Path) -> list[Path]:
    return sorted(run.rglob("*.jsonl"))


def torn_tails(run: Path) -> list[str]:
    """JSONL files ending in a line without its newline; asserts every whole line parses."""
    torn = []
    for f in jsonl_files(run):
        *lines, tail = f.read_bytes().split(b"\n")
        for n, line in enumerate(lines, 1):
            try:
                json.loads(line)
            except ValueError:  # a whole line that is not JSON: a writer's bug
                raise AssertionError(f"{f}:{n} is not JSON: {line[:200]!r}") from None
        if tail:
            torn.append(str(f.relative_to(run)))
    return torn


def tear(run: Path, rng: random.Random) -> str | None:
    """Append a cut-off copy of the last record to the JSONL file written last (a kill in
    the middle of a write); the file's name, or None when there is none yet."""
    files = [f for f in jsonl_files(run) if f.stat().st_size]
    if not files:
        return None
    f = max(files, key=lambda p: p.stat().st_mtime_ns)
    last = f.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    with f.open("ab") as out:
        out.write(last[:rng.randrange(1, len(last))])
    return str(f.relative_to(run))


def stable(data):
    """`data` without timings and spend counters (they differ between processes)."""
    if isinstance(data, dict):
        return {k: stable(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [stable(v) for v in data]
    return data


def artifacts(run: Path) -> dict:
    """What a finished run computed, comparable between runs."""
    out = {"history": stable(jsonl.read(run / "history.jsonl")),
           "final/system.yaml": (run / "final/system.yaml").read_text()}
    for name in ("summary.json", "test/initial.json", "test/final.json", "lrf/iter_001/metrics.json"):
        out[name] = stable(json.loads((run / name).read_text()))
    for f in jsonl_files(run):  # rollouts and predictions: records by id, any order
        name = str(f.relative_to(run))
        if name not in ("history.jsonl", "spent.jsonl", "attempts.jsonl"):
            records = stable(jsonl.read(f))
            out[name] = sorted(records, key=lambda r: json.dumps(r, sort_keys=True))
    return out


def timeline(run: Path, proc: subprocess.Popen) -> dict[str, float]:
    """When each stage was first seen in an uninterrupted run, seconds after its start."""
    t0, seen = time.monotonic(), {}
    while proc.poll() is None:
        seen.setdefault(stage_of(run, 1), time.monotonic() - t0)
        time.sleep(0.01)
    seen.setdefault("done", time.monotonic() - t0)
    return seen


def chain(n: int, root: Path, durations: dict[str, float], overrides: list[str]) -> dict:
    """One run killed KILLS times, a stage further each time, then resumed to the end."""
    rng = random.Random(f"{SEED}:{n}")
    run, cache = root / f"chain_{n}", root / "cache"
    # the stages before "summary", in order; chain n leaves out a different one
    aimed = [i for i in range(len(STAGES) - 2)
             if KILLS >= len(STAGES) - 2 or i != n % (len(STAGES) - 2)]
    targets = sorted((aimed * KILLS)[:KILLS])
    kills = []
    for i, target in enumerate(targets):
        first = not (run / "config.yaml").exists()  # a kill before it: nothing to resume
        started = starts(run) + 1
        torn_before = set(torn_tails(run)) if not first else set()
        proc = optimas(f"run_dir={run}" if first else f"resume={run}", cache=cache,
                       overrides=overrides)
        t0 = time.monotonic()
        # wait for the target stage (or a later one), then a random moment within it
        while STAGES.index(stage_of(run, started)) < target and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, durations[STAGES[target]]))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        stage = stage_of(run, started)
        natural = sorted(set(torn_tails(run)) - torn_before)  # torn by this kill
        injected = tear(run, rng) if i % 2 else None
        kills.append({"target": STAGES[target], "stage": stage, "exit": proc.returncode,
                      "at_s": round(time.monotonic() - t0, 3), "torn_by_kill": natural,
                      "torn_injected": injected})
    proc = optimas(f"resume={run}" if (run / "config.yaml").exists() else f"run_dir={run}",
                   cache=cache, overrides=overrides)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]
    return {"chain": n, "run": run, "kills": kills}


def stage_durations(seen: dict[str, float]) -> dict[str, float]:
    """How long each stage lasted in the reference run (0.02 s if it was too short to see)."""
    order = sorted(seen.items(), key=lambda kv: kv[1])
    lengths = {s: t2 - t1 for (s, t1), (_, t2) in zip(order, order[1:], strict=False)}
    return {s: max(0.02, lengths.get(s, 0.0)) for s in STAGES}


@pytest.mark.slow
def test_kill9_at_random_points_then_resume_gives_the_uninterrupted_result(tmp_path):
    t_start = time.monotonic()
    ref_run = tmp_path / "reference"
    overrides = [*OVERRIDES, f"reward.backbone={make_tiny_backbone(tmp_path / 'tiny_bert')}"]
    proc = optimas(f"run_dir={ref_run}", cache=tmp_path / "cache", overrides=overrides)
    seen = timeline(ref_run, proc)
    seen = {s: t for s, t in seen.items() if s in STAGES}
    assert proc.wait() == 0 and (ref_run / "DONE").exists(), proc.stderr.read().decode()[-3000:]
    durations = stage_durations(seen)
    reference = artifacts(ref_run)
    ref_spent = spend.spent_before(RunDir(ref_run))
    assert not torn_tails(ref_run)
    with ThreadPoolExecutor(WORKERS) as pool:
        chains = list(pool.map(lambda n: chain(n, tmp_path, durations, overrides), range(CHAINS)))
    identical = 0
    for c in chains:
        run = c["run"]
        assert (run / "DONE").exists() and not (run / "FAILED").exists()
        got = artifacts(run)
        assert got.keys() == reference.keys(), (c["kills"], sorted(got), sorted(reference))
        for name in reference:
            assert got[name] == reference[name], (name, c["kills"])
        identical += 1
        # every process that got to its run directory started an attempt; only the last ended
        tries = jsonl.read(run / "attempts.jsonl")
        assert [r.get("outcome") for r in tries if "end" in r] == ["DONE"], tries
        assert 1 <= sum("start" in r for r in tries) <= len(c["kills"]) + 1
        total = spend.spent_before(RunDir(run))
        assert total["system_runs"] >= ref_spent["system_runs"], (total, ref_spent, c["kills"])
    kills = [k for c in chains for k in c["kills"] if k["exit"] == -signal.SIGKILL]
    assert len(kills) >= min(20, CHAINS * KILLS)  # (a run that ended before its kill: none)
    landed = {s: sum(k["stage"] == s for k in kills) for s in STAGES}
    print(f"reference stages (s after start): {seen}\nkills landed: {landed}")
    for c in chains:
        print(f"chain {c['chain']}: {c['kills']}")
    if CHAINS * KILLS >= 20:  # the kills are spread: every stage but the short last two hit
        assert all(landed[s] for s in STAGES[:-2]), landed
    record("kill9", trials=len(kills), chains=CHAINS, resumed_identical=identical,
           landed=[[s, n] for s, n in landed.items()],  # in stage order
           torn_by_kill=sum(len(k["torn_by_kill"]) for k in kills),
           torn_injected=sum(bool(k["torn_injected"]) for k in kills),
           reference_s=round(seen.get("done", 0), 2), seconds=round(time.monotonic() - t_start, 1),
           lost=0)
