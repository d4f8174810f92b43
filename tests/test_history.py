"""The accept rule: candidate and incumbent compared on the same validation examples."""

from __future__ import annotations

import pytest

from optimas_cli.history import accepted_scores, accepted_val, contributions, decide
from optimas_cli.schema import OptimizerConfig


def summary(scores):
    return {"mean": sum(scores) / len(scores), "scores": scores}


INCUMBENT = [0.0, 1.0] * 10
SMALL_GAIN = [1.0, 1.0] + [0.0, 1.0] * 9  # one more question right out of 20


@pytest.mark.parametrize("rule,accepted", [("mean", True), ("bootstrap", False), ("sign", False)])
def test_one_question_gain_passes_the_mean_rule_only(rule, accepted):
    opt = OptimizerConfig(accept_rule=rule, accept_confidence=0.9)
    d = decide(summary(SMALL_GAIN), 0.5, INCUMBENT, opt)
    assert d["accepted"] is accepted
    assert d["paired"]["wins"] == 1 and d["paired"]["losses"] == 0
    assert d["gain"] == pytest.approx(0.05)


@pytest.mark.parametrize("rule", ["mean", "bootstrap", "sign"])
def test_a_clear_gain_passes_every_rule(rule):
    better = [1.0] * 20  # right on all ten questions the incumbent missed
    d = decide(summary(better), 0.5, INCUMBENT, OptimizerConfig(accept_rule=rule))
    assert d["accepted"] and d["paired"]["low"] > 0


def test_paired_rules_are_one_sided_at_the_stated_confidence():
    # 7 questions gained, 2 lost, 31 unchanged out of 40 (a PubMedQA candidate): better with
    # 90% confidence (one-sided bound > 0, one-sided sign p = 0.09), though the two-sided 90%
    # interval reaches 0
    incumbent = [0.0] * 7 + [1.0] * 2 + [1.0] * 15 + [0.0] * 16
    candidate = [1.0] * 7 + [0.0] * 2 + [1.0] * 15 + [0.0] * 16
    for rule in ("bootstrap", "sign"):
        d = decide(summary(candidate), 0.425, incumbent,
                   OptimizerConfig(accept_rule=rule, accept_confidence=0.9))
        assert d["accepted"], rule
        assert d["paired"]["low"] <= 0 < d["bound"] < d["paired"]["mean"]
        assert d["sign_p_greater"] == pytest.approx(46 / 512, abs=1e-6)  # rounded in history
    strict = OptimizerConfig(accept_rule="sign", accept_confidence=0.95)
    assert not decide(summary(candidate), 0.425, incumbent, strict)["accepted"]


def test_threshold_and_no_change():
    opt = OptimizerConfig(accept_threshold=0.1)
    assert not decide(summary(SMALL_GAIN), 0.5, INCUMBENT, opt)["accepted"]
    assert not decide(summary(INCUMBENT), 0.5, INCUMBENT, OptimizerConfig())["accepted"]


def test_paired_rules_need_per_example_scores():
    with pytest.raises(ValueError, match="per-example"):
        decide({"mean": 0.6}, 0.5, None, OptimizerConfig(accept_rule="bootstrap"))
    assert decide({"mean": 0.6}, 0.5, None, OptimizerConfig())["accepted"]


def test_accepted_scores_follow_the_last_accepted_record():
    history = [{"kind": "initial", "val": {"mean": 0.5, "scores": INCUMBENT}},
               {"kind": "iteration", "accepted": True, "val_before": 0.5, "val_after": 0.55,
                "scores_after": SMALL_GAIN},
               {"kind": "iteration", "accepted": False, "val_before": 0.55, "val_after": 0.4,
                "scores_after": [0.0] * 20}]
    assert accepted_scores(history) == SMALL_GAIN and accepted_val(history[-1]) == 0.55
    assert accepted_scores(history[:1]) == INCUMBENT


def test_contributions_attribute_each_accepted_gain_to_the_variables_it_changed():
    start = {"a": {"adapter": None}, "d": {"prompt": {"instruction": "x"}, "model": "small"}}
    step1 = {"a": {"adapter": "w/a/iter_001"}, "d": start["d"]}
    step3 = {"a": step1["a"], "d": {"prompt": {"instruction": "y"}, "model": "big"}}
    history = [
        {"iteration": 0, "kind": "initial", "val": {"mean": 0.2}, "state": start},
        {"iteration": 1, "kind": "iteration", "accepted": True, "val_before": 0.2,
         "val_after": 0.3, "state": step1},
        {"iteration": 2, "kind": "iteration", "accepted": False, "val_before": 0.3,
         "val_after": 0.25, "state": step1},  # a revert contributes nothing
        {"iteration": 3, "kind": "iteration", "accepted": True, "val_before": 0.3,
         "val_after": 0.45, "state": step3},
        {"iteration": 4, "kind": "iteration", "accepted": True, "val_before": 0.45,
         "val_after": 0.45, "state": step3},  # accepted, nothing changed
        {"iteration": 5, "kind": "iteration", "accepted": True, "val_before": 0.45,
         "val_after": 0.5, "state": {**step3, "a": {"adapter": "w/a/iter_005"}}},
    ]
    got = contributions(history)
    assert set(got) == {"a.adapter", "d.prompt+d.model"}
    assert got["a.adapter"]["steps"] == [1, 5]
    assert got["a.adapter"]["val_gain"] == pytest.approx(0.15)
    assert got["d.prompt+d.model"] == {"steps": [3], "val_gain": pytest.approx(0.15)}
