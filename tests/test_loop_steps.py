"""Each step of the Optimas loop alone (select, collect, adapt, update, validate), and the
repairs: lazy collection, the budget bound, fresh samples on a re-drawn input, distinct pairs,
skipping a component without enough pairs, per-input choice over several variables."""

from __future__ import annotations

import json

import pytest
from lmfake import ScriptedLM
from test_baselines import GEMMA, SMOL, WORDS, component_script

from optimas_cli.config import load
from optimas_cli.graph import is_per_input
from optimas_cli.history import accepted_val, contributions
from optimas_cli.methods.base import initial_record
from optimas_cli.methods.optimas import loop as loop_mod
from optimas_cli.methods.optimas.collect import (
    collect_cost,
    pairs_from_record,
    tied_choices,
    value_returns,
)
from optimas_cli.methods.optimas.loop import OptimasLoop
from optimas_cli.methods.optimas.pairs import pairs_of
from optimas_cli.methods.optimas.update import prompt_history
from optimas_cli.run_dir import RunDir
from optimas_cli.runtime import build_runtime


def script(request):
    """Components as in test_baselines; temperature samples differ by seed and index."""
    if request.is_chat:  # the OPRO proposer
        return "Write the word in capital letters."
    out = component_script(request)
    if request.temperature and request.temperature > 0:
        return out + ("?" if (request.seed + request.sample_index) % 3 else "")
    return out


def make_loop(tmp_path, *overrides, lm=None):
    composed = load(WORDS, [f"run_root={tmp_path}", "optimizer=optimas", *overrides])
    rt = build_runtime(composed, lm=lm or ScriptedLM(script))
    run_dir = RunDir.create(composed)
    lp = OptimasLoop(rt, run_dir)
    lp._append(initial_record(rt, rt.state))
    return lp


def record(lp, it, **fields):
    """A history record of iteration `it` that validated nothing, with `fields` set (the
    loop validates what it appends: a record has every field of HistoryRecord's kind)."""
    val = accepted_val(lp.history[-1])
    steps = fields.get("steps") or [{"component": "exclaim"}]
    return {"iteration": it, "kind": "iteration",
            "component": "+".join(s["component"] for s in steps), "val_before": val,
            "val_after": val, "changed": False, "accepted": False, "state": lp.current, **fields}


def test_select_takes_uncollected_components_final_first_then_by_gaps(tmp_path):
    lp = make_loop(tmp_path)
    assert [n for n, _ in lp.select(1)] == ["exclaim"]
    (lp.run_dir.path / "rollouts/iter_001").mkdir(parents=True)
    (lp.run_dir.path / "rollouts/iter_001/exclaim.jsonl").write_text("")
    first = lp.select(1)
    lp.run_dir.append_jsonl("rollouts/iter_001/exclaim.jsonl", {
        "example_id": "x", "component": "exclaim", "fields": {"caps": "X"}, "candidates": []})
    # a begun iteration (a restart mid-collection) decides as it did: its own rollouts don't count
    assert lp.select(1) == first and first[0][1]["reason"] == "not collected yet"
    [(name, why)] = lp.select(2)
    assert name == "upper" and why["gaps"]["upper"] is None
    lp.opt.components_per_iteration = 2  # both, final first; the collected one by its gap
    assert [n for n, _ in lp.select(1)] == ["exclaim", "upper"]
    assert [(n, w["reason"]) for n, w in lp.select(2)] == [
        ("upper", "not collected yet"), ("exclaim", "softmax over preference gaps")]


def test_select_passes_over_components_the_budget_cannot_collect(tmp_path):
    lp = make_loop(tmp_path, "optimizer.collect.num_samples=2", "optimizer.components_per_iteration=2")
    spent_val = lp.history[-1]["system_runs"] + len(lp.rt.splits["val"])
    lp.budget.limit = spent_val + 2  # exclaim's input costs 1, upper's 4
    assert [n for n, _ in lp.select(1)] == ["exclaim"]  # upper is fresh, but unaffordable
    lp.budget.limit = spent_val + 4
    assert [n for n, _ in lp.select(1)] == ["exclaim", "upper"]
    lp.budget.limit = spent_val  # nothing affordable: the loop ends, no empty record
    assert lp.select(1) == []
    lp.run(lp.current)
    assert len(lp.history) == 1


