"""Training the local reward model: Bradley-Terry fits, head-only adaptation, held-out figures.

Fast tests use the tiny random BERT of test_rewards.py; the slow ones the real MiniLM.
"""

from __future__ import annotations

import os
import random
import time

import pytest
import torch
from test_rewards import COMPS, fit_cfg, keyword_pairs, make_tiny_backbone

from optimas_cli.methods.optimas.fit import fit_local_rewards
from optimas_cli.rewards import LocalRewardModel, fit_reward_model, input_key, split_by_input
from optimas_cli.rewards import train as train_mod
from optimas_cli.schema import RewardConfig


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"))


def stage_cfg(backbone: str, **kw) -> RewardConfig:
    """The reward config of a run, with rates that let the tiny backbone learn quickly."""
    return RewardConfig(**{"backbone": backbone, "lr": 1e-3, "head_lr": 1e-2, "batch_size": 8,
                           "weight_by_gap": False, **kw})


def _params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_head_only_adaptation_touches_only_that_head(tiny_backbone):
    m = LocalRewardModel(COMPS, backbone=tiny_backbone)
    before_bb, before_w, before_c = (
        _params(m.backbone),
        _params(m.head("writer")),
        _params(m.head("critic")),
    )
    pairs = keyword_pairs(10) + keyword_pairs(10, "critic", seed=2)
    res = fit_reward_model(m, pairs, fit_cfg(adapt_epochs=2), components=["writer"],
                           train_backbone=False)
    assert res["components"] == ["writer"] and res["train_backbone"] is False
    assert set(res["heldout"]) == {"writer"} and res["steps"] > 0
    for k, v in _params(m.backbone).items():
        assert torch.equal(v, before_bb[k]), k
    for k, v in _params(m.head("critic")).items():
        assert torch.equal(v, before_c[k]), k
    assert any(not torch.equal(v, before_w[k]) for k, v in _params(m.head("writer")).items())
    with pytest.raises(KeyError):
        fit_reward_model(m, pairs, fit_cfg(), components=["nope"])


def test_fit_is_seeded_and_backbone_training_moves_backbone(tiny_backbone):
    pairs = keyword_pairs(12)
    runs = []
    for _ in range(2):
        m = LocalRewardModel(COMPS, backbone=tiny_backbone)
        bb = _params(m.backbone)
        res = fit_reward_model(m, pairs, fit_cfg(epochs=1, lr=1e-3, batch_size=8,
                                                 weight_by_gap=True), seed=5)
        assert any(not torch.equal(v, bb[k]) for k, v in _params(m.backbone).items())
        runs.append(
            (
                res["loss_history"],
                m.score("writer", [p.inputs for p in pairs], [p.chosen for p in pairs]),
            )
        )
        emb = m.backbone.get_input_embeddings().weight
        assert torch.equal(emb, bb["embeddings.word_embeddings.weight"])  # not trained by default
        assert all(p.requires_grad for p in m.backbone.parameters())  # flags restored
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == pytest.approx(runs[1][1], abs=1e-6)
    split = res["split"]["writer"]
    assert split["n_heldout_inputs"] == round(0.2 * 12)
    assert split["n_train_pairs"] + split["n_heldout_pairs"] == len(pairs)


def test_checkpointed_backbone_fit_trains_the_same_model(tiny_backbone):
    """Activation checkpointing replays each layer (and its dropout masks) in the backward pass
    instead of keeping its activations: less memory, the same fit; and it is off afterwards."""
    pairs = keyword_pairs(12)
    fits = []
    for checkpointing in (False, True):
        m = LocalRewardModel(COMPS, backbone=tiny_backbone)
        m.backbone.config.hidden_dropout_prob = 0.1  # dropout on: the masks must be replayed
        res = fit_reward_model(m, pairs, fit_cfg(epochs=2, lr=1e-3, batch_size=8,
                                                 gradient_checkpointing=checkpointing), seed=3)
        assert not any(getattr(mod, "gradient_checkpointing", False) for mod in m.backbone.modules())
        fits.append((res["loss_history"], _params(m.backbone)))
    assert fits[0][0] == pytest.approx(fits[1][0], rel=1e-5)
    for k, v in fits[0][1].items():
        assert torch.allclose(v, fits[1][1][k], atol=1e-6), k


