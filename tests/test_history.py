"""The accept rule: candidate and incumbent compared on the same validation examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from optimas_cli.history import (
    HistoryRecord,
    accepted_scores,
    accepted_val,
    append_record,
    contributions,
    decide,
    read_history,
    steps_of,
)
from optimas_cli.layout import HISTORY
from optimas_cli.run_dir import RunDir
from optimas_cli.schema import OptimizerConfig

ROOT = Path(__file__).resolve().parents[1]


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


# ------------------------------------------------------------------ the record format

STATE = {"solver": {"prompt": {"instruction": "x"}, "temperature": 0.0}}
INITIAL = {"iteration": 0, "kind": "initial", "state": STATE,
           "val": {"mean": 0.5, "std": 0.5, "n": 2, "failed": 0, "scores": [0.0, 1.0]},
           "system_runs": 2, "lm_calls": 2, "lm_requests": 2, "lm_tokens": 40}
SPEND = {"system_runs": 10, "component_calls": 4, "lm_calls": 9, "lm_requests": 12,
         "lm_tokens": 300}


def one_step(**over):
    """An iteration record as the loop writes one that optimized one component."""
    return {"iteration": 1, "kind": "iteration", "component": "solver", "val_before": 0.5,
            "val_after": 1.0, "changed": True, "accepted": True,
            "reason": "not collected yet", "inputs": 4, "adapted": True, "pairs": 6,
            "lrf": {"pairwise_accuracy": 1.0}, "lrf_dir": "lrf/iter_001",
            "update": {"variables": [], "state": None}, "tried": STATE,
            "scores_after": [1.0, 1.0], "decision": {"rule": "mean", "gain": 0.5},
            "state": STATE, "seconds": 1.5, **SPEND, **over}


def test_an_old_single_step_record_reads_with_itself_as_its_one_step():
    record = one_step()
    got = HistoryRecord.from_dict(record)
    assert got.steps == [record] == steps_of(record) == steps_of(got)
    assert got.component == "solver" and got.accepted and got.decision.gain == 0.5
    assert got.model_extra["reason"] == "not collected yet"  # method-specific: kept
    assert HistoryRecord.from_dict(INITIAL).steps is None and steps_of(INITIAL) == []


def test_a_multi_step_record_keeps_its_steps():
    steps = [{"component": "a", "reason": "not collected yet", "lrf_dir": "lrf/iter_002-a"},
             {"component": "b", "reason": "not collected yet", "skipped": "0 pairs"}]
    record = {"iteration": 2, "kind": "iteration", "component": "a+b", "components": ["a", "b"],
              "steps": steps, "lrf_dir": "lrf/iter_002-a", "val_before": 0.5, "val_after": 0.4,
              "changed": True, "accepted": False, "state": STATE, **SPEND}
    got = HistoryRecord.from_dict(record)
    assert got.steps == steps == steps_of(record) == steps_of(got)
    assert got.components == ["a", "b"]


@pytest.mark.parametrize("record,field", [
    ({k: v for k, v in one_step().items() if k != "val_after"}, "val_after"),
    ({k: v for k, v in one_step().items() if k != "accepted"}, "accepted"),
    ({k: v for k, v in one_step().items() if k != "state"}, "state"),
    ({k: v for k, v in INITIAL.items() if k != "val"}, "val"),
    ({**INITIAL, "val": {"std": 0.5}}, "mean"),
    (one_step(kind="step"), "kind"),
    (one_step(val_after="high"), "val_after"),
])
def test_a_malformed_record_fails_validation_naming_the_field(record, field):
    with pytest.raises(ValidationError, match=field):
        HistoryRecord.from_dict(record)


def test_append_record_validates_before_it_writes(tmp_path):
    rd = RunDir(tmp_path)
    append_record(rd, INITIAL)
    append_record(rd, one_step(textgrad={"status": "updated"}))  # an extra: kept as is
    with pytest.raises(ValidationError, match="val_before"):
        append_record(rd, {k: v for k, v in one_step().items() if k != "val_before"})
    on_disk = rd.read_jsonl(HISTORY)
    assert on_disk == [INITIAL, one_step(textgrad={"status": "updated"})]  # written unchanged
    assert [r.kind for r in read_history(rd)] == ["initial", "iteration"]


ARCHIVED = sorted(ROOT.glob("bench/results/**/history.jsonl"))


def test_there_are_archived_histories():
    assert len(ARCHIVED) > 10


@pytest.mark.parametrize("path", ARCHIVED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_archived_history_validates(path):
    records = read_history(RunDir(path.parent))
    assert records and records[0].kind == "initial"
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    for got, record in zip(records[1:], raw[1:], strict=True):
        assert got.kind == "iteration" and got.steps == steps_of(record)
        assert all("component" in s for s in got.steps)