def test_select_leaves_out_a_component_without_pairs_until_a_change_is_accepted(tmp_path, monkeypatch):
    lp = make_loop(tmp_path, "optimizer.components_per_iteration=2")
    gaps = {"upper": 0.0, "exclaim": 0.5}  # upper's collections gave no pair (a gap is > 0)
    monkeypatch.setattr(loop_mod, "preference_gaps", lambda *a, **k: dict(gaps))

    def picked(it):
        return sorted(n for n, _ in lp.select(it))

    assert picked(1) == ["exclaim", "upper"]  # no iteration has collected upper yet
    lp._append(record(lp, 1, accepted=False,
                      steps=[{"component": "exclaim"}, {"component": "upper", "skipped": "0 pairs"}]))
    assert picked(2) == ["exclaim"]  # the system upper gave no pair on: only exclaim
    lp._append(record(lp, 2, accepted=True, steps=[{"component": "exclaim"}]))
    assert picked(3) == ["exclaim", "upper"]  # a change was accepted since: upper again
    gaps["exclaim"] = 0.0  # neither has pairs, nothing accepted since: the loop ends
    lp._append(record(lp, 3, accepted=False,
                      steps=[{"component": "exclaim"}, {"component": "upper"}]))
    assert lp.select(4) == []


def test_collection_cost_bound_and_budget(tmp_path):
    lp = make_loop(tmp_path, "optimizer.collect.num_samples=2")
    # exclaim is last: candidates are scored by the metric alone, one upstream run per input
    assert collect_cost(lp.rt.system, "exclaim", lp.opt.collect) == 1
    # upper is first: nothing upstream; current + 2 samples + 1 other model, each completed
    assert collect_cost(lp.rt.system, "upper", lp.opt.collect) == 4
    lp.budget.limit = lp.budget.system_runs + len(lp.rt.splits["val"]) + 2 * 4 + 3
    records, skip = lp.collect(1, "upper", lp.current)
    assert len(records) == 2  # what the budget left after one validation allowed
    assert lp.budget.system_runs + len(lp.rt.splits["val"]) <= lp.budget.limit


def test_a_redrawn_input_gets_new_samples_and_a_repeated_pair_counts_once(tmp_path):
    lm = ScriptedLM(script)
    lp = make_loop(tmp_path, "optimizer.collect.num_samples=3", "optimizer.min_pairs=1", lm=lm)

    def sample_seeds(word):
        return {(r.seed, r.sample_index) for c, r in lm.requests
                if c == "exclaim" and r.temperature and f"caps: {word}" in r.prompt.lower()}

    first, _ = lp.collect(1, "exclaim", lp.current)
    before = {r["example_id"]: sample_seeds(r["example_id"]) for r in first}
    again, _ = lp.collect(2, "exclaim", lp.current)  # another iteration: other draws, other sample seeds
    common = {r["example_id"] for r in first} & {r["example_id"] for r in again}
    assert common, "the tiny train split makes draws overlap"
    for eid in common:  # the same input sampled again with new seeds: new requests, not cache
        assert sample_seeds(eid) - before[eid]
    pairs = pairs_of(lp.rt, lp.run_dir, "exclaim")
    keys = [json.dumps([p.inputs, p.chosen, p.rejected], sort_keys=True) for p in pairs]
    assert len(keys) == len(set(keys))
    raw = [p for r in first + again for p in pairs_from_record(r, lp.rt.system)]
    assert len(raw) > len(pairs)  # the repeated input's repeated pairs were counted once


