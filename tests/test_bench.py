"""bench/run.py and bench/reproduce.py: the BENCHMARKS.md section, drift detection, and a
real record-then-replay round trip with the embedded model."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import paired  # noqa: E402
import reproduce  # noqa: E402
import run as bench_run  # noqa: E402


def test_section_between_markers_is_replaced_and_the_rest_kept(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nintro\n")
    begin, end = bench_run.markers("pubmedqa")
    bench_run.write_section(md, "table one", name="pubmedqa")
    assert md.read_text() == f"# Benchmarks\n\nintro\n\n{begin}\ntable one\n{end}\n"
    md.write_text(md.read_text() + "\n## Later section\n")
    bench_run.write_section(md, "other bench", name="hotpotqa")  # its own section
    bench_run.write_section(md, "table two", name="pubmedqa")
    text = md.read_text()
    assert "table one" not in text and "table two" in text and "other bench" in text
    assert text.startswith("# Benchmarks\n\nintro\n") and "## Later section\n" in text


def test_a_finished_run_is_archived_and_then_kept_without_its_run_directory(tmp_path):
    run_dir, results = tmp_path / "runs" / "search" / "seed_0", tmp_path / "results"
    run_dir.mkdir(parents=True)
    for name in (*bench_run.ARCHIVED, "run.log", "predictions.jsonl"):
        (run_dir / name).write_text(name)
    got = bench_run.run_one(Path("cfg.yaml"), "search", 0, tmp_path / "runs", [], results)
    kept = results / "runs" / "search" / "seed_0"
    assert got["status"] == "kept" and got["dir"] == kept
    assert sorted(p.name for p in kept.iterdir()) == sorted(bench_run.ARCHIVED)
    import shutil

    shutil.rmtree(tmp_path / "runs")  # a new machine: only the committed archive is left
    got = bench_run.run_one(Path("cfg.yaml"), "search", 0, tmp_path / "runs", [], results)
    assert got["status"] == "kept" and not (tmp_path / "runs").exists()


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


def test_paired_matches_seeds_and_averages_each_question_over_them(tmp_path):
    def runs(name, finals):
        for seed, scores in finals.items():
            d = tmp_path / name / f"seed_{seed}"
            d.mkdir(parents=True)
            (d / "summary.json").write_text(json.dumps({"test": {"final": {"scores": scores}}}))
        return tmp_path / name

    a = runs("a", {0: [1, 1, 0, 0], 1: [1, 0, 0, 0], 2: [1, 1, 1, 1]})
    b = runs("b", {0: [0, 1, 0, 0], 1: [0, 0, 0, 1], 3: [0, 0, 0, 0]})  # seed 2 and 3 unmatched
    seeds, d = paired.paired(a, b)
    assert seeds == ["seed_0", "seed_1"]
    # per question, averaged over the two seeds: +1, 0, 0, -0.5
    assert (d.n, d.wins, d.losses) == (4, 1, 1) and d.mean == pytest.approx(0.5 / 4)
    with pytest.raises(SystemExit, match="no seed_N"):
        paired.paired(a, tmp_path / "none")
