"""`-m hydra/launcher=submitit_local`: a two-job sweep through submitit's local executor (the
same code path as its SLURM executor, hydra-submitit-launcher, the `submitit` extra); each
job runs in its own submitit process and its results equal the same job run in process."""

from __future__ import annotations

import pytest
from sweep_jobs import assert_jobs_equal_direct, run_sweep

pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                    reason="hydra-submitit-launcher is not installed: pip install -e '.[submitit]'")


@pytest.mark.slow
def test_two_job_sweep_through_submitit_local(tmp_path):
    out, jobs, _ = run_sweep(tmp_path, "hydra/launcher=submitit_local")
    assert "Submitit 'local' sweep output dir" in out
    # each job ran in a submitit process of its own, which logged the run and its success
    logs = sorted(jobs[0].parent.glob(".submitit/*/*_log.out"))
    assert len(logs) == 2
    texts = [p.read_text() for p in logs]
    assert all("Job completed successfully" in t and "optimas run" in t for t in texts)
    assert {t.split("optimas run", 1)[1].split("seed=", 1)[1][0] for t in texts} == {"0", "1"}
    assert_jobs_equal_direct(jobs, tmp_path)
