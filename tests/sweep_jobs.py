"""A two-job sweep of tests/linear.yaml through a Hydra launcher, as a user runs it, and the
check that each job's results equal the same job run in process (tests of the launchers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from optimas_cli.config import load
from optimas_cli.jobs import execute

HERE = Path(__file__).parent
LINEAR = HERE / "linear.yaml"


def run_sweep(tmp_path: Path, *launcher: str) -> tuple[str, list[Path], float]:
    """`optimas run linear.yaml -m LAUNCHER... optimizer=none seed=0,1`: its output, its two
    finished job directories and the seconds it took."""
    exe = Path(sys.executable).with_name("optimas")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    t0 = time.monotonic()
    proc = subprocess.run([str(exe), "run", str(LINEAR), "-m", *launcher, "optimizer=none",
                           "seed=0,1", "data.seed=${seed}", f"run_root={tmp_path}"], env=env,
                          capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    (sweep,) = (tmp_path / "linear").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"] and all((p / "DONE").exists() for p in jobs)
    return out, jobs, seconds


def assert_jobs_equal_direct(jobs: list[Path], tmp_path: Path) -> None:
    """Each job's test results equal the same seed run in process; the two jobs differ
    (two seeds, two test splits)."""
    tests = []
    for seed, job in enumerate(jobs):
        tests.append(json.loads((job / "summary.json").read_text())["test"])
        _, direct = execute("run", load(LINEAR, [f"run_root={tmp_path / 'direct'}",
                                                 "optimizer=none", f"seed={seed}",
                                                 "data.seed=${seed}"]), show_progress=False)
        assert tests[-1] == direct["test"], seed
    assert tests[0] != tests[1]
