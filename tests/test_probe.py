"""Probing a barren component's choices on validation (optimizer.probe_choices,
optimas_cli/methods/optimas/probe.py): what the loop does when the rollouts tell nothing."""

from __future__ import annotations

from test_baselines import GEMMA, SMOL
from test_loop_steps import make_loop, record

from optimas_cli.methods.optimas import loop as loop_mod
from optimas_cli.methods.optimas.probe import PROBE, barren_components, probe_values


def _barren(monkeypatch, lp, gaps):
    monkeypatch.setattr(loop_mod, "preference_gaps", lambda *a, **k: dict(gaps))
    # both collected in iteration 1 without a pair and nothing accepted: both barren
    lp._append(record(lp, 1, steps=[
        {"component": "exclaim", "skipped": "0 pairs"},
        {"component": "upper", "skipped": "0 pairs", "tied": {"model": [GEMMA, SMOL]}}]))


def test_without_probes_a_run_of_barren_components_ends(tmp_path, monkeypatch):
    lp = make_loop(tmp_path)
    assert lp.opt.probe_choices == 0
    _barren(monkeypatch, lp, {"upper": 0.0, "exclaim": 0.0})
    assert lp.select(2) == []


def test_a_barren_components_model_is_validated_directly_and_kept_when_better(tmp_path, monkeypatch):
    # upper writes capitals only on gemma: the change is worth half a point per word
    lp = make_loop(tmp_path, "optimizer.probe_choices=1")
    _barren(monkeypatch, lp, {"upper": 0.0, "exclaim": 0.0})
    [(name, why)] = lp.select(2)
    assert name == "upper" and why["reason"] == PROBE and why["probe"] == {"model": GEMMA}
    runs = lp.budget.system_runs
    record = lp.iteration(2, [(name, why)])
    assert lp.budget.system_runs - runs == len(lp.rt.splits["val"])  # one validation, no collection
    assert not (lp.run_dir.path / "rollouts/iter_002").exists()
    assert record["accepted"] and record["val_after"] > record["val_before"]
    assert record["state"]["upper"]["model"] == GEMMA and record["probe"] == {"model": GEMMA}
    lp._append(record)
    # the accepted change gives both components' rollouts a new system: collected again
    assert barren_components(lp.history, {"upper": 0.0, "exclaim": 0.0}, 3) == set()
    assert all(w["reason"] != PROBE for _, w in lp.select(3))


def test_a_worse_probe_is_refused_and_no_component_is_probed_past_its_allowance(tmp_path, monkeypatch):
    lp = make_loop(tmp_path, "optimizer.probe_choices=1")
    _barren(monkeypatch, lp, {"upper": 0.5, "exclaim": 0.0})  # only exclaim barren
    [(name, why)] = lp.select(2)
    assert name == "exclaim" and why["probe"] == {"model": GEMMA}
    record = lp.iteration(2, [(name, why)])
    assert not record["accepted"] and record["state"] == lp.current  # gemma drops the "!"
    lp._append(record)
    assert [(n, w["reason"]) for n, w in lp.select(3)] == [("upper", "softmax over preference gaps")]
    lp.opt.probe_choices = 2  # the one other model was validated: nothing left to probe
    assert probe_values(lp.rt.system, "exclaim", lp.current, lp.history, lp.opt, 0) == []
    assert [n for n, _ in lp.select(3)] == ["upper"]


def test_probes_need_a_validation_the_budget_can_pay(tmp_path, monkeypatch):
    lp = make_loop(tmp_path, "optimizer.probe_choices=1")
    _barren(monkeypatch, lp, {"upper": 0.0, "exclaim": 0.0})
    lp.budget.limit = lp.budget.system_runs + len(lp.rt.splits["val"]) - 1
    assert lp.select(2) == []
    lp.budget.limit += 1
    assert lp.select(2)[0][1]["reason"] == PROBE


def test_probe_values_put_the_latest_tie_first(tmp_path):
    qwen = "local/qwen2.5-coder-0.5b-instruct"
    lp = make_loop(tmp_path, "optimizer.probe_choices=1",
                   f"system.components.upper.variables.model.choices=[{SMOL},{GEMMA},{qwen}]")
    assert probe_values(lp.rt.system, "upper", lp.current, lp.history, lp.opt, 0) == [
        ("model", GEMMA), ("model", qwen)]  # declaration order
    lp._append(record(lp, 1, steps=[{"component": "upper", "tied": {"model": [qwen, SMOL]}}]))
    assert probe_values(lp.rt.system, "upper", lp.current, lp.history, lp.opt, 0) == [
        ("model", qwen), ("model", GEMMA)]  # what tied with the current value first