@pytest.mark.parametrize("adaptive, rounds", [(True, 1), (False, 2)])
def test_component_without_enough_pairs_is_skipped_with_the_reason(tmp_path, adaptive, rounds):
    lm = ScriptedLM(lambda r: "same")  # every candidate scores the same: no pair at all
    lp = make_loop(tmp_path, "optimizer.num_iterations=1", "optimizer.collect.add_gold=false",
                   f"optimizer.collect.adaptive_rounds={str(adaptive).lower()}", lm=lm)
    record = lp.iteration(1)
    # adaptive: a round that found no new pair ends the collection; else every round runs
    assert record["skipped"].startswith(f"0 preference pairs after {rounds} collection round(s)")
    assert not record["changed"] and not record.get("adapted")
    assert len(list((lp.run_dir.path / "rollouts/iter_001").glob("*.jsonl"))) == rounds


def same_model_script(request):
    """As `script`, but exclaim adds the "!" whatever its model: its model choice is a tie."""
    if not request.is_chat and request.prompt.endswith("Out:"):
        out = request.prompt.rsplit("Caps: ", 1)[1].split("\n")[0] + "!"
        return out + ("?" if request.temperature and (request.seed + request.sample_index) % 3 else "")
    return script(request)


def test_tied_model_values_get_another_collection_round(tmp_path):
    lp = make_loop(tmp_path, "optimizer.min_pairs=1", "optimizer.collect.num_inputs=2",
                   "optimizer.collect.max_rounds=3", lm=ScriptedLM(same_model_script))
    records, skip = lp.collect(1, "exclaim", lp.current)
    assert skip is None
    # both models wrote the same output: one candidate that names both sources
    assert all(any(f"model={GEMMA}" in c.get("also", []) for c in r["candidates"]) for r in records)
    assert tied_choices(lp.rt.system, "exclaim", records) == {"model": sorted([SMOL, GEMMA])}
    returns = value_returns(records, "model")
    assert returns[SMOL] == returns[GEMMA] and len(returns[SMOL]) == len(records)
    files = sorted(p.name for p in (lp.run_dir.path / "rollouts/iter_001").glob("*.jsonl"))
    assert len(files) > 1 and len(records) > 2  # more rounds, each of fresh inputs
    step, _ = lp.step(2, "exclaim", {"reason": "test"}, lp.current, own_dir=False)
    assert step["tied"] == {"model": sorted([SMOL, GEMMA])}  # history says the LRF decided


def test_a_choice_the_rollouts_decide_takes_one_round(tmp_path):
    lp = make_loop(tmp_path, "optimizer.min_pairs=1", "optimizer.collect.num_inputs=2",
                   "optimizer.collect.max_rounds=3")
    records, skip = lp.collect(1, "exclaim", lp.current)  # SMOL adds the "!", GEMMA does not
    assert skip is None and tied_choices(lp.rt.system, "exclaim", records) == {}
    returns = value_returns(records, "model")
    assert min(returns[SMOL]) > max(returns[GEMMA])
    assert [p.name for p in (lp.run_dir.path / "rollouts/iter_001").glob("*.jsonl")] == ["exclaim.jsonl"]


class CapsAndBang:
    """A stand-in local reward: 1 for an output ending in "!" (what the metric rewards)."""

    def score(self, name, inputs, outputs):
        return [float(str(o.get("out", "")).endswith("!")) for o in outputs]


def test_update_step_alone_keeps_the_model_whose_outputs_scored_best(tmp_path):
    lp = make_loop(tmp_path, "optimizer.min_pairs=1")
    records, _ = lp.collect(1, "exclaim", lp.current)
    lp.lrf = CapsAndBang()
    update = lp.update(1, "exclaim", records, "lrf/iter_001", lp.current)
    models = next(v for v in update["variables"] if v["variable"] == "model")
    observed = {c["value"]: c["observed"] for c in models["candidates"]}
    assert observed[SMOL] > observed["local/gemma3-270m"]  # both measured in the rollouts
    assert update["state"]["exclaim"]["model"] == SMOL  # SMOL writes the "!" the metric wants


