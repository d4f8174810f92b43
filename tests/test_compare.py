"""`optimas compare` on a real multirun sweep of tests/linear.yaml (none and search, two seeds)."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from optimas_cli.compare import compare, find_runs, register
from optimas_cli.sweep import launch

LINEAR = Path(__file__).parent / "linear.yaml"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Four real runs: optimizer none|search x seed 0|1 (data.seed follows: other test splits)."""
    root = tmp_path_factory.mktemp("sweep")
    return launch("run", str(LINEAR), [f"run_root={root}", "optimizer=none,search", "seed=0,1",
                                       "data.seed=${seed}"], sweep_dir=str(root / "sweep"))


def _summaries(sweep: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for run in find_runs([sweep]):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        s = json.loads((run / "summary.json").read_text())
        h = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()] if (
            run / "history.jsonl").exists() else []
        out.setdefault(cfg["optimizer"]["name"], []).append({"summary": s, "history": h,
                                                            "seed": cfg["seed"]})
    return out


def test_compare_table_has_mean_and_std_over_seeds(sweep, tmp_path):
    runs = find_runs([sweep])
    assert len(runs) == 4 and all((r / "summary.json").exists() for r in runs)
    expected = _summaries(sweep)
    rows, skipped = compare([sweep], tmp_path / "out")
    assert not skipped
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"none", "search"} and {r["system"] for r in rows} == {"linear"}
    for method, runs_ in expected.items():
        row = by_method[method]
        tests = [x["summary"]["test"]["final"]["mean"] for x in runs_]
        assert row["seeds"] == len(tests) == 2
        assert sorted(x["seed"] for x in runs_) == [0, 1]
        assert row["test_mean"] == pytest.approx(statistics.fmean(tests))
        assert row["test_std"] == pytest.approx(statistics.stdev(tests))
        spent = [x["history"][-1]["system_runs"] if x["history"] else 0 for x in runs_]
        assert row["system_runs"] == pytest.approx(statistics.fmean(spent))
        walls = [x["summary"]["wall_time_s"] for x in runs_]
        assert all(w > 0 for w in walls)  # a real run takes time
        assert row["wall_time_s"] == pytest.approx(statistics.fmean(walls))
        cpus = [x["summary"]["cpu_s"] for x in runs_]
        assert all(c > 0 for c in cpus) and row["cpu_s"] == pytest.approx(statistics.fmean(cpus))
        # the paired difference pools (seed, question) pairs of both seeds
        final = [v for x in runs_ for v in x["summary"]["test"]["final"]["scores"]]
        initial = [v for x in runs_ for v in x["summary"]["test"]["initial"]["scores"]]
        assert row["diff_n"] == len(final) == 20
        assert row["diff_mean"] == pytest.approx(statistics.fmean(final) - statistics.fmean(initial))
        assert row["diff_low"] <= row["diff_mean"] <= row["diff_high"]
    assert by_method["search"]["test_mean"] == 1.0 and by_method["search"]["test_std"] == 0.0
    assert by_method["none"]["test_std"] > 0  # two different test splits
    # the unoptimized system differs from itself by exactly 0; search's gain is beyond noise
    assert by_method["none"]["diff_low"] == by_method["none"]["diff_high"] == 0.0
    assert by_method["search"]["diff_low"] > 0
    # `none` spends one validation pass (val_size=10), so its curve has a point; search more
    assert by_method["none"]["system_runs"] == 10 < by_method["search"]["system_runs"]
    out = tmp_path / "out"
    with (out / "compare.csv").open() as f:
        table = {r["method"]: r for r in csv.DictReader(f)}
    assert float(table["none"]["test_mean"]) == pytest.approx(by_method["none"]["test_mean"])
    assert float(table["none"]["test_std"]) == pytest.approx(by_method["none"]["test_std"])
    md = (out / "compare.md").read_text()
    assert "| search | linear | 2 | 1.0000 ± 0.0000 |" in md
    # per seed: each run's final (and initial) test score
    for method, runs_ in expected.items():
        cells = {x["seed"]: x["summary"]["test"] for x in runs_}
        row = " | ".join(f"{cells[s]['final']['mean']:.4f} (from {cells[s]['initial']['mean']:.4f})"
                         for s in (0, 1))
        assert f"| {method} | linear | {row} |" in md
    assert (out / "compare.png").stat().st_size > 1000
    # no LM in this system: its inference costs no token and no LM second
    assert by_method["search"]["tokens_per_question"] == 0
    assert by_method["search"]["lm_seconds_per_question"] == 0
    assert (out / "cost.png").stat().st_size > 1000
    vals = [x["summary"]["val"]["final"] for rs in expected.values() for x in rs]
    tests = [x["summary"]["test"]["final"]["mean"] for rs in expected.values() for x in rs]
    r = statistics.correlation(vals, tests)
    assert f"- linear: validation and test scores of the final systems correlate at r = {r:.2f} " \
           "over 4 runs." in md


