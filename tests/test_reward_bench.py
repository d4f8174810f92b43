"""bench/rewards/evaluate.py and designs.py: the reward benchmark's metrics, designs, controls
and cross-validation."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "rewards"))

import designs as rd  # noqa: E402
import evaluate as rb  # noqa: E402


def _records(n: int = 40, seed: int = 0) -> list[dict]:
    """n inputs; per input a strong model (right 80% of the time), a weak one (right 20%),
    a weak sample, and the gold answer. The right answer is the input's own phrase, longer
    than the wrong ones (so that the shorter answer is usually the wrong one)."""
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        right = f"the answer to question {i}"
        cands = []
        for model, p, source in [("big", 0.8, "model=big"), ("small", 0.2, "current"),
                                 ("small", 0.2, "sample:1")]:
            ok = rng.random() < p
            cands.append({"source": source, "also": [], "model": model,
                          "outputs": {"answer": right if ok else f"{model[0]}{rng.randrange(99)}"},
                          "score": 1.0 if ok else 0.0})
        cands.append({"source": "gold", "also": [], "model": None,
                      "outputs": {"answer": right}, "score": 1.0})
        recs.append({"example_id": str(i), "component": "c", "inputs": {"q": right},
                     "candidates": cands})
    return recs


@pytest.fixture
def task():
    return rb.Task("synthetic", records=_records())


def _summary(task, scorer):
    r, _ = rb.cross_validate(task, scorer)
    return rb.summarize(rb.per_input(task, r))


def test_the_true_score_ranks_every_sampled_pair_and_recovers_the_whole_gap(task):
    s = _summary(task, rd.Fixed(task.score.copy()))
    assert s["accuracy"] == 1.0 and s["recovered"] == pytest.approx(1.0)
    assert s["pick"] == pytest.approx(s["oracle"])
    assert s["pairs"] == len(task.pairs(sorted(task.by_rec), True)) > 0


def test_a_constant_reward_is_half_right_and_picks_at_random(task):
    s = _summary(task, rd.Fixed(np.zeros(len(task.score))))
    assert s["accuracy"] == 0.5 and s["recovered"] == pytest.approx(0.0)


def test_gold_is_never_a_side_of_a_judged_pair(task):
    # gold on top, every other candidate in the wrong order: judged pairs are all wrong
    r = np.where(task.gold, 100.0, -task.score)
    s = _summary(task, rd.Fixed(r))
    assert s["accuracy"] == 0.0


def test_held_out_inputs_get_nothing_of_what_training_saw(task):
    class Memorizer:  # knows the scores of its training inputs only
        def scores(self, task, train, rng):
            r = np.zeros(len(task.score))
            for rec in train:
                r[task.by_rec[rec]] = task.score[task.by_rec[rec]]
            return r

    assert _summary(task, Memorizer())["accuracy"] == 0.5


def test_model_identity_learns_which_model_usually_wins(task):
    s = _summary(task, rd.ModelIdentity())
    big = np.array([m == "big" for m in task.model])
    pairs = task.pairs(sorted(task.by_rec), True)
    # it ranks every big-vs-small pair big first and ties small-vs-small: exactly this accuracy
    expect = np.mean([1.0 if big[a] and not big[b] else 0.0 if big[b] and not big[a] else 0.5
                      for a, b in pairs])
    assert s["accuracy"] == pytest.approx(expect)


def test_a_head_learns_an_informative_feature_and_beats_the_controls():
    task = rb.Task("synthetic", records=_records(80, seed=1))
    rng = np.random.default_rng(0)
    x = np.stack([task.score + rng.normal(0, 0.1, len(task.score)),
                  rng.normal(0, 1, len(task.score))], 1)
    scorers = {"head": rd.HeadDesign(x), **{k: v() for k, v in rd.CONTROLS.items()}}
    held = {k: rb.per_input(task, rb.cross_validate(task, v)[0]) for k, v in scorers.items()}
    assert rb.summarize(held["head"])["accuracy"] > 0.95
    for control in rd.CONTROLS:
        assert rb.paired_vs(held["head"], held[control])["ci"][0] > 0


def test_output_prior_and_shorter_wins_never_look_at_the_input(task):
    prior = rd.OutputPrior().scores(task, sorted(task.by_rec), random.Random(0))
    same_text = [k for k, t in enumerate(task.text) if t == task.text[0]]
    assert len({prior[k] for k in same_text}) == 1
    shorter = rd.ShorterWins().scores(task, [], random.Random(0))
    assert shorter[np.argmin(task.length)] == shorter.max()


def test_best_static_fixes_the_source_best_on_the_other_folds(task):
    # "model=big" is right 80% of the time, "current" and "sample:1" 20%: every fold picks big
    static = rb.best_static(task)
    recs = sorted(task.by_rec)
    big = [task.score[[k for k in task.by_rec[r] if "model=big" in task.sources[k]][0]]
           for r in recs]
    assert np.array_equal(static, np.array(big))
    r, _ = rb.cross_validate(task, rd.Fixed(task.score.copy()))
    s = rb.summarize(rb.per_input(task, r), static)
    assert s["static"] == pytest.approx(np.mean(big))
    assert s["pick_minus_static"] > 0 and s["pick_minus_static_ci"][0] > 0  # the oracle beats it
    r, _ = rb.cross_validate(task, rd.Fixed(np.zeros(len(task.score))))
    s = rb.summarize(rb.per_input(task, r), static)
    assert s["pick_minus_static"] < 0  # a random pick does not


def test_a_writer_head_adds_the_writing_model_to_what_the_judge_reads(monkeypatch):
    # the judge ranks the weak model's own outputs (sample against configured) and is noise
    # on the strong model's: alone it cannot rank big against small, the writer alone cannot
    # rank small against small; the head on both ranks both kinds of pair
    task = rb.Task("synthetic", records=_records(80, seed=2))
    rng = np.random.default_rng(0)
    n = len(task.score)
    small = np.array(task.model) == "small"
    judge = np.where(small, task.score + rng.normal(0, 0.1, n), rng.normal(0, 3.0, n))
    block = {"judge": judge, "loglik": rng.normal(0, 1, n), "loglik_sum": rng.normal(0, 1, n),
             "last": rng.normal(0, 1, (n, 3)), "mean": rng.normal(0, 1, (n, 3))}

    def load(name, b):
        if b != "qwen15":
            raise FileNotFoundError(b)
        return block, {}

    monkeypatch.setattr(rd, "load", load)
    ds = rd.designs(task)
    held = {k: rb.per_input(task, rb.cross_validate(task, v)[0])
            for k, v in [("judge", ds["qwen15_judge"]), ("both", ds["qwen15_judge+writer"]),
                         ("writer", rd.ModelIdentity())]}
    acc = {k: rb.summarize(v)["accuracy"] for k, v in held.items()}
    assert acc["both"] > max(acc["judge"], acc["writer"]) + 0.05
    assert rb.paired_vs(held["both"], held["writer"])["ci"][0] > 0


def test_a_partial_collection_resumes_only_under_the_spec_it_was_collected_under(tmp_path):
    import collect

    spec = {"config": "configs/x.yaml", "component": "c", "inputs": 3, "overrides": []}
    partial = tmp_path / "t.partial.jsonl"
    assert collect.read_partial(partial, spec) == {}  # a new collection: nothing to resume
    partial.write_text('{"example_id": "a", "n": 1}\n{"example_id": "b", "n"', encoding="utf-8")
    collect._spec_path(partial).write_text(json.dumps(spec), encoding="utf-8")  # as collect() keeps it
    assert list(collect.read_partial(partial, spec)) == ["a"]  # a torn last line is dropped
    changed = {**spec, "overrides": ["x=1"]}
    with pytest.raises(SystemExit, match="t.partial.jsonl: collected under .* tasks.yaml now says"):
        collect.read_partial(partial, changed)


def test_outputs_with_no_recorded_writer_share_one_writer_apart_from_gold():
    # a component without a model variable (Amazon's decider) records no writer: its own
    # outputs are the configured model's, never in the gold answer's column
    recs = _records(10)
    for r in recs:
        for c in r["candidates"]:
            if c["source"] != "gold":
                c["model"] = None
    task = rb.Task("synthetic", records=recs)
    onehot = rd.writer_onehot(task)
    own = ~task.gold
    assert onehot.shape[1] == 2 and (onehot[own] == onehot[own][0]).all()
    assert not (onehot[task.gold] == onehot[own][0]).all(axis=1).any()


def test_an_llm_blocks_scalars_are_kept_in_the_repo_and_stand_in_for_a_missing_cache(
        tmp_path, monkeypatch):
    import features

    cache, data = tmp_path / "cache", tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("OPTIMAS_REWARD_BENCH_CACHE", str(cache))
    monkeypatch.setattr(features, "DATA", data)
    task = rb.Task("t.c", records=_records(30))
    n = len(task.score)
    rng = np.random.default_rng(0)
    block = {k: rng.normal(size=n).astype(np.float32) for k in features.SCALARS}
    block |= {"last": rng.normal(size=(n, 8)), "mean": rng.normal(size=(n, 8))}
    np.savez(features.block_path("t.c", "qwen15"), meta=json.dumps({"seconds": 1.0, "inputs": 30}),
             **block)
    for b in ("minilm", "lexical"):
        np.savez(features.block_path("t.c", b), meta="{}", x=rng.normal(size=(n, 4)))
    features.compute("t.c", "qwen15")  # cached already: only writes what the repo keeps
    kept = np.load(features.kept_path("t.c", "qwen15"))
    assert sorted(kept.files) == sorted(["meta", *features.SCALARS])
    assert np.array_equal(kept["judge"], block["judge"])
    assert {"qwen15_last_head", "qwen15_judge", "qwen15_scalars+lexical"} <= set(rd.designs(task))
    features.block_path("t.c", "qwen15").unlink()  # a new machine: no cache
    arrays, meta = features.load("t.c", "qwen15")
    assert set(arrays) == set(features.SCALARS) and meta["inputs"] == 30
    got = set(rd.designs(task))
    assert {"qwen15_judge", "qwen15_judge+writer", "qwen15_scalars+lexical"} <= got
    assert not any(k.endswith(("last_head", "mean_head")) or "mean+" in k for k in got)