TRUSTED = {"trusted": True}


def test_an_untrusted_head_holds_the_prompt_and_a_measured_choice_still_moves(tmp_path):
    lp = make_loop(tmp_path, "optimizer.min_pairs=1")
    records, _ = lp.collect(1, "exclaim", lp.current)
    lp.lrf = CapsAndBang()
    untrusted = {"trusted": False, "reason": "3 held-out pairs of own outputs: too few"}
    held = lp.update(1, "exclaim", records, "lrf/iter_001", lp.current, trust=untrusted)
    prompt = next(v for v in held["variables"] if v["type"] == "prompt")
    assert prompt["candidates"] == []  # no proposal made, none scored
    assert prompt["held"] == "the local reward is not trusted: 3 held-out pairs of own outputs: too few"
    assert held["state"]["exclaim"]["prompt"] == lp.current["exclaim"]["prompt"]
    model = next(v for v in held["variables"] if v["type"] == "model")
    assert held["state"]["exclaim"]["model"] == SMOL  # the measured choice is not held
    assert model["decided_by"] == "measured return"
    free = lp.update(1, "exclaim", records, "lrf/iter_001", lp.current, trust=TRUSTED)
    prompt = next(v for v in free["variables"] if v["type"] == "prompt")
    assert "held" not in prompt and prompt["candidates"]


def test_a_per_input_choice_needs_a_trusted_head(tmp_path):
    lp = make_loop(tmp_path, "optimizer.min_pairs=1", "optimizer.update.choice_mode=per_input")
    records, _ = lp.collect(1, "exclaim", lp.current)
    lp.lrf = CapsAndBang()
    untrusted = {"trusted": False, "reason": "3 held-out pairs of own outputs: too few"}
    static = lp.update(1, "exclaim", records, "lrf/iter_001", lp.current, trust=untrusted)
    model = next(v for v in static["variables"] if v["type"] == "model")
    assert model["best"] == SMOL and "too few" in model["per_input"]  # the measured choice
    per_input = lp.update(1, "exclaim", records, "lrf/iter_001", lp.current, trust=TRUSTED)
    model = next(v for v in per_input["variables"] if v["type"] == "model")
    assert is_per_input(model["best"]) and "per_input" not in model


def test_the_step_hands_the_fits_trust_to_the_update(tmp_path):
    lp = make_loop(tmp_path, "optimizer.min_pairs=1")
    lp.lrf = CapsAndBang()
    # beat chance on its own outputs, but the fit did not find it better than the controls
    own = {"pairwise_accuracy": 1.0, "n_pairs": 12, "beats_chance": True,
           "sampled": {"pairwise_accuracy": 0.75, "n_pairs": 8, "beats_chance": True}}
    beaten = {**own, "trust": {"trusted": False, "reason": "accuracy 0.75 does not beat "
                                                           "shorter_wins 0.75 (sign test by input p=1)"}}
    prompts = []
    for heldout in (own, beaten, {**own, "trust": TRUSTED}):
        lp.adapt = lambda it, name, own_dir=False, m=heldout: (
            {"pairs": 12, "heldout": {name: m}}, "lrf/iter_001")
        step, _ = lp.step(1, "exclaim", {"reason": "test"}, lp.current, own_dir=False)
        assert step["lrf"] == heldout
        prompts.append(next(v for v in step["update"]["variables"] if v["type"] == "prompt"))
    assert "not measured" in prompts[0]["held"] and prompts[0]["candidates"] == []
    assert "does not beat shorter_wins" in prompts[1]["held"] and prompts[1]["candidates"] == []
    assert "held" not in prompts[2] and prompts[2]["candidates"]


