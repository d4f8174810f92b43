"""What a process spent on a run directory is counted even when it is SIGKILL-ed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from optimas_cli import spend
from optimas_cli.run_dir import RunDir


class Counter:
    def __init__(self):
        self.runs = 0

    def __call__(self) -> dict[str, int]:
        return {"system_runs": self.runs, "lm_calls": 2 * self.runs, "lm_requests": 3 * self.runs,
                "lm_tokens": 10 * self.runs}


def test_a_process_that_ends_writes_its_share_and_leaves_no_checkpoint(tmp_path):
    rd, c = RunDir(tmp_path), Counter()
    offset = {"system_runs": 5, "lm_calls": 10, "lm_requests": 15, "lm_tokens": 50}
    c.runs = 5
    with spend.recording(rd, "run", offset, c, interval=60):
        c.runs = 12
        rd.append_jsonl("history.jsonl", {"x": 1})  # checkpoints first
        live = json.loads((tmp_path / spend.LIVE / f"{os.getpid()}.json").read_text())
        assert live["system_runs"] == 7 and live["lm_tokens"] == 70
        c.runs = 13
    assert rd.read_jsonl(spend.SPENT) == [{"command": "run", "system_runs": 8, "component_calls": 0,
                                           "lm_calls": 16, "lm_requests": 24, "lm_tokens": 80}]
    assert not list((tmp_path / spend.LIVE).iterdir())


def test_checkpoints_of_dead_processes_are_folded_once_live_ones_are_not(tmp_path):
    rd = RunDir(tmp_path)
    live = tmp_path / spend.LIVE
    live.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (live / f"{dead.pid}.json").write_text(json.dumps(
        {"command": "run", "system_runs": 4, "lm_calls": 1, "lm_requests": 2, "lm_tokens": 9}))
    (live / f"{os.getppid()}.json").write_text(json.dumps(  # alive: still working
        {"command": "run", "system_runs": 100, "lm_calls": 0, "lm_requests": 0, "lm_tokens": 0}))
    rd.append_jsonl(spend.SPENT, {"command": "run", "system_runs": 3, "lm_calls": 1,
                                  "lm_requests": 1, "lm_tokens": 1})
    assert spend.spent_before(rd) == {"system_runs": 7, "component_calls": 0, "lm_calls": 2,
                                      "lm_requests": 3, "lm_tokens": 10}
    assert spend.spent_before(rd)["system_runs"] == 7  # folded once, not twice
    assert [r["command"] for r in rd.read_jsonl(spend.SPENT)] == ["run", "run (killed)"]
    assert sorted(p.name for p in live.iterdir()) == [f"{os.getppid()}.json"]


def test_kill9_after_a_saved_result_still_counts_its_cost(tmp_path):
    """A real SIGKILL: the process saved results 1..n; a resumed run must see their cost."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(os.getcwd())!r})
        from optimas_cli import spend
        from optimas_cli.run_dir import RunDir
        rd, n = RunDir({str(tmp_path)!r}), [0]
        cost = lambda: {{"system_runs": n[0], "lm_calls": n[0], "lm_requests": n[0], "lm_tokens": n[0]}}
        with spend.recording(rd, "run", {{}}, cost, interval=3600):
            for i in range(1000):
                n[0] += 1  # the work of result i ...
                rd.append_jsonl("rollouts.jsonl", {{"i": i}})  # ... then its record
                print(i, flush=True)
                time.sleep(0.01)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    for _ in range(20):
        proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.05)
    rd = RunDir(tmp_path)
    saved = len(rd.read_jsonl("rollouts.jsonl"))
    assert saved >= 20 and not rd.read_jsonl(spend.SPENT)  # the process wrote no line
    assert spend.spent_before(rd)["system_runs"] >= saved
    assert rd.read_jsonl(spend.SPENT)[0]["command"] == "run (killed)"
