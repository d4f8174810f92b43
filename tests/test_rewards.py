"""Tests for the local reward model (optimas_cli.rewards): pairs, scoring, saving.

Fast tests run a tiny randomly initialised BERT saved to a temp dir (with the
embedded MiniLM tokenizer); the ones marked slow use the real all-MiniLM-L6-v2.
Training is tested in test_rewards_fit.py, the encoder text in test_rewards_text.py.
"""

from __future__ import annotations

import math
import os
import random
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from optimas_cli.rewards import (  # noqa: E402
    InputSplit,
    LocalRewardModel,
    PreferencePair,
    bt_loss,
    fit_reward_model,
    format_text,
    gap_weights,
    input_key,
    resolve_backbone,
    split_by_input,
)
from optimas_cli.rewards.io import ADAPTER_DIR, BACKBONE_DIR, CONFIG_FILE  # noqa: E402
from optimas_cli.schema import RewardConfig  # noqa: E402


def fit_cfg(**kw) -> RewardConfig:
    """A reward config for `fit_reward_model` in these tests, `kw` over: no gap weights, no
    activation checkpointing, no epochs past `epochs` (max_epochs 1) and heads adapted at
    1e-3 (the settings these tests were written with)."""
    return RewardConfig(**{"weight_by_gap": False, "gradient_checkpointing": False,
                           "max_epochs": 1, "adapt_head_lr": 1e-3, **kw})


# ------------------------------------------------------------------ synthetic data

GOOD, MID, BAD = "excellent", "acceptable", "terrible"
FILLER = (
    "river stone window paper orange garden music table winter pencil cloud "
    "engine forest candle bridge silver letter market mountain blanket"
).split()
TOPICS = (
    "volcanoes tides glaciers comets bees tulips bridges trains violins coral "
    "deserts owls chess pottery lighthouses rainbows kites salmon caves maples "
    "bicycles clocks whales ferns lanterns harbors canyons meteors orchids wolves "
    "sails tunnels castles lagoons pianos mosses islands geysers parrots quarries "
    "windmills"
).split()


def keyword_pairs(n_inputs: int = 40, component: str = "writer", seed: int = 0, first_id: int = 0):
    """Per input three candidates; the one saying GOOD scores 1, MID 0.5, BAD 0.

    Inputs are examples ``ex<first_id>`` ... ``ex<first_id + n_inputs - 1>``.
    """
    rng = random.Random(seed)
    pairs = []
    for t in range(first_id, first_id + n_inputs):
        topic = TOPICS[t % len(TOPICS)]
        inputs = {"question": f"Write one sentence about {topic} (#{t})."}
        cands = []
        for word, score in ((GOOD, 1.0), (MID, 0.5), (BAD, 0.0)):
            filler = " ".join(rng.sample(FILLER, 4))
            cands.append(({"answer": f"{topic.capitalize()} are {word}. {filler}."}, score))
        for i in range(3):
            for j in range(i + 1, 3):
                (oa, sa), (ob, sb) = cands[i], cands[j]
                if sa < sb:
                    (oa, sa), (ob, sb) = (ob, sb), (oa, sa)
                pairs.append(PreferencePair(component, inputs, oa, ob, sa, sb, f"ex{t}"))
    return pairs


# ------------------------------------------------------------------ fixtures


