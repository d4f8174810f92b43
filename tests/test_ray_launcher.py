"""`-m hydra/launcher=ray`: a two-job sweep as Ray tasks on a local Ray (the `ray` extra,
hydra_plugins/optimas_ray_launcher); each job's results equal the same job run in process."""

from __future__ import annotations

import pytest
from reliability_log import record
from sweep_jobs import assert_jobs_equal_direct, run_sweep

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")


def test_the_ray_launcher_is_a_discovered_hydra_plugin():
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher

    names = [c.__module__ + "." + c.__name__ for c in Plugins.instance().discover(Launcher)]
    assert "hydra_plugins.optimas_ray_launcher.ray_launcher.RayLauncher" in names, (
        "ray is installed but the launcher is not: reinstall with pip install -e '.[ray]'")


@pytest.mark.slow
def test_two_job_sweep_on_a_local_ray(tmp_path):
    out, jobs, seconds = run_sweep(tmp_path, "hydra/launcher=ray",
                                   "hydra.launcher.ray.init.num_cpus=2")
    assert "Started a local Ray instance" in out and "Ray launcher: 2 jobs" in out
    assert "(_run_job pid=" in out  # the jobs ran in Ray worker processes
    assert all(f"run directory: {job}" in out for job in jobs)
    assert_jobs_equal_direct(jobs, tmp_path)
    record("ray", jobs=len(jobs), seconds=round(seconds, 1), ray=ray.__version__)
