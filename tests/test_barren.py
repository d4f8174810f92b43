"""Barren components (optimas_cli/methods/optimas/pairs.py): a component whose collections
gave no preference pair on the current system is left out until a change is accepted."""

from __future__ import annotations

from test_baselines import GEMMA, SMOL
from test_loop_steps import make_loop, record

from optimas_cli.methods.optimas import loop as loop_mod
from optimas_cli.methods.optimas.pairs import barren_components


def _barren(monkeypatch, lp, gaps):
    monkeypatch.setattr(loop_mod, "preference_gaps", lambda *a, **k: dict(gaps))
    # both collected in iteration 1 without a pair and nothing accepted: both barren
    lp._append(record(lp, 1, steps=[
        {"component": "exclaim", "skipped": "0 pairs"},
        {"component": "upper", "skipped": "0 pairs", "tied": {"model": [GEMMA, SMOL]}}]))


def test_a_run_of_barren_components_ends(tmp_path, monkeypatch):
    lp = make_loop(tmp_path)
    _barren(monkeypatch, lp, {"upper": 0.0, "exclaim": 0.0})
    assert barren_components(lp.history, {"upper": 0.0, "exclaim": 0.0}, 2) == {"upper", "exclaim"}
    assert lp.select(2) == []


def test_a_component_with_pairs_is_picked_and_an_accepted_change_ends_barrenness(tmp_path, monkeypatch):
    lp = make_loop(tmp_path)
    _barren(monkeypatch, lp, {"upper": 0.5, "exclaim": 0.0})  # only exclaim barren
    assert [(n, w["reason"]) for n, w in lp.select(2)] == [("upper", "softmax over preference gaps")]
    lp._append(record(lp, 2, accepted=True, steps=[{"component": "upper"}]))
    # the accepted change gives both components' rollouts a new system: collected again
    assert barren_components(lp.history, {"upper": 0.5, "exclaim": 0.0}, 3) == set()