def make_tiny_backbone(d: Path) -> str:
    """A 2-layer, 32-wide random BERT with the embedded MiniLM tokenizer (loads in ~0.1 s)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    src, _ = resolve_backbone("all-MiniLM-L6-v2")
    tok = AutoTokenizer.from_pretrained(src, local_files_only=True)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return str(d)


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"))


COMPS = {"writer": "Answers a question in one sentence.", "critic": "Criticises an answer."}

# ------------------------------------------------------------------ losses


def test_bt_loss_hand_values():
    z = torch.tensor([0.0, 1.5, -2.0])
    assert float(bt_loss(z, z)) == pytest.approx(math.log(2.0))
    assert float(bt_loss(torch.tensor([30.0]), torch.tensor([0.0]))) < 1e-9
    # large negative margin: loss ~ |margin|
    assert float(bt_loss(torch.tensor([0.0]), torch.tensor([20.0]))) == pytest.approx(
        20.0, rel=1e-6
    )
    # hand value: -log sigmoid(1) = log(1 + e^-1)
    assert float(bt_loss(torch.tensor([1.0]), torch.tensor([0.0]))) == pytest.approx(
        math.log1p(math.exp(-1.0))
    )
    rc, rr = torch.tensor([0.3, -0.2]), torch.tensor([0.1, 0.4])
    base = float(bt_loss(rc, rr))
    assert float(bt_loss(rc, rr, torch.tensor([2.0, 2.0]))) == pytest.approx(2 * base)
    assert float(bt_loss(rc, rr, torch.tensor([1.0, 0.0]))) == pytest.approx(
        math.log1p(math.exp(-0.2)) / 2
    )


def test_gap_weights():
    w = gap_weights([0.0, 0.5, 1.0, 2.0], floor=0.1)
    assert torch.allclose(w, torch.tensor([0.1, 0.325, 0.55, 1.0]))
    assert float(w.min()) >= 0.1 and float(w.max()) == pytest.approx(1.0)
    eq = gap_weights([0.3, 0.3, 0.3], floor=0.2)
    assert torch.isfinite(eq).all() and torch.allclose(eq, eq[0].expand(3)) and float(eq[0]) > 0
    zero = gap_weights([0.0, 0.0], floor=0.25)
    assert torch.isfinite(zero).all() and torch.allclose(zero, torch.tensor([0.25, 0.25]))
    # sign of the gap does not matter; no pair gets weight 0
    assert torch.allclose(gap_weights([-1.0, 1.0]), torch.tensor([1.0, 1.0]))
    assert float(gap_weights([0.0, 5.0], floor=0.05).min()) == pytest.approx(0.05)
    assert gap_weights([]).numel() == 0
    with pytest.raises(ValueError):
        gap_weights([1.0], floor=0.0)


# ------------------------------------------------------------------ data helpers


def test_pair_gap_and_input_key():
    p = PreferencePair("c", {"q": "x"}, {"a": "yes"}, {"a": "no"}, 0.25, 1.0, "e1")
    assert p.gap == pytest.approx(0.75)
    # an example id is the key for every component; without one, the component and inputs
    assert input_key(p) == input_key(PreferencePair("d", {"q": "other"}, {}, {}, 1, 0, "e1"))
    anon = PreferencePair("c", {"q": "x"}, {}, {}, 1, 0)
    assert input_key(anon) == input_key(PreferencePair("c", {"q": "x"}, {"a": 1}, {}, 1, 0))
    assert input_key(anon) != input_key(PreferencePair("d", {"q": "x"}, {}, {}, 1, 0))
    assert input_key(anon) != input_key(p)


def test_format_text_layout():
    t = format_text("Answers questions.", {"question": "Why?", "k": 3}, {"answer": "Because."})
    assert t.index("Answers questions.") < t.index("question: Why?") < t.index("answer: Because.")
    assert "k: 3" in t and t.index("Inputs:") < t.index("Output:")


def test_split_by_input_has_no_leakage():
    pairs = keyword_pairs(30, "writer") + keyword_pairs(20, "critic", seed=1, first_id=30)
    # pairs without an example id are grouped by component and inputs
    pairs += [PreferencePair("critic", pairs[0].inputs, {"a": "x"}, {"a": "y"}, 1, 0)]
    train, held = split_by_input(pairs, holdout=0.2, seed=3)
    assert len(train) + len(held) == len(pairs)
    tk, hk = {input_key(p) for p in train}, {input_key(p) for p in held}
    assert tk and hk and not tk & hk
    assert len(hk) == round(0.2 * 51)
    assert split_by_input(pairs, 0.2, seed=3) == (train, held)  # seeded
    assert split_by_input(pairs, 0.2, seed=4) != (train, held)
    assert split_by_input(pairs, 0.0) == (pairs, [])
    one = [PreferencePair("solo", {"q": 1}, {"a": 1}, {"a": 2}, 1, 0)] * 3
    assert split_by_input(one, 0.5) == (one, [])
    two = keyword_pairs(2)
    assert [len({input_key(p) for p in side}) for side in split_by_input(two, 0.9)] == [1, 1]


def test_input_split_never_moves_an_input_to_the_other_side():
    """Later assignments (other seeds, new inputs) keep every earlier input's side."""
    split = InputSplit()
    first = keyword_pairs(10)
    train0, held0 = split.assign(first, holdout=0.2, seed=0)
    held_keys = {input_key(p) for p in held0}
    train_keys = {input_key(p) for p in train0}
    assert len(held_keys) == 2 and len(train_keys) == 8
    for seed in range(1, 6):  # other seeds, a replay buffer of old and new inputs
        more = keyword_pairs(10, seed=seed, first_id=10 * seed)
        train, held = split.assign(first + more, holdout=0.2, seed=seed)
        assert held_keys <= {input_key(p) for p in held}
        assert not held_keys & {input_key(p) for p in train}
        assert train_keys <= {input_key(p) for p in train}
        assert len(split.heldout) == round(0.2 * (len(split.heldout) + len(split.train)))
    restored = InputSplit.from_dict(split.to_dict())
    assert restored == split
    # an input seen before keeps its side even where holdout is now 0
    assert restored.assign(first, holdout=0.0, seed=9) == (train0, held0)


# ------------------------------------------------------------------ tiny-backbone model


