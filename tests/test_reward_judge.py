"""reward=judge (optimas_cli/rewards/judge.py): an embedded LLM judging outputs as the local
reward's backbone, on the real SmolLM2 (the preset's Qwen 1.5B is the same code, slower)."""

from __future__ import annotations

import json

import pytest
import torch

from optimas_cli.config import PROJECT_CONFIGS, load
from optimas_cli.jobs import execute
from optimas_cli.rewards import LocalRewardModel, PreferencePair, fit_reward_model
from optimas_cli.rewards.judge import JudgeRewardModel, load_reward_model
from optimas_cli.rewards.llm_features import LlamaFeaturizer
from optimas_cli.schema import RewardConfig

pytestmark = pytest.mark.slow
JUDGE = "local/smollm2-135m-instruct"
DESC = "Answers the question in a few words from the context."
CITIES = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
          ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Peru", "Lima")]


def inputs(country: str, city: str) -> dict:
    return {"question": f"What is the capital of {country}?",
            "context": f"{country} is a country. Its capital is {city}."}


def pairs() -> list[PreferencePair]:
    """The right city beats a long wrong answer, on each of eight inputs."""
    return [PreferencePair("answer", inputs(c, city), {"answer": city},
                           {"answer": f"I am not sure, maybe the largest town of {c}"}, 1.0, 0.0)
            for c, city in CITIES]


@pytest.fixture(scope="module")
def judge():
    return JudgeRewardModel({"answer": DESC}, JUDGE)


def test_an_untrained_head_is_the_judge_and_each_output_is_judged_once(judge):
    outs = [{"answer": "Paris"}, {"answer": "Berlin"}]
    direct = LlamaFeaturizer(JUDGE).features(DESC, inputs("France", "Paris"), outs)
    calls = []
    real = judge.judge().features
    judge.judge().features = lambda *a: calls.append(a) or real(*a)
    try:
        scores = judge.score("answer", inputs("France", "Paris"), outs)
        again = judge.score("answer", inputs("France", "Paris"), outs)
    finally:
        del judge.judge().features
    assert scores == pytest.approx([f.judge for f in direct], abs=1e-3)
    assert again == scores and len(calls) == 1  # one judge pass for both outputs, then cached


def test_a_fit_trains_nothing_and_measures_the_judge_on_held_out_pairs(judge, tmp_path):
    before = judge.score_items([("answer", p.inputs, p.chosen) for p in pairs()])
    result = fit_reward_model(judge, pairs(), RewardConfig(holdout=0.25), seed=0)
    assert result["epochs"] == result["steps"] == 0 and result["train_backbone"] is False
    assert torch.equal(judge.head("answer").weight, torch.tensor([[1.0]]))
    held = result["heldout"]["answer"]  # every pair: none was trained on
    assert held["n_pairs"] == len(pairs()) and set(held) >= {"pairwise_accuracy", "sampled"}
    assert judge.split.to_dict() == {"heldout": [], "train": []}
    assert judge.score_items([("answer", p.inputs, p.chosen) for p in pairs()]) == before
    judge.save(tmp_path / "lrf")
    back = load_reward_model(tmp_path / "lrf")
    assert isinstance(back, JudgeRewardModel) and back.split.to_dict() == judge.split.to_dict()
    items = [("answer", p.inputs, p.chosen) for p in pairs()[:3]]
    assert back.score_items(items) == pytest.approx(judge.score_items(items), abs=1e-4)
    LocalRewardModel({"answer": DESC}).save(tmp_path / "minilm")
    assert type(load_reward_model(tmp_path / "minilm")) is LocalRewardModel


def test_a_loop_with_the_judge_fits_saves_and_measures_it(tmp_path, isolated_cache, hotpot_path):
    tiny = ["data.train_size=6", "data.val_size=3", "data.test_size=3",
            "optimizer.num_iterations=1", "optimizer.collect.num_inputs=2",
            "optimizer.collect.num_samples=1", "optimizer.update.num_candidates=1",
            "optimizer.update.per_component_train_size=2", "optimizer.budget_system_runs=40"]
    composed = load(PROJECT_CONFIGS / "hotpotqa_ci.yaml",
                    [f"run_root={tmp_path}", "reward=judge", f"reward.backbone={JUDGE}", *tiny])
    path, summary = execute("run", composed, show_progress=False)
    history = [json.loads(x) for x in (path / "history.jsonl").read_text().splitlines()]
    (step,) = [h for h in history if h.get("kind") == "iteration"]
    saved = json.loads((path / step["lrf_dir"] / "lrf_config.json").read_text())
    assert saved["backbone"] == JUDGE and saved["backbone_weights"] == "judge"
    held = summary["lrf_heldout"][step["component"]]
    assert held["n_pairs"] > 0 and "trusted" in held["trust"]
