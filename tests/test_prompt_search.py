"""Prompt search and choice scoring against a local reward, with a scripted LM and a fake LRF."""

from __future__ import annotations

import random

import pytest
from test_baselines import SMOL, WORDS, component_script

from optimas_cli.config import load
from optimas_cli.methods.optimas.updaters.common import (
    UpdateContext,
    beats_incumbent,
    best_of,
    observed_return,
)
from optimas_cli.methods.optimas.updaters.prompt import (
    bootstrap_demos,
    clean_instruction,
    optimize_prompt,
    split_records,
)
from optimas_cli.runtime import build_runtime
from optimas_cli.schema import UpdateConfig

TRUSTED = {"trusted": True}
UNTRUSTED = {"trusted": False, "reason": "too few pairs"}


class CapsReward:
    """A local reward that likes capital letters: 1 per upper-case output, else 0."""

    def score(self, name, inputs, outputs):
        return [float(str(o.get("caps", "")).isupper()) for o in outputs]


def record(word, candidates):
    return {"example_id": word, "component": "upper", "fields": {"word": word},
            "candidates": [{"source": s, "outputs": {"caps": o}, "score": sc, "values": {}}
                           for s, o, sc in candidates]}


RECORDS = [record(w, [("current", w, 0.5), ("model=gemma", w.upper(), 1.0)])
           for w in ("apple", "river", "stone", "cloud", "tiger", "maple")]


def test_demos_never_come_from_the_scoring_inputs():
    pool, scoring = split_records(RECORDS, 4, random.Random(0))
    assert len(scoring) == 4 and len(pool) == 2
    assert not {r["example_id"] for r in pool} & {r["example_id"] for r in scoring}
    # with as many scoring inputs asked as there are inputs, one is still kept for demos
    pool, scoring = split_records(RECORDS, 10, random.Random(0))
    assert len(pool) == 1 and len(scoring) == 5


def test_a_demo_is_a_good_trace_never_an_empty_or_low_scoring_one():
    recs = [record("apple", [("current", "", 1.0), ("sample:1", "APPLE", 0.2)]),  # empty / low
            record("river", [("current", "RIVER", 1.0), ("sample:1", "river", 0.5)]),
            record("stone", [("current", "stone", 0.0)])]  # best score 0: no demo
    demos = bootstrap_demos(words_system(), "upper", recs, CapsReward(), 5, min_score=0.5)
    assert demos == [{"word": "river", "caps": "RIVER"}]


def words_system():
    rt = build_runtime(load(WORDS, []), lm=_lm())
    return rt.system


def _lm():
    from lmfake import ScriptedLM

    return ScriptedLM(lambda r: proposer(r) if r.is_chat else component_script(r))


SEEN_PROMPTS: list[str] = []


def proposer(request):
    SEEN_PROMPTS.append(request.messages[-1][1])
    return f"Instruction: Write the word in capital letters, version {len(SEEN_PROMPTS)}. Score: 0.9"


def test_opro_rounds_see_earlier_candidates_scored_on_the_same_inputs():
    SEEN_PROMPTS.clear()
    rt = build_runtime(load(WORDS, []), lm=_lm())
    state = rt.system.initial_state()
    cfg = UpdateConfig(num_candidates=1, opro_rounds=2, per_component_train_size=4, max_demos=1)
    ctx = UpdateContext(rt.system, "upper", RECORDS, CapsReward(), state, cfg, rt.lm,
                        trust=TRUSTED)
    res = optimize_prompt(ctx, "prompt", random.Random(0), SMOL, [])
    proposed = [c for c in res["candidates"] if c["origin"] == "proposed"]
    assert [c["round"] for c in proposed] == [1, 2]
    # round 2's meta-prompt lists round 1's instruction with its local reward on these inputs
    first = proposed[0]["value"]["instruction"]
    assert first == "Write the word in capital letters, version 1."  # label and score cleaned
    assert f"{first!r}: {proposed[0]['lrf']:.3f}" in SEEN_PROMPTS[1]
    assert proposed[0]["lrf"] == 1.0 and res["candidates"][0]["lrf"] == 0.0  # capitals win
    assert res["best"]["instruction"].startswith("Write the word in capital letters")
    assert set(res["scored_on"]).isdisjoint(
        {d["word"] for c in res["candidates"] for d in c["value"]["demos"]})


def test_measured_returns_rank_fully_rolled_out_choices():
    assert observed_return(RECORDS[0], {"caps": "APPLE"}) == 1.0
    assert observed_return(RECORDS[0], {"caps": "Apple"}) is None
    a = {"lrf": 0.9, "observed": 0.5, "scores": [0.9]}
    b = {"lrf": 0.1, "observed": 1.0, "scores": [0.1]}
    for trust in (TRUSTED, UNTRUSTED):  # every candidate measured: the measured return decides
        assert best_of([a, b], trust) == (b, "measured return")
    # otherwise the local reward does, when its head is trusted
    assert best_of([a, {**b, "observed": None}], TRUSTED) == (a, "local reward")


def test_an_untrusted_head_breaks_no_tie_and_ranks_no_unmeasured_choice():
    current = {"lrf": 0.1, "observed": 1.0, "scores": [0.1]}
    other = {"lrf": 0.9, "observed": 1.0, "scores": [0.9]}
    worse = {"lrf": 2.0, "observed": 0.0, "scores": [2.0]}
    assert best_of([current, other, worse], TRUSTED) == (
        other, "measured return, tie broken by the local reward")
    chosen, why = best_of([current, other, worse], UNTRUSTED)
    assert chosen is current and why == "measured return; the tie kept: too few pairs"
    # the current value out of the tie: the earliest tied value, never the LRF's pick
    chosen, why = best_of([worse, current, other], UNTRUSTED)
    assert chosen is current and why.startswith("measured return; the tie went to the earliest")
    unmeasured = [current, {**other, "observed": None}]
    assert best_of(unmeasured, TRUSTED)[0] is unmeasured[1]
    chosen, why = best_of(unmeasured, UNTRUSTED)
    assert chosen is current and why == ("kept: not every candidate was rolled out, and too "
                                         "few pairs")
    assert best_of(unmeasured, None)[0] is current  # never measured: not trusted either


@pytest.mark.parametrize("best,current,expected", [
    ([1.0, 1.0, 0.0], [0.0, 0.0, 0.5], True),  # wins on two inputs of three
    ([3.0, 0.0, 0.0], [0.0, 0.1, 0.1], False),  # a higher mean that rests on one input
])
def test_a_new_prompt_must_beat_the_current_one_on_most_inputs(best, current, expected):
    b = {"lrf": sum(best) / 3, "scores": best}
    c = {"lrf": sum(current) / 3, "scores": current}
    assert beats_incumbent(b, c) is expected


def test_proposer_replies_are_cleaned_to_one_instruction():
    assert clean_instruction("Instruction: Answer yes or no. Score: 0.05") == "Answer yes or no."
    assert clean_instruction('"Summarize the abstract." (score 0.9)') == "Summarize the abstract."
    assert clean_instruction("\n- Read carefully.\nmore text") == "Read carefully."
    assert clean_instruction("Maximize the score of the answer.") == \
        "Maximize the score of the answer."

