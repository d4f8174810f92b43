"""End to end with the real embedded model, through the real command line (slow; runs in CI)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from optimas_cli.config import PROJECT_CONFIGS

pytestmark = pytest.mark.slow
HOTPOT = str(PROJECT_CONFIGS / "hotpotqa.yaml")


def optimas(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPTIMAS_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "optimas_cli.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1800)


def only_run(root: Path) -> Path:
    (run,) = list((root / "hotpotqa").iterdir())
    return run


def test_evaluate_hotpotqa_offline_then_rerun_from_cache(tmp_path, isolated_cache, hotpot_path):
    first = optimas("evaluate", HOTPOT, "data.test_size=3", f"run_root={tmp_path}/a", "-q",
                    cwd=tmp_path, cache=isolated_cache)
    assert first.returncode == 0, first.stderr
    run = only_run(tmp_path / "a")
    assert {"config.yaml", "overrides.txt", "run.log", "predictions.jsonl", "metrics.json",
            "DONE"} <= {p.name for p in run.iterdir()}
    assert f"run directory: {run}" in first.stderr.replace("\n", "")
    m1 = json.loads((run / "metrics.json").read_text())
    assert m1["n"] == 3 and m1["failed"] == 0 and 0.0 <= m1["mean"] <= 1.0
    assert m1["lm"]["total"]["calls"] == 3 * 4  # four llm components per example
    preds = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert all(p["trace"]["steps"][-1]["outputs"]["answer"] == p["prediction"] for p in preds)
    # the same evaluation again: every answer comes from the persistent cache
    second = optimas("evaluate", HOTPOT, "data.test_size=3", f"run_root={tmp_path}/b", "-q",
                     cwd=tmp_path, cache=isolated_cache)
    assert second.returncode == 0, second.stderr
    m2 = json.loads((only_run(tmp_path / "b") / "metrics.json").read_text())
    assert m2["lm"]["total"]["calls"] == 0 and m2["lm"]["total"]["cache_hits"] == 12
    assert m2["mean"] == m1["mean"]


def test_joblib_multirun_over_retriever_k(tmp_path, isolated_cache, hotpot_path):
    result = optimas("evaluate", HOTPOT, "--multirun", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=2", "data.test_size=2", f"run_root={tmp_path}",
                     "system.components.retriever.variables.k.value=1,10",
                     cwd=tmp_path, cache=isolated_cache)
    assert result.returncode == 0, result.stderr
    assert "Joblib" in result.stdout + result.stderr
    sweep = only_run(tmp_path)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 2 and all((j / "DONE").exists() for j in jobs)
    metrics = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    ctx = [m["per_component"]["answer_generator"]["prompt_tokens"] for m in metrics]
    assert ctx[0] < ctx[1]  # k=10 puts more retrieved text in front of the answer generator


def progress_lines(stderr: str) -> list[str]:
    """The plain progress lines of a command's stderr (a pipe), without their time stamps."""
    return [m.group(1) for m in re.finditer(r"^\[\d+:\d\d:\d\d\] (.*)$", stderr, re.M)]


