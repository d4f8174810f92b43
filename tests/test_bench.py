"""bench/run.py and bench/reproduce.py: the BENCHMARKS.md section, drift detection, and a
real record-then-replay round trip with the embedded model."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import reproduce  # noqa: E402
import run as bench_run  # noqa: E402


def test_section_between_markers_is_replaced_and_the_rest_kept(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nintro\n")
    bench_run.write_section(md, "table one")
    assert md.read_text() == f"# Benchmarks\n\nintro\n\n{bench_run.BEGIN}\ntable one\n{bench_run.END}\n"
    md.write_text(md.read_text() + "\n## Later section\n")
    bench_run.write_section(md, "table two")
    text = md.read_text()
    assert "table one" not in text and "table two" in text
    assert text.startswith("# Benchmarks\n\nintro\n") and text.endswith("## Later section\n")


def _row(method, **kw):
    row = {"method": method, "system": "s", "seeds": "3", "test_mean": "0.5", "test_std": "0.1",
           "initial_mean": "0.2", "initial_std": "0.0", "system_runs": "60.0", "lm_calls": "10",
           "lm_requests": "120.0", "wall_time_s": "99.0"}
    return row | kw


def test_drift_names_every_differing_cell_and_ignores_machine_dependent_columns():
    expected = [_row("none"), _row("optimas")]
    assert reproduce.diff_tables(expected, [_row("none", wall_time_s="5", lm_calls="0"),
                                            _row("optimas")]) == []
    cells = reproduce.diff_tables(expected, [_row("none", test_mean="0.51"),
                                             _row("search")])
    assert cells == ["none/s test_mean: expected '0.5', got '0.51'",
                     "optimas/s: row missing from this run",
                     "search/s: row not in the committed table"]


@pytest.mark.slow
def test_record_then_replay_reproduces_and_a_changed_cell_fails(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    data = tmp_path / "record"
    cmd = [sys.executable, str(ROOT / "bench/reproduce.py"), "--config", "tests/words.yaml",
           "--methods", "none,search", "--data", str(data)]
    rec = subprocess.run([*cmd, "--record"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "equal the committed table" in rec.stdout
    assert {p.name for p in data.iterdir()} == {"responses.sqlite3", "expected.csv", "expected.md"}
    with (data / "expected.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"none", "search"}
    assert all(float(r["lm_requests"]) > 0 for r in rows)
    # the check alone: a replay of the committed record
    check = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert check.returncode == 0, check.stdout + check.stderr
    # drift: one committed number changed -> exit 1, and the cell is named
    rows[0]["test_mean"] = "0.123"
    with (data / "expected.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    drift = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert drift.returncode == 1
    assert f"{rows[0]['method']}/words test_mean: expected '0.123'" in drift.stdout