def test_a_tag_names_its_own_row(sweep, tmp_path):
    import shutil

    none = [r for r in find_runs([sweep])
            if yaml.safe_load((r / "config.yaml").read_text())["optimizer"]["name"] == "none"]
    tagged = tmp_path / "tagged"
    shutil.copytree(none[0], tagged)
    cfg = yaml.safe_load((tagged / "config.yaml").read_text())
    (tagged / "config.yaml").write_text(yaml.safe_dump(cfg | {"tag": "largest"}))
    rows, _ = compare([*none, tagged])
    assert sorted((r["method"], r["seeds"]) for r in rows) == [("none", 2), ("none:largest", 1)]


def test_compare_groups_by_extra_keys_and_accepts_run_dirs(sweep):
    runs = find_runs([sweep])
    rows, _ = compare(runs, by=("data.seed",))
    assert sorted((r["method"], r["seeds"]) for r in rows) == [
        ("none [seed=0]", 1), ("none [seed=1]", 1),
        ("search [seed=0]", 1), ("search [seed=1]", 1)]
    assert all(r["test_std"] == 0.0 for r in rows)  # one seed each


def test_compare_command(sweep, tmp_path):
    app = typer.Typer()
    register(app)

    @app.command()
    def _other():  # a second command, so typer keeps `compare` as a subcommand
        pass

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("optimizer: {name: search}\n")
    result = CliRunner().invoke(app, ["compare", str(sweep), str(unfinished),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "search" in result.output and "skipped" in result.output
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"compare.md", "compare.csv",
                                                            "compare.png", "cost.png"}
    result = CliRunner().invoke(app, ["compare", str(unfinished)])
    assert result.exit_code == 1 and "no finished runs" in result.output


def test_versus_pairs_two_methods_on_the_same_seeds_and_questions(sweep):
    from optimas_cli import versus
    from optimas_cli.compare import group, load_run

    runs = [load_run(p) for p in find_runs([sweep])]
    (row,) = versus.versus(group(runs), reference="search")
    # `none` ends on the initial system, so search − none is search's own gain over the initial
    # system on the same (seed, question) pairs
    expected = _summaries(sweep)["search"]
    final = [v for x in expected for v in x["summary"]["test"]["final"]["scores"]]
    initial = [v for x in expected for v in x["summary"]["test"]["initial"]["scores"]]
    assert row["method"] == "none" and sorted(row["seeds"]) == [0, 1] and row["n"] == 20
    assert row["mean"] == pytest.approx(statistics.fmean(final) - statistics.fmean(initial))
    assert row["low"] > 0 and row["wins"] > 0 and row["losses"] == 0
    assert "| search − none | linear | " in versus.to_markdown([row])
    # a run on another data split is not paired with the reference's questions
    for r in runs:
        if r.method == "none" and r.seed == 1:
            r.data = r.data + " (other)"
    (row,) = versus.versus(group(runs), reference="search")
    assert row["seeds"] == [0] and row["n"] == 10
    assert versus.versus(group(runs), reference="optimas") == []  # no reference: no rows


def test_compare_shows_the_metrics_the_score_hides(sweep, tmp_path):
    """A system's other test metrics (PubMedQA's said_yes) get a column, mean over seeds; the
    score's own metric (equal to it in every run) is left out, and without any no column."""
    import shutil

    md_plain = compare([sweep], tmp_path / "plain")[0]
    assert all(r["test_metrics"] == {} for r in md_plain)
    assert "final test metrics" not in (tmp_path / "plain" / "compare.md").read_text()
    copies = []
    for i, run in enumerate(find_runs([sweep])):
        dst = tmp_path / "runs" / f"r{i}"
        shutil.copytree(run, dst)
        s = json.loads((dst / "summary.json").read_text())
        final = s["test"]["final"]
        final["metrics"] = {"score": {"mean": final["mean"]}, "accuracy": {"mean": final["mean"]},
                            "said_yes": {"mean": 0.25 * (i + 1)}}
        (dst / "summary.json").write_text(json.dumps(s))
        copies.append((dst, 0.25 * (i + 1)))
    rows, _ = compare([tmp_path / "runs"], tmp_path / "out")
    for row in rows:
        mine = [v for d, v in copies if str(d.resolve()) in row["runs"].split()]
        assert len(mine) == 2
        assert row["test_metrics"] == {"said_yes": pytest.approx(statistics.fmean(mine))}
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "final test metrics" in md and "said_yes" in md and "accuracy" not in md
    with (tmp_path / "out" / "compare.csv").open() as f:
        assert all("said_yes" in json.loads(r["test_metrics"]) for r in csv.DictReader(f))


def test_a_run_replayed_from_the_cache_has_its_costs_marked(sweep, tmp_path):
    """A seed that made no model call while its requests were all cache hits did not pay
    what the method costs: the table says so next to its LM calls, tokens and wall time."""
    import shutil

    for i, run in enumerate(find_runs([sweep])):
        dst = tmp_path / "runs" / f"r{i}"
        shutil.copytree(run, dst)
        cfg = yaml.safe_load((dst / "config.yaml").read_text())
        lines = (dst / "history.jsonl").read_text().splitlines()
        last = json.loads(lines[-1])
        replay = cfg["optimizer"]["name"] == "search" and cfg["seed"] == 0
        last.update(lm_calls=0 if replay else 7, lm_requests=12)
        (dst / "history.jsonl").write_text("\n".join(lines[:-1] + [json.dumps(last)]) + "\n")
    rows, _ = compare([tmp_path / "runs"], tmp_path / "out")
    assert {r["method"]: r["replayed"] for r in rows} == {"none": 0, "search": 1}
    md = (tmp_path / "out" / "compare.md").read_text().splitlines()
    search = next(x for x in md if x.startswith("| search"))
    none = next(x for x in md if x.startswith("| none"))
    assert search.count("(replay: 1 of 2)") == 3 and "replay" not in none
    assert any("cache hit" in x for x in md)


def test_the_console_table_has_the_paired_interval_of_compare_md_in_full_rows(sweep, tmp_path,
                                                                              monkeypatch):
    """The console shows final − initial with its interval, as compare.md does; output that is
    not a terminal gets every row whole (no cut at 80 columns)."""
    monkeypatch.delenv("COLUMNS", raising=False)
    app = typer.Typer()
    register(app)
    app.command()(lambda: None)  # a second command, so typer keeps `compare` as a subcommand
    result = CliRunner().invoke(app, ["compare", str(sweep), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    rows, _ = compare([sweep])
    md = (tmp_path / "o" / "compare.md").read_text()
    assert "final − initial [95% CI]" in result.output
    for r in rows:
        interval = f"{r['diff_mean']:+.3f} [{r['diff_low']:+.3f}, {r['diff_high']:+.3f}]"
        row = next(line for line in result.output.splitlines() if f"│ {r['method']} " in line)
        assert interval in row and len(row) > 80  # one line: nothing folded or cut
        assert f"{r['diff_mean']:+.4f} [{r['diff_low']:+.4f}, {r['diff_high']:+.4f}]" in md


def test_runs_whose_config_leaves_the_seed_to_the_schema_are_paired_as_seed_0(sweep, tmp_path):
    """compare.md's versus table once said "seeds paired | None" for such runs."""
    import shutil

    from optimas_cli import versus
    from optimas_cli.compare import group, load_run

    runs = []
    for i, run in enumerate(p for p in find_runs([sweep])
                            if yaml.safe_load((p / "config.yaml").read_text())["seed"] == 0):
        dst = tmp_path / f"r{i}"
        shutil.copytree(run, dst)
        cfg = yaml.safe_load((dst / "config.yaml").read_text())
        del cfg["seed"]
        (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
        runs.append(load_run(dst))
    assert [r.seed for r in runs] == [0, 0]
    md = versus.to_markdown(versus.versus(group(runs), reference="search"))
    assert "| search − none | linear | 0 |" in md and "None" not in md