def test_two_components_per_iteration_are_updated_in_turn_then_validated_once(tmp_path):
    lp = make_loop(tmp_path, "optimizer.components_per_iteration=2", "optimizer.min_pairs=1",
                   f"system.components.exclaim.variables.model.value={GEMMA}")
    lp.lrf = CapsAndBang()
    calls = []

    def adapt(it, name, own_dir=False):  # the reward model stands in; each step has its own dir
        calls.append(("adapt", name, own_dir))
        return {"pairs": 1, "heldout": {name: {"trust": TRUSTED}}}, f"lrf/iter_{it:03d}-{name}"

    def spy(method, label):
        def wrapped(*args):
            calls.append((label, args[1] if label == "collect" else None,
                          args[-1]["exclaim"]["model"]))  # the state it ran on
            return method(*args)
        return wrapped

    lp.adapt = adapt
    lp.collect, lp.validate = spy(lp.collect, "collect"), spy(lp.validate, "validate")
    record = lp.iteration(1)
    # exclaim (final, fresh) first: it goes GEMMA -> SMOL; upper is then collected on that
    # system, and both changes are validated once, together
    assert calls == [("collect", "exclaim", GEMMA), ("adapt", "exclaim", True),
                     ("collect", "upper", SMOL), ("adapt", "upper", True),
                     ("validate", None, SMOL)]
    assert record["component"] == "exclaim+upper" and record["components"] == ["exclaim", "upper"]
    assert [s["component"] for s in record["steps"]] == ["exclaim", "upper"]
    assert record["lrf_dir"] == "lrf/iter_001-upper"  # the run goes on with the last fit
    assert record["accepted"] and record["val_after"] == 1.0
    assert record["state"]["exclaim"]["model"] == SMOL and record["state"]["upper"]["model"] == GEMMA
    assert contributions([lp.history[0], record]) == {
        "upper.model+exclaim.model": {"steps": [1], "val_gain": pytest.approx(1.0 - lp.history[0]["val"]["mean"])}}
    tried = prompt_history([record], "upper")  # read from the iteration's steps
    assert tried and tried == [
        (c["value"]["instruction"], c["lrf"]) for v in record["steps"][1]["update"]["variables"]
        if v["type"] == "prompt" for c in v["candidates"]]


def test_validate_step_alone_decides_on_the_paired_validation_difference(tmp_path):
    lp = make_loop(tmp_path, "optimizer.accept_rule=sign", "optimizer.accept_confidence=0.5")
    worse = {**lp.current, "exclaim": {**lp.current["exclaim"], "model": "local/gemma3-270m"}}
    d = lp.validate(1, worse)  # gemma drops the "!": every val question loses half its score
    assert not d["accepted"] and d["decision"]["paired"]["losses"] == len(lp.rt.splits["val"])
    assert d["val_after"] < lp.history[-1]["val"]["mean"]
    assert lp.validate(2, lp.current)["decision"]["paired"]["mean"] == 0.0


@pytest.mark.slow  # trains the MiniLM reward model
def test_adapt_update_validate_change_the_final_component_for_the_better(tmp_path):
    lp = make_loop(tmp_path, "optimizer.min_pairs=2", "reward.epochs=1", "reward.max_epochs=1")
    records, skip = lp.collect(1, "exclaim", lp.current)
    assert skip is None
    result, lrf_dir = lp.adapt(1, "exclaim")
    assert result["pairs"] >= 2 and (lp.run_dir.path / lrf_dir / "metrics.json").exists()
    update = lp.update(1, "exclaim", records, lrf_dir, lp.current)
    models = next(v for v in update["variables"] if v["variable"] == "model")
    assert all(c["observed"] is not None for c in models["candidates"])  # every model rolled out
    assert update["state"]["exclaim"]["model"] == SMOL  # SMOL writes the "!" the metric wants
    decision = lp.validate(1, update["state"])
    assert decision["decision"]["paired"]["n"] == len(lp.rt.splits["val"])


