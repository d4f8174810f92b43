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
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import paired  # noqa: E402
import reproduce  # noqa: E402
import run as bench_run  # noqa: E402
import sections  # noqa: E402


def test_section_between_markers_is_replaced_and_the_rest_kept(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nintro\n")
    begin, end = sections.markers("pubmedqa")
    sections.write_section(md, "table one", name="pubmedqa")
    assert md.read_text() == f"# Benchmarks\n\nintro\n\n{begin}\ntable one\n{end}\n"
    md.write_text(md.read_text() + "\n## Later section\n")
    sections.write_section(md, "other bench", name="hotpotqa")  # its own section
    sections.write_section(md, "table two", name="pubmedqa")
    text = md.read_text()
    assert "table one" not in text and "table two" in text and "other bench" in text
    assert text.startswith("# Benchmarks\n\nintro\n") and "## Later section\n" in text


def test_a_table_of_other_code_is_kept_below_marked_superseded(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    first = sections.code_line("aaaaaaa") + "\ntable of a"
    sections.write_section(md, first, name="b")
    sections.write_section(md, sections.code_line("aaaaaaa") + "\na's table, rerun", name="b")
    assert "table of a" not in md.read_text()  # the same code: replaced
    sections.write_section(md, sections.code_line("bbbbbbb") + "\ntable of b", name="b")
    sections.write_section(md, sections.code_line("ccccccc") + "\ntable of c", name="b")
    text = md.read_text()
    begin, end = sections.markers("b")
    current = text.split(begin)[1].split(end)[0]
    assert "table of c" in current and "table of b" not in current
    after = text.split(end)[1]
    assert after.index("Superseded: the table of commit bbbbbbb") < after.index(
        "Superseded: the table of commit aaaaaaa")
    assert "a's table, rerun" in after and "table of b" in after


def test_the_baselines_put_every_component_on_one_model():
    models = ["local/smollm2-135m-instruct", "local/gemma3-270m", "local/qwen2.5-coder-1.5b-instruct"]
    rows = bench_run.expand(["none", "largest", "single", "mipro"], models, own=models[0])
    assert [m.name for m in rows] == ["none", "largest", "only-gemma3-270m", "mipro"]
    assert rows[1].overrides == ("optimizer=none", f"lm.model={models[2]}", "tag=largest")
    assert rows[2].overrides == ("optimizer=none", f"lm.model={models[1]}", "tag=only-gemma3-270m")
    assert rows[3].overrides[0] == "optimizer=mipro" and len(rows[3].overrides) == 3


def test_a_finished_run_is_archived_and_then_kept_without_its_run_directory(tmp_path):
    run_dir, results = tmp_path / "runs" / "search" / "seed_0", tmp_path / "results"
    run_dir.mkdir(parents=True)
    for name in (*bench_run.ARCHIVED, "run.log", "predictions.jsonl"):
        (run_dir / name).write_text(name)
    bench = bench_run.Bench(config=Path("cfg.yaml"), root=tmp_path / "runs", results=results)
    (search,) = bench_run.expand(["search"], [])
    got = bench_run.run_one(bench, search, 0)
    kept = results / "runs" / "search" / "seed_0"
    assert got["status"] == "kept" and got["dir"] == kept
    assert sorted(p.name for p in kept.iterdir()) == sorted([*bench_run.ARCHIVED, "bench.json"])
    assert json.loads((kept / "bench.json").read_text())["commit"] == sections.commit()
    import shutil

    shutil.rmtree(tmp_path / "runs")  # a new machine: only the committed archive is left
    got = bench_run.run_one(bench, search, 0)
    assert got["status"] == "kept" and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_each_method_runs_on_its_own_split_and_its_own_empty_cache(tmp_path):
    """A real bench/run.py: none, largest and search on seed 7 of a two-model word system."""
    text = (ROOT / "tests/words.yaml").read_text().replace(
        "value: local/smollm2-135m-instruct, choices: [local/smollm2-135m-instruct, "
        "local/gemma3-270m]", 'value: "${lm.model}", choices: "${lm.choices}"')
    config = tmp_path / "words.yaml"
    config.write_text(text + "lm: {choices: [local/smollm2-135m-instruct, local/gemma3-270m]}\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench/run.py"), "--config", str(config), "--methods",
         "none,largest,search", "--seeds", "7", "--root", str(tmp_path / "runs"), "--results",
         str(tmp_path / "results"), "--no-write", "optimizer.budget_system_runs=8"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = tmp_path / "results" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["largest", "none", "search"]
    summary = {m: json.loads((runs / m / "seed_7/summary.json").read_text())
               for m in ("none", "largest", "search")}
    for m in summary:
        cfg = yaml.safe_load((runs / m / "seed_7/config.yaml").read_text())
        assert cfg["data"]["seed"] == 7  # the seed's own split
        meta = json.loads((runs / m / "seed_7/bench.json").read_text())
        assert f"OPTIMAS_CACHE_DIR={tmp_path / 'runs/lmcache' / m / 'seed_7'} " in meta["command"]
        assert (tmp_path / "runs/lmcache" / m / "seed_7").is_dir()
    assert cfg_models(runs / "largest/seed_7") == {"local/gemma3-270m"}
    # search tests the same initial system on the same questions after `none` did: on a
    # shared cache its test would have replayed none's answers; on its own it calls the model
    calls = 2 * 4  # two components, four test questions
    assert summary["none"]["test_lm_calls"] == calls <= summary["search"]["test_lm_calls"]
    table = (tmp_path / "results/compare.md").read_text()
    assert "| none:largest | words |" in table and (tmp_path / "results/cost.png").exists()


def cfg_models(run: Path) -> set[str]:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    return {c["variables"]["model"]["value"] for c in cfg["system"]["components"].values()}


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


def test_a_recorded_command_names_paths_from_the_repository_root():
    root = bench_run.ROOT
    assert bench_run.from_root(root / "runs/bench/x/lmcache") == "runs/bench/x/lmcache"
    assert bench_run.from_root(f"run_dir={root}/runs/x/seed_1") == "run_dir=runs/x/seed_1"
    assert bench_run.from_root("/elsewhere/runs") == "/elsewhere/runs"  # outside: as given