def test_run_optimas_loop_small_budget(tmp_path, isolated_cache, hotpot_path):
    # hotpotqa_ci.yaml, cut further so the suite stays well inside CI's time on 2 cores; a
    # budget that never binds here (10 system runs spent), so progress shows it against a total
    tiny = ["data.train_size=6", "data.val_size=3", "data.test_size=3",
            "optimizer.num_iterations=1", "optimizer.collect.num_inputs=2",
            "optimizer.collect.num_samples=1", "optimizer.update.num_candidates=1",
            "optimizer.update.per_component_train_size=2", "optimizer.budget_system_runs=40"]
    result = optimas("run", str(PROJECT_CONFIGS / "hotpotqa_ci.yaml"), f"run_root={tmp_path}",
                     *tiny, cwd=tmp_path, cache=isolated_cache)
    assert result.returncode == 0, result.stderr[-3000:]
    # stderr is a pipe: plain progress lines, in the order of the run's stages
    shown = progress_lines(result.stderr)
    order = [next(i for i, x in enumerate(shown) if x.startswith(start)) for start in (
        "initial validation | 0/40 system runs", "val initial: 3/3 examples in",
        "iteration 1/1 | collect | answer_generator", "collect answer_generator: 2/2 examples",
        "iteration 1/1 | fit | answer_generator", "iteration 1/1 | update | answer_generator",
        "iteration 1/1 | kept the incumbent",
        "test | initial system", "test initial: 3/3 examples in", "test | final system")]
    assert order == sorted(order), shown
    spent = [int(m.group(1)) for x in shown for m in [re.search(r" (\d+)/40 system runs", x)] if m]
    assert spent[0] == 0 and spent == sorted(spent) and spent[-1] > 0, shown
    # third-party noise a user cannot act on is silenced at its source
    assert "use_cache" not in result.stderr and "Writing model shards" not in result.stderr
    run = only_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["test"]) == {"initial", "final"}
    assert summary["system_runs"] > 0 and summary["lm_calls"] > 0
    assert summary["peak_rss_mb"] > 100  # measured: a process with torch and an LLM loaded
    assert len(summary["iterations"]) == 1
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    it = history[1]
    # the final component goes first, and the gold answer gives it preference pairs
    assert it["component"] == "answer_generator" and it["pairs"] >= 1 and "skipped" not in it
    # alignment was measured on held-out pairs, and the summary reports the iteration's figure
    held = summary["lrf_heldout"]["answer_generator"]
    assert held["n_pairs"] > 0 and held == it["lrf"]
    # temperature 0, fresh cache: every model scores 0 on the collected inputs, and the head
    # is right only against the gold answer (no held-out pair of its own outputs), so it is
    # not trusted (rewards/trust.py): the tie keeps the current model, the prompt is held, and
    # with nothing changed nothing is validated; the final state is the initial one
    assert held["trust"]["trusted"] is False and "own outputs" in held["trust"]["reason"]
    update = {v["type"]: v for v in it["update"]["variables"]}
    assert update["model"]["decided_by"].startswith("measured return; the tie kept: ")
    assert set(it["tied"]["model"]) == {c["value"] for c in update["model"]["candidates"]}
    assert update["prompt"]["held"].startswith("the local reward is not trusted")
    assert not it["changed"] and "decision" not in it and it["val_before"] == it["val_after"]
    final = yaml.safe_load((run / "final/system.yaml").read_text())["state"]
    assert final == history[0]["state"]
    # its inference cost per test question is the initial system's, measured on real calls
    cost = summary["inference"]
    assert cost["final"] == cost["initial"] and cost["initial"]["tokens_per_question"] > 100
    assert cost["initial"]["lm_seconds_per_question"] > 0
    assert (run / "val_score.png").stat().st_size > 0
    # the optimized state evaluates again, from the cache, with the same test score
    again = optimas("evaluate", str(PROJECT_CONFIGS / "hotpotqa_ci.yaml"), f"run_root={tmp_path}/e",
                    f"system_state={run}/final/system.yaml", "-q", *tiny, cwd=tmp_path,
                    cache=isolated_cache)
    assert again.returncode == 0, again.stderr[-2000:]
    assert progress_lines(again.stderr) == []  # -q: no progress
    (e,) = list((tmp_path / "e" / "hotpotqa").iterdir())
    assert json.loads((e / "metrics.json").read_text())["mean"] == pytest.approx(
        summary["test"]["final"]["mean"])


def _predictions(run: Path) -> list[dict]:
    """predictions.jsonl without the timings, the only fields that may differ between runs."""
    out = []
    for line in (run / "predictions.jsonl").read_text().splitlines():
        r = json.loads(line)
        for step in r["trace"]["steps"]:
            step.pop("latency_s")
            step["usage"].pop("latency_s")
        out.append(r)
    return sorted(out, key=lambda r: r["id"])


def test_evaluation_is_the_same_under_other_hash_seeds_and_worker_counts(tmp_path, hotpot_path):
    runs = []
    for hash_seed, workers in (("0", 1), ("4242", 4)):
        root = tmp_path / f"h{hash_seed}"
        env_cache = tmp_path / f"cache{hash_seed}"  # no shared cache: both really generate
        env = dict(os.environ, OPTIMAS_CACHE_DIR=str(env_cache), PYTHONHASHSEED=hash_seed)
        r = subprocess.run([sys.executable, "-m", "optimas_cli.cli", "evaluate", HOTPOT,
                            "data.test_size=4", f"eval.workers={workers}", f"run_root={root}",
                            "-q"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(only_run(root))
    a, b = (_predictions(r) for r in runs)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
