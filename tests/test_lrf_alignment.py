"""bench/lrf_alignment.py: pooling rollout pairs across runs, folds by input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import lrf_alignment  # noqa: E402


def _run_dir(path: Path, records: list[dict]) -> Path:
    comps = {"solver": {"kind": "llm", "description": "answers", "inputs": ["question"],
                        "outputs": ["answer"]}}
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"system": {"components": comps},
                                                      "reward": {"epochs": 2}}))
    (path / "rollouts" / "iter_001").mkdir(parents=True)
    (path / "rollouts" / "iter_001" / "solver.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records))
    return path


def _record(example: str, scores: list[float]) -> dict:
    return {"example_id": example, "component": "solver", "fields": {"question": f"q{example}"},
            "candidates": [{"source": "sample", "outputs": {"answer": f"a{n}"}, "score": s} for n, s in enumerate(scores)]}


def test_pairs_are_pooled_across_runs_and_a_pair_collected_twice_counts_once(tmp_path):
    a = _run_dir(tmp_path / "a", [_record("1", [1.0, 0.0, 0.0]), _record("2", [0.5, 0.5])])
    b = _run_dir(tmp_path / "b", [_record("1", [1.0, 0.0, 0.0]), _record("3", [0.0, 1.0])])
    pairs, comps, reward, gold = lrf_alignment.real_pairs([a, b])
    # example 1: a0 beats a1 and a2 (a1 vs a2 tie); example 2 ties only; example 3: a1 beats a0
    assert sorted((p.example_id, p.chosen["answer"], p.rejected["answer"]) for p in pairs) == [
        ("1", "a0", "a1"), ("1", "a0", "a2"), ("3", "a1", "a0")]
    assert comps == {"solver": "answers"} and reward.epochs == 2 and reward.lr == 2e-5
    assert gold == set()  # no candidate came from the gold answer


def test_folds_split_the_inputs_and_every_pair_of_an_input_stays_in_one_fold(tmp_path):
    records = [_record(str(n), [1.0, 0.0, 0.5]) for n in range(11)]
    pairs, _, _, _ = lrf_alignment.real_pairs([_run_dir(tmp_path / "a", records)])
    folds = lrf_alignment.folds_of(pairs, 3)
    assert len(folds) == 3 and set().union(*folds) == {f"example:{n}" for n in range(11)}
    assert sum(map(len, folds)) == 11 and all(len(f) in (3, 4) for f in folds)
    assert folds == lrf_alignment.folds_of(list(reversed(pairs)), 3)  # fixed, not order-dependent


def test_cross_validation_scores_every_pair_once_and_learns_a_learnable_preference(tmp_path):
    # the chosen answer is always "Paris", the rejected one always "no idea": heads on frozen
    # MiniLM features learn that from the training folds and rank the held-out fold right
    records = [{"example_id": str(n), "component": "solver", "fields": {"question": f"Question {n}?"},
                "candidates": [{"source": "sample", "outputs": {"answer": "Paris"}, "score": 1.0},
                               {"source": "sample", "outputs": {"answer": "no idea"}, "score": 0.0}]} for n in range(12)]
    pairs, comps, reward, _ = lrf_alignment.real_pairs([_run_dir(tmp_path / "a", records)])
    right, _ = lrf_alignment.cross_validate(pairs, comps, reward, "heads", k=3, seed=0)
    assert len(right) == 12  # each pair held out exactly once
    assert sum(right) >= 11


def test_output_prior_learns_which_answer_usually_wins_without_looking_at_the_input(tmp_path):
    # "yes" beats "no" on 9 of 12 inputs: the input-blind rule, cross-validated, predicts "yes"
    # for every held-out pair, so it is right exactly on the 9 and wrong on the 3
    records = [{"example_id": str(n), "component": "solver", "fields": {"question": f"Q{n}?"},
                "candidates": [{"source": "sample", "outputs": {"answer": "Yes"}, "score": float(n >= 3)},
                               {"source": "sample", "outputs": {"answer": " no"}, "score": float(n < 3)}]}
               for n in range(12)]
    pairs, _, _, _ = lrf_alignment.real_pairs([_run_dir(tmp_path / "a", records)])
    right = lrf_alignment.output_prior(pairs, k=4)
    assert len(right) == 12 and sum(right) == 9 and not any(right[:3])
    # an output never seen in training ties at 0 with the other side: a tie is wrong
    unseen = [{"example_id": "x", "component": "solver", "fields": {"question": "Q?"},
               "candidates": [{"source": "sample", "outputs": {"answer": "maybe"}, "score": 1.0},
                              {"source": "sample", "outputs": {"answer": "perhaps"}, "score": 0.0}]}]
    pairs, _, _, _ = lrf_alignment.real_pairs([_run_dir(tmp_path / "b", unseen)])
    assert lrf_alignment.output_prior(pairs, k=1) == [False]


def test_a_component_seen_on_one_input_is_not_cross_validated(tmp_path, monkeypatch):
    # its only fold would train on none of its pairs: no accuracy, not a 0.0
    run = _run_dir(tmp_path / "a", [_record("1", [1.0, 0.0, 0.5])])
    out = tmp_path / "rows.json"
    monkeypatch.setattr(sys, "argv", ["lrf_alignment.py", str(run), "--settings",
                                      "output_prior,shorter_wins", "--out", str(out)])
    assert lrf_alignment.main() == 0
    rows = {r["setting"]: r for r in json.loads(out.read_text())}
    assert rows["output_prior"]["accuracy"] is None and rows["output_prior"]["pairs"] == 3
    assert rows["shorter_wins"]["accuracy"] == 0.0  # "a0" vs "a1": equal length, a tie is wrong


def test_pairs_with_the_gold_answer_on_one_side_are_told_from_sampled_pairs(tmp_path, monkeypatch):
    # two sampled answers and the gold one: gold beats both (2 gold pairs), a1 beats a0 (sampled)
    record = {"example_id": "1", "component": "solver", "fields": {"question": "q1"},
              "candidates": [{"source": "current", "outputs": {"answer": "a0"}, "score": 0.0},
                             {"source": "sample", "outputs": {"answer": "a1"}, "score": 0.5},
                             {"source": "gold", "outputs": {"answer": "g"}, "score": 1.0}]}
    other = _record("2", [1.0, 0.0])  # a sampled pair on a second input: a0 beats a1
    run = _run_dir(tmp_path / "a", [record, other])
    pairs, _, _, gold = lrf_alignment.real_pairs([run])
    assert sorted((pairs[i].chosen["answer"], pairs[i].rejected["answer"]) for i in gold) == [
        ("g", "a0"), ("g", "a1")]
    out = tmp_path / "rows.json"
    monkeypatch.setattr(sys, "argv", ["lrf_alignment.py", str(run), "--settings", "shorter_wins",
                                      "--out", str(out)])
    assert lrf_alignment.main() == 0
    (row,) = json.loads(out.read_text())
    # the short gold answer "g" wins by length; the sampled pairs tie on length (wrong)
    assert (row["pairs"], row["sampled_pairs"], row["accuracy"], row["sampled_accuracy"]) == (4, 2, 0.5, 0.0)