def test_feature_cache_follows_backbone_training(tiny_backbone):
    m = LocalRewardModel(COMPS, backbone=tiny_backbone)
    pairs = keyword_pairs(6)
    ins, outs = [p.inputs for p in pairs], [p.chosen for p in pairs]
    s0 = m.score("writer", ins, outs)
    assert m._feat_cache and m.score("writer", ins, outs) == s0
    critic = keyword_pairs(6, "critic", seed=4)
    fit_reward_model(m, critic, fit_cfg(adapt_epochs=1, holdout=0.0), components=["critic"],
                     train_backbone=False)
    assert m.score("writer", ins, outs) == s0  # other head, same backbone
    fit_reward_model(m, pairs, fit_cfg(epochs=1, lr=1e-2, holdout=0.0))
    s1 = m.score("writer", ins, outs)
    assert s1 != pytest.approx(s0, abs=1e-4)
    m.clear_cache()
    assert m.score("writer", ins, outs) == pytest.approx(s1, abs=1e-5)


# ------------------------------------------------------------------ real MiniLM backbone


@pytest.mark.slow
def test_lrf_recovers_keyword_preference():
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    pairs = keyword_pairs(40)
    m = LocalRewardModel({"writer": "Answers a question in one sentence."}, max_length=64)
    _, held = split_by_input(pairs, holdout=0.2, seed=0)
    before = m.evaluate(held)["writer"]
    t0 = time.perf_counter()
    res = fit_reward_model(m, pairs, fit_cfg(epochs=3, holdout=0.2), seed=0)
    took = time.perf_counter() - t0
    after = res["heldout"]["writer"]
    print(f"\nkeyword LRF: before {before} after {after} fit {took:.1f}s")
    assert after["n_pairs"] == len(held) == 24
    assert after["pairwise_accuracy"] > 0.8 and after["spearman"] > 0.5
    # an untrained head does not already know the preference
    assert before["pairwise_accuracy"] < 0.8 or before["spearman"] < 0.5
    assert after["pairwise_accuracy"] > before["pairwise_accuracy"]
    assert res["loss_history"][-1] < res["loss_history"][0]


@pytest.mark.slow
def test_minilm_head_only_adaptation_recovers_preference():
    pairs = keyword_pairs(40)
    m = LocalRewardModel({"writer": "Answers a question in one sentence."}, max_length=64)
    t0 = time.perf_counter()
    res = fit_reward_model(m, pairs, fit_cfg(adapt_epochs=30, adapt_head_lr=1e-2),
                           components=["writer"], train_backbone=False)
    print(f"\nhead-only LRF: {res['heldout']['writer']} fit {time.perf_counter() - t0:.1f}s")
    after = res["heldout"]["writer"]
    assert after["pairwise_accuracy"] > 0.8 and after["spearman"] > 0.5


# ------------------------------------------------------------------ beating chance


def test_backbone_fit_trains_on_until_heldout_beats_chance(tiny_backbone):
    """One epoch is not enough here; the stage's backbone fit goes on until it is."""
    pairs = keyword_pairs(20)
    short = fit_reward_model(LocalRewardModel(COMPS, backbone=tiny_backbone), pairs,
                             fit_cfg(epochs=1, lr=1e-3, head_lr=1e-2, batch_size=8))
    assert short["epochs"] == 1 and short["heldout"]["writer"]["beats_chance"] is False
    m = LocalRewardModel(COMPS, backbone=tiny_backbone)
    res = fit_local_rewards(m, pairs, stage_cfg(tiny_backbone, epochs=1, max_epochs=15))
    held = res["heldout"]["writer"]
    assert 1 < res["epochs"] < 15 and res["heldout_looks"] == res["epochs"]  # one per epoch
    assert held["beats_chance"] is True and held["p_value"] < 0.05
    assert held["pairwise_accuracy"] > 0.5 and held["n_pairs"] == 12
    # the recorded figures are the final model's, with its trust on the same pairs
    trust = {c: r.pop("trust") for c, r in res["heldout"].items()}
    assert m.evaluate([p for p in pairs if input_key(p) in m.split.heldout]) == res["heldout"]
    own = held["sampled"]
    assert trust["writer"]["accuracy"] == own["pairwise_accuracy"]
    assert trust["writer"]["n_pairs"] == own["n_pairs"] == 12
    # right on every pair; the trust test counts inputs, not pairs (rewards/trust.py)
    assert own["pairwise_accuracy"] == 1.0 and own["p_value"] == 0.5 ** 12
    assert 1 < trust["writer"]["n_inputs"] < 12
    assert trust["writer"]["p_value"] == 0.5 ** trust["writer"]["n_inputs"]


