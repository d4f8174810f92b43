"""Rollout collection: candidates, scores, pair construction, gold candidates, resume."""

from __future__ import annotations

from pathlib import Path

import fns
import pytest

from optimas_cli.config import load
from optimas_cli.methods.optimas.collect import CollectContext, collect_rollouts, pairs_from_record
from optimas_cli.run_dir import RunDir
from optimas_cli.runtime import build_runtime

LINEAR = Path(__file__).parent / "linear.yaml"


@pytest.fixture
def rt(scripted_lm):
    return build_runtime(load(LINEAR), lm=scripted_lm())


def record(scores: list[float]) -> dict:
    return {"example_id": "e", "component": "scale", "fields": {"x": 3},
            "candidates": [{"outputs": {"y": i}, "score": s} for i, s in enumerate(scores)]}


def test_every_strictly_better_pair_is_kept_ties_are_not(rt):
    pairs = pairs_from_record(record([0.5, 1.0, 0.5, 0.0]), rt.system)
    got = sorted((p.chosen["y"], p.rejected["y"]) for p in pairs)
    # 1.0 beats three, each 0.5 beats 0.0; the two 0.5s tie: 5 pairs, whatever the order
    assert got == [(0, 3), (1, 0), (1, 2), (1, 3), (2, 3)]
    assert all(p.score_chosen > p.score_rejected for p in pairs)
    assert all(p.inputs == {"x": 3} and p.component == "scale" for p in pairs)
    assert not any(p.gold for p in pairs)
    with_gold = record([0.5, 1.0])
    with_gold["candidates"].append({"source": "gold", "outputs": {"y": 9}, "score": 1.0})
    flags = {(p.chosen["y"], p.rejected["y"]): p.gold for p in pairs_from_record(with_gold, rt.system)}
    assert flags == {(1, 0): False, (9, 0): True}  # the gold answer ties the 1.0: no pair


def test_a_pair_names_the_model_that_wrote_each_side(scripted_lm):
    words = build_runtime(load(Path(__file__).parent / "words.yaml"), lm=scripted_lm())
    small, big = "local/smollm2-135m-instruct", "local/gemma3-270m"
    rec = {"example_id": "e", "component": "upper", "fields": {"word": "cat"}, "candidates": [
        {"source": "current", "outputs": {"caps": "cat"}, "score": 0.0,
         "values": {"model": small, "prompt": "p"}},
        {"source": f"model={big}", "outputs": {"caps": "CAT"}, "score": 1.0,
         "values": {"model": big, "prompt": "p"}},
        {"source": "gold", "outputs": {"caps": "CAT!"}, "score": 0.5, "values": {}}]}
    got = {(p.chosen_writer, p.rejected_writer) for p in pairs_from_record(rec, words.system)}
    assert got == {(big, small), (big, "gold"), ("gold", small)}


def test_candidates_are_variable_values_scored_by_the_global_metric(rt, tmp_path):
    rd = RunDir(tmp_path)
    ex = rt.splits["train"][:3]
    cfg = rt.composed.run.optimizer.collect
    ctx = CollectContext(rt.system, "scale", rt.state, rt.metric, cfg)
    records = collect_rollouts(ctx, ex, rd, "r/scale.jsonl")
    for r, e in zip(records, ex, strict=True):
        x = e.inputs["x"]
        by_source = {c["source"]: c for c in r["candidates"]}
        assert set(by_source) == {"current", "factor=2", "factor=3"}
        assert by_source["factor=2"]["score"] == 1.0  # out = 2x + 1 exactly
        assert by_source["current"]["outputs"] == {"y": x}
        assert by_source["current"]["score"] == pytest.approx(1 / (1 + x))
        # each candidate is scored against its own example
        assert r["example_id"] == e.id and r["fields"]["x"] == x
    assert len(rd.read_jsonl("r/scale.jsonl")) == 3


def test_gold_is_a_top_candidate_of_the_final_component(rt, tmp_path):
    cfg = rt.composed.run.optimizer.collect
    ex = rt.splits["train"][:2]
    ctx = CollectContext(rt.system, "finish", rt.state, rt.metric, cfg)
    records = collect_rollouts(ctx, ex, RunDir(tmp_path), "r/finish.jsonl")
    for r, e in zip(records, ex, strict=True):
        gold = [c for c in r["candidates"] if c["source"] == "gold"]
        assert gold and gold[0]["outputs"] == {"out": e.target["out"]} and gold[0]["score"] == 1.0
    pairs = [p for r in records for p in pairs_from_record(r, rt.system)]
    # the current output (out = x + 1) is wrong, so gold beats it in every input's pair
    assert len(pairs) == 2 and all(p.score_chosen == 1.0 and p.score_rejected < 1.0 for p in pairs)


def test_collection_resumes_without_redoing_finished_inputs(rt, tmp_path, monkeypatch):
    rd = RunDir(tmp_path)
    cfg = rt.composed.run.optimizer.collect.model_copy(update={"workers": 1})
    ex = rt.splits["train"][:5]
    real = fns.scale

    def killed_after(n):
        def scale(x, factor):
            if fns.CALLS["scale"] >= n:
                raise KeyboardInterrupt  # a kill: not recorded as a step error
            return real(x, factor)
        return scale

    fns.CALLS["scale"] = 0
    monkeypatch.setattr(rt.system.components["scale"], "fn", killed_after(6))  # 3 values x 2 inputs
    ctx = CollectContext(rt.system, "scale", rt.state, rt.metric, cfg)
    with pytest.raises(KeyboardInterrupt):
        collect_rollouts(ctx, ex, rd, "r/scale.jsonl")
    assert len(rd.read_jsonl("r/scale.jsonl")) == 2
    fns.CALLS["scale"] = 0
    monkeypatch.setattr(rt.system.components["scale"], "fn", real)
    records = collect_rollouts(ctx, ex, rd, "r/scale.jsonl")
    assert [r["example_id"] for r in records] == [e.id for e in ex]
    assert fns.CALLS["scale"] == 3 * 3  # only the three unfinished inputs were run
