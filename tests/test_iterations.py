"""The iterations table (`optimas show`): what each step changed, and how it was decided."""

from __future__ import annotations

from optimas_cli import iterations

PROMPT = {"instruction": "Answer yes, no or maybe.", "demos": [{"q": 1}, {"q": 2}, {"q": 3}]}


def _var(name, current, best):
    return {"variable": name, "best": best, "candidates": [{"value": current}, {"value": best}]}


HISTORY = [
    {"iteration": 0, "kind": "initial", "val": {"mean": 0.5}},
    {"iteration": 1, "kind": "iteration", "component": "solver+analyst", "val_before": 0.5,
     "val_after": 0.275, "changed": True, "accepted": False, "system_runs": 136,
     "decision": {"rule": "bootstrap", "paired": {"mean": -0.225, "low": -0.375, "high": -0.075}},
     "steps": [
         {"component": "solver", "reason": "not collected yet", "pairs": 9,
          "lrf": {"pairwise_accuracy": 0.0, "n_pairs": 2, "beats_chance": False},
          "update": {"variables": [
              _var("model", "local/smollm2-135m-instruct", "local/gemma3-270m"),
              _var("prompt", PROMPT, {**PROMPT, "demos": []}),
              _var("temperature", 0.0, 0.0)]}},
         {"component": "analyst", "reason": "not collected yet",
          "skipped": "0 preference pairs after 1 collection round(s)"}]},
    {"iteration": 2, "kind": "iteration", "component": "solver", "val_before": 0.5,
     "val_after": 0.6, "changed": True, "accepted": True, "system_runs": 190,
     "reason": "softmax over preference gaps", "pairs": 30,
     "lrf": {"pairwise_accuracy": 0.9, "n_pairs": 10, "beats_chance": True},
     "update": {"variables": [_var("model", "local/gemma3-270m", {
         "mode": "per_input", "choices": ["local/gemma3-270m", "local/qwen2.5-coder-1.5b"]})]}},
]


def test_rows_say_what_changed_why_and_what_validation_decided():
    rows = iterations.rows(HISTORY)
    assert len(rows) == 3  # the initial record has no step; one row per component step
    solver, analyst, second = rows
    assert solver[:5] == ["1", "solver", "not collected yet", "9", "0.00 on 2 (not above chance)"]
    # only the variables whose value changed, prompts by instruction and demo count
    assert solver[5] == ('model: smollm2-135m-instruct → gemma3-270m; prompt: '
                         '"Answer yes, no or maybe." + 3 demos → "Answer yes, no or maybe." '
                         '+ 0 demos')
    assert solver[6:] == ["", "", "", ""]  # the iteration's decision is on its last step
    assert analyst[0] == "" and analyst[5].startswith("skipped: 0 preference pairs")
    assert analyst[6:] == ["0.500 → 0.275", "-0.225 [-0.375, -0.075]", "kept the incumbent", "136"]
    assert second[4] == "0.90 on 10 (beats chance)"
    assert second[5] == "model: gemma3-270m → per input: gemma3-270m/qwen2.5-coder-1.5b"
    assert second[8] == "accepted"


def test_the_lrf_cell_gives_own_output_pairs_apart_when_gold_pairs_were_among_them():
    step = {"lrf": {"pairwise_accuracy": 1.0, "n_pairs": 12, "beats_chance": True}}
    cell = iterations._lrf
    assert cell(step) == "1.00 on 12 (beats chance)"  # a run from before the split
    own = {"pairwise_accuracy": 0.5, "n_pairs": 4, "beats_chance": False}
    assert cell({"lrf": {**step["lrf"], "sampled": own}}) == (
        "1.00 on 12 (beats chance); own outputs 0.50 on 4")
    assert cell({"lrf": {**step["lrf"], "sampled": None}}) == (
        "1.00 on 12 (beats chance); no pair of its own outputs")
    same = {**step["lrf"], "sampled": {**own, "n_pairs": 12}}
    assert cell({"lrf": same}) == "1.00 on 12 (beats chance)"  # no gold pair: said once
    # whether the loop let the head decide anything (rewards/trust.py)
    assert cell({"lrf": {**same, "trust": {"trusted": False, "reason": "too few"}}}) == (
        "1.00 on 12 (beats chance); not trusted")
    assert cell({"lrf": {**same, "trust": {"trusted": True}}}) == (
        "1.00 on 12 (beats chance); trusted")


def test_markdown_has_one_line_per_step_and_escapes_pipes():
    history = [dict(HISTORY[2], update={"variables": [_var("sep", "a|b", "c")]})]
    md = iterations.to_markdown(history).splitlines()
    assert len(md) == 3 and md[0].startswith("| iter | component |")
    assert "sep: a\\|b → c" in md[2]


def test_a_baseline_step_shows_the_values_it_tried_against_the_state_it_started_from():
    smol, qwen = "local/smollm2-135m-instruct", "local/qwen2.5-coder-1.5b-instruct"
    start = {"solver": {"model": smol}, "analyst": {"model": smol}}
    tried = {"solver": {"model": qwen}}
    history = [
        {"iteration": 0, "kind": "initial", "val": {"mean": 0.5}, "state": start},
        {"iteration": 1, "kind": "iteration", "component": "all", "val_before": 0.5,
         "val_after": 0.65, "changed": True, "accepted": True, "candidate": tried,
         "state": {**start, **tried}},
        {"iteration": 2, "kind": "iteration", "component": "all", "val_before": 0.65,
         "val_after": 0.6, "changed": True, "accepted": False,
         "candidate": {"solver": {"model": smol}}, "state": {**start, **tried}},
    ]
    first, second = iterations.rows(history)
    assert first[5] == "solver.model: smollm2-135m-instruct → qwen2.5-coder-1.5b-instruct"
    assert second[5] == "solver.model: qwen2.5-coder-1.5b-instruct → smollm2-135m-instruct"
