"""`-m hydra/launcher=ray`: a two-job sweep as Ray tasks on a local Ray (the `ray` extra,
hydra_plugins/optimas_ray_launcher); each job's results equal the same job run in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_log import record

from optimas_cli.config import load
from optimas_cli.jobs import execute

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
HERE = Path(__file__).parent
LINEAR = HERE / "linear.yaml"


def test_the_ray_launcher_is_a_discovered_hydra_plugin():
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher

    names = [c.__module__ + "." + c.__name__ for c in Plugins.instance().discover(Launcher)]
    assert "hydra_plugins.optimas_ray_launcher.ray_launcher.RayLauncher" in names, (
        "ray is installed but the launcher is not: reinstall with pip install -e '.[ray]'")


@pytest.mark.slow
def test_two_job_sweep_on_a_local_ray(tmp_path):
    exe = Path(sys.executable).with_name("optimas")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    t0 = time.monotonic()
    proc = subprocess.run([str(exe), "run", str(LINEAR), "-m", "hydra/launcher=ray",
                           "hydra.launcher.ray.init.num_cpus=2", "optimizer=none", "seed=0,1",
                           "data.seed=${seed}", f"run_root={tmp_path}"], env=env, capture_output=True, text=True,
                          timeout=600)
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Started a local Ray instance" in out and "Ray launcher: 2 jobs" in out
    (sweep,) = (tmp_path / "linear").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"] and all((p / "DONE").exists() for p in jobs)
    assert "(_run_job pid=" in out  # the jobs ran in Ray worker processes
    tests = []
    for seed, job in enumerate(jobs):
        assert f"run directory: {job}" in out
        tests.append(json.loads((job / "summary.json").read_text())["test"])
        _, direct = execute("run", load(LINEAR, [f"run_root={tmp_path / 'direct'}",
                                                 "optimizer=none", f"seed={seed}",
                                                 "data.seed=${seed}"]), show_progress=False)
        assert tests[-1] == direct["test"], seed
    assert tests[0] != tests[1]  # two jobs, two test splits
    record("ray", jobs=len(jobs), seconds=round(seconds, 1), ray=ray.__version__)