def test_encode_cuts_the_long_field_and_keeps_short_ones(tiny_backbone):
    m = LocalRewardModel(COMPS, backbone=tiny_backbone, max_length=48)
    long_ctx = " ".join(["background"] * 200)
    out = {"answer": "the final verdict is purple elephant"}
    ids = m.encode("writer", {"context": long_ctx, "question": "what colour?"}, out)
    assert len(ids) == 48
    out_ids = m.tokenizer("answer: the final verdict is purple elephant", add_special_tokens=False)[
        "input_ids"
    ]
    body = ids[1:-1]  # [CLS] ... [SEP]
    assert body[-len(out_ids) :] == out_ids, "the output must survive truncation intact"
    q_ids = m.tokenizer("question: what colour?", add_special_tokens=False)["input_ids"]
    s = m.tokenizer.decode(ids)
    assert "what colour" in s, "short input fields survive: only the long one is cut"
    assert any(body[i : i + len(q_ids)] == q_ids for i in range(len(body)))
    assert ids[0] == m.tokenizer.cls_token_id and ids[-1] == m.tokenizer.sep_token_id
    # an output longer than the whole budget is itself cut, never overflowing
    ids2 = m.encode("writer", {"q": "x"}, {"answer": long_ctx})
    assert len(ids2) == 48
    # short texts are untouched and equal the tokenizer on format_text()
    short = m.encode("writer", {"q": "hi"}, {"a": "yo"})
    ref = m.tokenizer(format_text(COMPS["writer"], {"q": "hi"}, {"a": "yo"}))["input_ids"]
    assert short == list(ref)


def test_score_aligns_each_output_with_its_input(tiny_backbone):
    m = LocalRewardModel(COMPS, backbone=tiny_backbone)
    ins = [{"question": f"q{i} " + "word " * (i * 3)} for i in range(10)]
    outs = [{"answer": f"a{i}"} for i in range(10)]
    s = m.score("writer", ins, outs, batch_size=3)
    perm = [7, 2, 9, 0, 4, 1, 8, 3, 6, 5]
    m.clear_cache()  # recompute the backbone features in other batch compositions
    sp = m.score("writer", [ins[i] for i in perm], [outs[i] for i in perm], batch_size=4)
    for k, i in enumerate(perm):
        assert sp[k] == pytest.approx(s[i], abs=1e-5)
    singles = []
    for i, o in zip(ins, outs, strict=True):
        m.clear_cache()
        singles.append(m.score("writer", [i], [o])[0])
    assert singles == pytest.approx(s, abs=1e-5)
    assert len(set(round(x, 6) for x in s)) > 1
    # a shared inputs dict broadcasts; lengths must match otherwise
    assert m.score("writer", ins[0], outs[:2]) == pytest.approx(
        m.score("writer", [ins[0], ins[0]], outs[:2]), abs=1e-6
    )
    with pytest.raises(ValueError):
        m.score("writer", ins[:2], outs[:3])
    with pytest.raises(KeyError):
        m.score("nope", ins[:1], outs[:1])
    # heads differ per component
    assert m.score("critic", ins, outs) != pytest.approx(s, abs=1e-4)


def test_evaluate_metrics_by_hand(tiny_backbone):
    m = LocalRewardModel(COMPS, backbone=tiny_backbone)
    pairs = keyword_pairs(4)
    with torch.no_grad():  # constant head: every pair is a tie, Spearman undefined
        m.head("writer").weight.zero_()
        m.head("writer").bias.fill_(0.7)
    r = m.evaluate(pairs)["writer"]
    agreement = {"pairwise_accuracy": 0.0, "n_pairs": 12, "tie_fraction": 1.0, "p_value": 1.0,
                 "beats_chance": False}
    # no pair has the gold answer on a side: the own-output figures are the same
    assert r == {**agreement, "spearman": None, "n_candidates": 12, "sampled": agreement}
    # an oracle scorer: LRF score == rollout score
    oracle = {}
    for p in pairs:
        oracle[(str(p.inputs), str(p.chosen))] = p.score_chosen
        oracle[(str(p.inputs), str(p.rejected))] = p.score_rejected
    m.score_items = lambda items, bs=32: [oracle[(str(i), str(o))] for _, i, o in items]
    r = m.evaluate(pairs)["writer"]
    assert r["pairwise_accuracy"] == 1.0 and r["tie_fraction"] == 0.0
    assert r["spearman"] == pytest.approx(1.0)
    assert r["p_value"] == pytest.approx(0.5**12) and r["beats_chance"] is True
    m.score_items = lambda items, bs=32: [-oracle[(str(i), str(o))] for _, i, o in items]
    r = m.evaluate(pairs)["writer"]
    assert r["pairwise_accuracy"] == 0.0 and r["spearman"] == pytest.approx(-1.0)