def test_fit_records_that_it_did_not_beat_chance(tiny_backbone):
    """Preferences at random cannot be learned: the metrics say so, after max_epochs."""
    rng = random.Random(0)
    pairs = [p if rng.random() < 0.5 else type(p)(p.component, p.inputs, p.rejected, p.chosen,
                                                   p.score_chosen, p.score_rejected, p.example_id)
             for p in keyword_pairs(20)]
    res = fit_reward_model(LocalRewardModel(COMPS, backbone=tiny_backbone), pairs,
                           fit_cfg(epochs=1, max_epochs=4, lr=1e-3, head_lr=1e-2, batch_size=8))
    held = res["heldout"]["writer"]
    assert res["epochs"] == 4 and res["heldout_looks"] == 3
    assert held["beats_chance"] is False and held["p_value"] >= 0.05
    assert held["n_pairs"] == 12 and 0.0 <= held["pairwise_accuracy"] <= 1.0


def test_too_few_heldout_pairs_to_beat_chance_add_no_epochs(tiny_backbone):
    """One held-out input has 3 pairs: even 3 of 3 right is p = 0.125, so training stops."""
    res = fit_reward_model(LocalRewardModel(COMPS, backbone=tiny_backbone), keyword_pairs(5),
                           fit_cfg(epochs=2, max_epochs=10, lr=1e-3, head_lr=1e-2))
    held = res["heldout"]["writer"]
    assert res["epochs"] == 2 and res["heldout_looks"] == 0
    assert held["n_pairs"] == 3 and held["beats_chance"] is False and held["p_value"] >= 0.125


def test_head_only_adaptation_trains_its_epochs_only(tiny_backbone):
    m = LocalRewardModel(COMPS, backbone=tiny_backbone)
    res = fit_local_rewards(m, keyword_pairs(10), stage_cfg(tiny_backbone, adapt_epochs=3,
                                                           max_epochs=20), head_only=True)
    assert res["epochs"] == 3 and res["heldout_looks"] == 0 and not res["train_backbone"]


# ------------------------------------------------------------------ held-out inputs stay held out


def test_later_fits_never_train_on_inputs_held_out_before(tiny_backbone, tmp_path, monkeypatch):
    """Iteration 0 fits everything; iterations 1..3 adapt one head on a replay buffer of old
    and fresh pairs, with other seeds, after a save and load (a resumed run)."""
    trained_on: list[set[str]] = []
    real = train_mod._TrainingTexts.__init__

    def spy(self, model, pairs, weights):
        trained_on.append({input_key(p) for p in pairs})
        real(self, model, pairs, weights)

    monkeypatch.setattr(train_mod._TrainingTexts, "__init__", spy)
    cfg = stage_cfg(tiny_backbone, epochs=1, max_epochs=1, adapt_epochs=2)
    first = keyword_pairs(10) + keyword_pairs(10, "critic", seed=1)
    m = LocalRewardModel(COMPS, backbone=tiny_backbone)
    r0 = fit_local_rewards(m, first, cfg, seed=0)
    held0 = set(r0["heldout_inputs"])
    assert len(held0) == 2 and not held0 & trained_on[0]
    m = LocalRewardModel.load(m.save(tmp_path / "lrf"))
    buffer = [p for p in first if p.component == "writer"]
    for it in (1, 2, 3):
        buffer += keyword_pairs(5, seed=it, first_id=10 * it)
        r = fit_local_rewards(m, buffer, cfg, components=["writer"], head_only=True, seed=it)
        held = set(r["heldout_inputs"])
        assert held0 <= held, "an input held out earlier was moved to training"
        assert not held & trained_on[-1], "the fit trained on held-out inputs"
        assert not held & set().union(*trained_on), "held-out figures count trained inputs"
        n_held = sum(input_key(p) in held for p in buffer)
        assert r["heldout"]["writer"]["n_pairs"] == n_held == r["split"]["writer"][
            "n_heldout_pairs"]


def test_checkpointed_fit_and_save_print_no_transformers_noise(tiny_backbone, tmp_path, capfd):
    """A backbone fit under gradient checkpointing, then its save: transformers says nothing
    (no "use_cache=True is incompatible with gradient checkpointing", no shard-writing bar)."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()  # "once" per process: an earlier test may have used it
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    hf_logger = logging.getLogger("transformers")  # its own handler, not propagated to root
    hf_logger.addHandler(handler)
    try:
        m = LocalRewardModel(COMPS, backbone=tiny_backbone)
        fit_reward_model(m, keyword_pairs(8), fit_cfg(epochs=1, lr=1e-3, batch_size=8,
                                                      gradient_checkpointing=True), seed=0)
        m.save(tmp_path / "lrf")
    finally:
        hf_logger.removeHandler(handler)
    assert not [s for s in said if "use_cache" in s], said
    assert "Writing model shards" not in capfd.readouterr().err
