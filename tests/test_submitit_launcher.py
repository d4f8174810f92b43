"""`-m hydra/launcher=submitit_local`: a two-job sweep through submitit's local executor (the
same code path as its SLURM executor, hydra-submitit-launcher, the `submitit` extra); each
job runs in its own submitit process and its results equal the same job run in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optimas_cli.config import load
from optimas_cli.jobs import execute

pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                    reason="hydra-submitit-launcher is not installed: pip install -e '.[submitit]'")
HERE = Path(__file__).parent
LINEAR = HERE / "linear.yaml"


@pytest.mark.slow
def test_two_job_sweep_through_submitit_local(tmp_path):
    exe = Path(sys.executable).with_name("optimas")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.run([str(exe), "run", str(LINEAR), "-m", "hydra/launcher=submitit_local",
                           "optimizer=none", "seed=0,1", "data.seed=${seed}", f"run_root={tmp_path}"],
                          env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Submitit 'local' sweep output dir" in out
    (sweep,) = (tmp_path / "linear").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"] and all((p / "DONE").exists() for p in jobs)
    # each job ran in a submitit process of its own, which logged the run and its success
    logs = sorted(sweep.glob(".submitit/*/*_log.out"))
    assert len(logs) == 2
    texts = [p.read_text() for p in logs]
    assert all("Job completed successfully" in t and "optimas run" in t for t in texts)
    assert {t.split("optimas run", 1)[1].split("seed=", 1)[1][0] for t in texts} == {"0", "1"}
    tests = []
    for seed, job in enumerate(jobs):
        tests.append(json.loads((job / "summary.json").read_text())["test"])
        _, direct = execute("run", load(LINEAR, [f"run_root={tmp_path / 'direct'}",
                                                 "optimizer=none", f"seed={seed}",
                                                 "data.seed=${seed}"]), show_progress=False)
        assert tests[-1] == direct["test"], seed
    assert tests[0] != tests[1]  # two jobs, two test splits