def test_evaluate_gives_the_pairs_of_own_outputs_apart_from_those_against_the_gold(tiny_backbone):
    m = LocalRewardModel(COMPS, backbone=tiny_backbone)
    ins = {"question": "q"}

    def pair(chosen, rejected, gold):
        return PreferencePair("writer", ins, {"answer": chosen}, {"answer": rejected}, 1.0, 0.0,
                              example_id=chosen, gold=gold)

    # a head that learned "the dataset's answers look different" and nothing else: right on
    # the 10 pairs against the gold answer, wrong on the 2 of the component's own outputs
    pairs = ([pair(f"gold {k}", f"model {k}", True) for k in range(10)]
             + [pair(f"better {k}", f"worse {k}", False) for k in range(2)])
    style = {"gold": 1.0, "model": 0.0, "better": 0.0, "worse": 0.5}
    m.score_items = lambda items, bs=32: [style[o["answer"].split()[0]] for _, _, o in items]
    r = m.evaluate(pairs)["writer"]
    assert r["pairwise_accuracy"] == pytest.approx(10 / 12) and r["beats_chance"] is True
    assert r["sampled"] == {"pairwise_accuracy": 0.0, "n_pairs": 2, "tie_fraction": 0.0,
                            "p_value": 1.0, "beats_chance": False}
    assert m.evaluate(pairs[:10])["writer"]["sampled"] is None  # no pair of its own outputs


@pytest.mark.parametrize("mode", ["reference", "full", "lora"])
def test_save_load_round_trip(tiny_backbone, tmp_path, mode):
    kw = {"lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}} if mode == "lora" else {}
    src = shutil.copytree(tiny_backbone, tmp_path / "bb")  # private copy, deleted below
    m = LocalRewardModel(COMPS, backbone=str(src), max_length=40, **kw)
    pairs = keyword_pairs(8) + keyword_pairs(6, "critic", seed=1)
    fit_reward_model(m, pairs, fit_cfg(epochs=1, adapt_epochs=1, lr=5e-3, batch_size=8),
                     train_backbone=mode != "reference")
    d = m.save(tmp_path / "lrf")
    assert (d / CONFIG_FILE).exists()
    assert (d / BACKBONE_DIR).exists() == (mode == "full")
    # LoRA adapters are peft's own files, nothing else of the backbone
    assert (d / ADAPTER_DIR / "adapter_config.json").exists() == (mode == "lora")
    if mode == "full":  # a fine-tuned backbone is saved whole: the source is not needed
        shutil.rmtree(src)
    m2 = LocalRewardModel.load(d)
    assert m2.components == m.components and m2.max_length == m.max_length
    assert m2.split == m.split and m2.split.heldout  # the held-out inputs travel with the model
    m.clear_cache()  # features cached during fit came from other batches (1e-7 noise)
    for comp in COMPS:
        ins = [p.inputs for p in pairs]
        outs = [p.rejected for p in pairs]
        assert m2.score(comp, ins, outs) == m.score(comp, ins, outs)
    assert m2._backbone_modified == (mode != "reference")
    if mode == "lora":  # adapters were really trained (B starts at zero) and load trainable
        lora_b = [v for k, v in m2.backbone.state_dict().items() if "lora_B" in k]
        assert lora_b and any(float(v.abs().sum()) > 0 for v in lora_b)
        assert m2.backbone_trainable() and all(p.requires_grad for p in m2.backbone_trainable())


def test_decoder_backbone_uses_last_token_pooling(tmp_path, tiny_backbone):
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128)
    GPT2Model(cfg).save_pretrained(str(tmp_path / "gpt"))
    tok.save_pretrained(str(tmp_path / "gpt"))
    m = LocalRewardModel(COMPS, backbone=str(tmp_path / "gpt"), max_length=300)
    assert m.pooling == "last" and m.max_length == 128
    ins = [{"q": "short"}, {"q": "a much longer question " * 5}, {"q": "mid length one"}]
    outs = [{"a": "x"}, {"a": "y"}, {"a": "z"}]
    batch = m.score("writer", ins, outs)
    singles = []
    for i, o in zip(ins, outs, strict=True):
        m.clear_cache()
        singles.append(m.score("writer", [i], [o])[0])
    assert batch == pytest.approx(singles, abs=1e-5)
    res = fit_reward_model(m, keyword_pairs(6), fit_cfg(epochs=1, lr=1e-3, holdout=0.0))
    assert res["train_backbone"] and res["steps"] > 0



# ------------------------------------------------------------------ real MiniLM backbone


def test_default_backbone_resolves_to_embedded_weights():
    path, local = resolve_backbone("all-MiniLM-L6-v2")
    assert local and os.path.exists(os.path.join(path, "model.safetensors"))