def test_the_whole_loop_never_spends_past_its_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(loop_mod, "fit_local_rewards", lambda *a, **k: {"heldout": {}})
    monkeypatch.setattr(loop_mod, "save_reward_model", lambda *a, **k: None)
    for budget in (5, 9, 17, 30):
        lp = make_loop(tmp_path / str(budget), f"optimizer.budget_system_runs={budget}",
                       "optimizer.num_iterations=5", "optimizer.min_pairs=1")
        monkeypatch.setattr(loop_mod, "update_component", lambda ctx, **k: {
            "state": ctx.state, "variables": []})
        lp.run(lp.current)
        assert lp.budget.system_runs <= budget or len(lp.history) == 1
        assert all(h["system_runs"] <= max(budget, lp.history[0]["system_runs"])
                   for h in lp.history)


def test_per_input_choice_resolves_every_per_input_variable(tmp_path):
    lp = make_loop(tmp_path)
    system = lp.rt.system

    class Reward:  # prefers capitals with an exclamation mark
        def score(self, name, inputs, outputs):
            return [str(o["caps"]).isupper() + str(o["caps"]).endswith("!") for o in outputs]

    system._reward_models["r"] = Reward()
    policy = {"mode": "per_input", "temperature": 0.01, "reward_model": "r"}
    values = {"model": {**policy, "choices": [SMOL, "local/gemma3-270m"]},
              "prompt": {**policy, "choices": [{"instruction": "Repeat the word.", "demos": []},
                                               {"instruction": "Use capital letters.",
                                                "demos": []}]}}
    step = system.run_step("upper", {"word": "apple"}, lp.current, values=values)
    assert step.error is None and step.outputs["caps"] == "APPLE"
    assert not any(is_per_input(v) for v in step.variables.values())  # both were resolved


def test_a_resumed_loop_goes_on_with_the_reward_model_saved_last(tmp_path, monkeypatch):
    """Even when the last iteration adapted nothing (skipped), and only when one is needed."""
    loaded, built = [], []
    monkeypatch.setattr(loop_mod, "load_reward_model",
                        lambda d: loaded.append(d) or f"model of {d.name}")
    monkeypatch.setattr(loop_mod, "new_reward_model", lambda *a: built.append(a) or "new model")
    lp = make_loop(tmp_path)
    state = lp.current
    for it, lrf_dir in ((1, "lrf/iter_001"), (2, "lrf/iter_002"), (3, None)):
        lp._append(record(lp, it, component="exclaim", state=state,
                          **({"adapted": True, "lrf_dir": lrf_dir} if lrf_dir else {"skipped": "x"})))
    resumed = OptimasLoop(lp.rt, lp.run_dir, lrf="the eager start's model")
    assert loaded == [] and built == []  # nothing loaded before it is needed
    assert resumed.lrf == "model of iter_002" and resumed.lrf == "model of iter_002"
    assert loaded == [lp.run_dir.path / "lrf/iter_002"] and built == []
    fresh = make_loop(tmp_path / "fresh")
    assert OptimasLoop(fresh.rt, fresh.run_dir, lrf="eager").lrf == "eager"
    assert fresh.lrf == "new model" and loaded == [lp.run_dir.path / "lrf/iter_002"]


def test_gold_pairs_qualify_a_component_and_say_they_are_gold(tmp_path):
    # every sampled candidate scores the same: the only pairs are the gold answer's
    lm = ScriptedLM(lambda r: "same")
    lp = make_loop(tmp_path, "optimizer.num_iterations=1", "optimizer.min_pairs=1", lm=lm)
    assert lp.opt.collect.add_gold
    record = lp.iteration(1)  # counted: the gold pairs qualify the final component
    assert record["component"] == "exclaim" and record.get("adapted") and "skipped" not in record
    gold = pairs_of(lp.rt, lp.run_dir, "exclaim")
    assert gold and all(p.gold for p in gold)  # each pair says so, for the head's held-out figures
    assert loop_mod.preference_gaps(lp.rt, lp.run_dir)["exclaim"] > 0
