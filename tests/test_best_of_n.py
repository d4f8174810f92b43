"""bench/rewards/best_of_n.py: best-of-n and the per-input model choice against the best single
source at no more inference cost."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "rewards"))
sys.path.insert(0, str(ROOT / "tests"))

import best_of_n as bon  # noqa: E402
import designs as rd  # noqa: E402
import evaluate as rb  # noqa: E402
from test_reward_bench import _records  # noqa: E402

# "small" is the configured model (the current output and a sample of it); "big" costs 10x
COSTS = {"calls": {"small": 1.0, "big": 10.0}, "reward_per_candidate": {"minilm": 0.5},
         "configured": "small"}


@pytest.fixture
def task():
    return rb.Task("synthetic", records=_records(200))


def _draw_scores(task):
    return np.array([[task.score[k] for k in bon.draws_of(task, rec)] for rec in sorted(task.by_rec)])


def test_best_of_n_by_the_score_itself_is_the_best_draw_and_by_a_constant_their_mean(task):
    draws = _draw_scores(task)
    assert np.allclose(bon.best_of(task, task.score, 1), draws[:, 0])
    assert np.allclose(bon.best_of(task, task.score, 2), draws.max(1))
    assert np.allclose(bon.best_of(task, np.zeros(len(task.score)), 2), draws.mean(1))


def test_the_static_choice_never_costs_more_than_the_budget(task):
    sources = bon.source_scores(task)
    cost = {"current": 1.0, "model=big": 10.0}
    cheap, chosen = bon.static_within(task, sources, cost, budget=3.0)
    assert set(chosen) == {"current"} and np.allclose(cheap, sources["current"])
    rich, chosen = bon.static_within(task, sources, cost, budget=10.0)
    assert set(chosen) == {"model=big"}  # right 80% of the time against 20%
    assert np.nanmean(rich) > np.nanmean(cheap)


def test_costs_and_differences_per_row(task):
    res = bon.evaluate(task, {"minilm_head": rd.Fixed(task.score.copy())}, COSTS)
    rows = res["designs"]["minilm_head"]
    assert rows["1"]["cpu_s"] == 1.0 and rows["2"]["cpu_s"] == 2 * (1.0 + 0.5)
    # the per-input model choice pays every model's call and the reward on each output
    assert rows["per-input model"]["cpu_s"] == 1.0 + 10.0 + 2 * 0.5
    assert set(rows["per-input model"]["static_sources"]) == {"model=big"}
    # a perfect reward choosing per input beats the best static source it pays for
    lo, hi = rows["per-input model"]["minus_static_ci"]
    assert rows["per-input model"]["minus_static"] > 0 and lo > 0
    # best-of-2 of the small model (cost 3) is compared with the small model alone
    assert set(rows["2"]["static_sources"]) == {"current"}
    assert rows["2"]["minus_static"] == pytest.approx(rows["2"]["score"] - rows["1"]["score"])
    assert res["designs"]["oracle"]["2"]["cpu_s"] == 2.0  # the oracle costs no reward


def test_the_table_names_the_static_source_and_the_interval(task):
    res = bon.evaluate(task, {}, COSTS)
    text = bon.render([res], "abc")
    assert "| oracle | 2 |" in text and "(current)" in text and "big" in text
