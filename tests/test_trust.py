"""Whether the loop may trust a reward head (optimas_cli/rewards/trust.py): it must beat
chance and the input-blind controls on held-out pairs of the component's own outputs."""

from __future__ import annotations

import pytest

from optimas_cli.rewards import InputSplit, PreferencePair, input_key
from optimas_cli.rewards.trust import (
    MIN_INPUTS,
    assess,
    component_trust,
    output_prior,
    prior_of_other_inputs,
    shorter_wins,
    untrusted,
    writers,
)
from optimas_cli.stats import sign_test_greater


def pair(i: int, chosen: str, rejected: str, gold: bool = False) -> PreferencePair:
    return PreferencePair("c", {"q": f"question {i}"}, {"a": chosen}, {"a": rejected}, 1.0, 0.0,
                          f"ex{i}", gold=gold)


def margins_of(rule, pairs):
    """A head that ranks exactly as `rule` does: +1 where it picks the chosen side, -1 else."""
    return [1.0 if rule(p) == 1.0 else -1.0 for p in pairs]


def test_the_controls_read_only_the_output_text():
    assert shorter_wins(pair(0, "no", "maybe")) == 1.0
    assert shorter_wins(pair(0, "maybe", "no")) == 0.0
    assert shorter_wins(pair(0, "yes", "  no  ")) == 0.0  # whitespace collapsed: 3 vs 2
    assert shorter_wins(pair(0, "abc", "xyz")) == 0.5
    prior = output_prior([pair(1, "Yes", "no"), pair(2, "yes ", "maybe"), pair(3, "maybe", "no")])
    # "yes" +2, "maybe" 0, "no" -2, whatever the input; case and spacing do not matter
    assert prior(pair(9, "YES", "no")) == 1.0 and prior(pair(9, "no", "maybe")) == 0.0
    assert prior(pair(9, "never seen", "other")) == 0.5


def test_a_head_that_only_reproduces_shorter_wins_is_not_trusted_even_above_chance():
    # 15 of 20 held-out pairs were won by the shorter output; the head prefers the shorter one
    held = [pair(i, "short", "much longer answer") for i in range(15)]
    held += [pair(i, "much longer answer", "short") for i in range(15, 20)]
    t = assess(margins_of(shorter_wins, held), held, train=[])
    assert t["accuracy"] == 0.75 and t["p_value"] < 0.05  # beats chance...
    assert t["controls"]["shorter_wins"] == {"accuracy": 0.75, "p_value": 1.0}
    assert t["trusted"] is False  # ...but not the rule it reproduces
    assert t["reason"] == "accuracy 0.75 does not beat shorter_wins 0.75 (sign test by input p=1)"
    assert untrusted(t) == t["reason"]


def test_a_head_that_only_reproduces_the_output_prior_is_not_trusted():
    train = [pair(100 + i, "yes", "no") for i in range(6)]
    held = [pair(i, "Yes", "no ") for i in range(16)] + [pair(i, "no", "yes") for i in range(16, 20)]
    t = assess(margins_of(output_prior(train), held), held, train)
    assert t["accuracy"] == 0.8 and t["controls"]["output_prior"]["accuracy"] == 0.8
    assert not t["trusted"] and "does not beat output_prior 0.80" in t["reason"]


def test_a_head_right_where_the_rules_fail_is_trusted():
    # the chosen output is the longer one and the one that lost in training: both rules fail
    train = [pair(100 + i, f"wrong {i}", f"right answer {i}") for i in range(20)]
    held = [pair(i, f"right answer {i}", f"wrong {i}") for i in range(20)]
    margins = [0.5] * 18 + [-0.5, 0.0]  # right on 18; a tie counts as wrong
    t = assess(margins, held, train)
    assert t["accuracy"] == 0.9 and t["n_pairs"] == 20
    assert t["controls"]["shorter_wins"]["accuracy"] == 0.0
    assert t["controls"]["output_prior"]["accuracy"] == 0.0
    assert t["controls"]["shorter_wins"]["p_value"] == pytest.approx(0.5 ** 18)
    assert t["trusted"] is True and "reason" not in t and untrusted(t) is None


def test_a_head_at_chance_is_not_trusted_and_the_reason_says_so():
    held = [pair(i, f"right answer {i}", f"wrong {i}") for i in range(20)]
    t = assess([1.0] * 11 + [-1.0] * 9, held, [])
    assert not t["trusted"]
    assert t["reason"].startswith("accuracy 0.55 on 20 held-out pairs of own outputs (20 inputs) "
                                  "does not beat chance (p=")


def test_too_few_pairs_show_nothing_even_when_all_are_right():
    held = [pair(i, f"right answer {i}", f"no {i}") for i in range(3)]
    t = assess([1.0] * 3, held, [])
    assert t["accuracy"] == 1.0 and not t["trusted"]
    assert t["reason"] == "3 held-out pairs of own outputs on 3 input(s): too few to show anything"
    assert MIN_INPUTS == 5  # 0.5 ** 5 < 0.05 <= 0.5 ** 4


def test_the_pairs_of_one_input_count_as_one_piece_of_evidence():
    # 24 pairs, every one right where both rules fail, but from 3 inputs only: the pairs of an
    # input share its text and its candidates, so that is 3 wins, not 24
    train = [pair(100 + i, f"wrong {i}", f"right answer {i}") for i in range(20)]
    held = [pair(i % 3, f"right answer {i}", f"wrong {i}") for i in range(24)]
    t = assess([1.0] * 24, held, train)
    assert t["n_pairs"] == 24 and t["n_inputs"] == 3 and not t["trusted"]
    assert t["reason"] == "24 held-out pairs of own outputs on 3 input(s): too few to show anything"
    # on 6 inputs, 4 won, 1 lost and 1 balanced: p = P(>= 4 of 5) = 6/32, not trusted
    held = [pair(i % 6, f"right answer {i}", f"wrong {i}") for i in range(24)]
    margins = [1.0 if i % 6 < 4 else -1.0 if i % 6 == 4 else (1.0 if i < 12 else -1.0)
               for i in range(24)]
    t = assess(margins, held, train)
    assert t["accuracy"] == 0.75 and sign_test_greater(18, 6) < 0.05  # above chance pair by pair...
    assert t["p_value"] == pytest.approx(6 / 32) and not t["trusted"]  # ...not input by input


def test_pairs_with_the_gold_answer_do_not_count():
    own = [pair(i, f"right answer {i}", f"wrong {i}") for i in range(4)]
    gold = [pair(10 + i, f"gold {i}", f"right answer long {i}", gold=True) for i in range(20)]
    t = assess([1.0] * 24, own + gold, [])
    assert t["n_pairs"] == 4 and not t["trusted"] and "4 held-out pairs" in t["reason"]
    t = assess([1.0] * 20, gold, [])  # right on every pair, all of them against the gold answer
    assert t["n_pairs"] == 0 and t["accuracy"] is None and not t["trusted"]
    assert t["reason"].startswith("no held-out pair of the component's own outputs")


def test_an_unmeasured_head_is_not_trusted():
    assert "not measured" in untrusted(None)


class TableHead:
    """A reward model stand-in: a score per output text, and a split."""

    def __init__(self, scores, split):
        self.scores, self.split = scores, split

    def score_items(self, items):
        return [self.scores[o["a"]] for _, _, o in items]


def test_component_trust_scores_the_held_out_own_pairs_of_the_component_only():
    held = [pair(i, f"right answer {i}", f"wrong {i}") for i in range(6)]
    train = [pair(100 + i, f"right answer {i}", f"wrong {i}") for i in range(6)]
    other = PreferencePair("d", {"q": "x"}, {"a": "wrong 0"}, {"a": "right answer 0"}, 1, 0, "ex0")
    gold = pair(5, "gold", "wrong 5", gold=True)
    split = InputSplit(heldout={input_key(p) for p in held}, train={input_key(p) for p in train})
    scores = {f"right answer {i}": 1.0 for i in range(6)} | {f"wrong {i}": 0.0 for i in range(6)}
    head = TableHead(scores | {"gold": 0.0}, split)
    t = component_trust(head, "c", held + train + [other, gold])
    assert t["n_pairs"] == 6 and t["accuracy"] == 1.0
    # the prior learned from the training pairs ("right answer i" won there) explains all of it
    assert t["controls"]["output_prior"]["accuracy"] == 1.0 and not t["trusted"]


def test_a_zero_shot_model_is_judged_on_every_pair_against_a_prior_of_the_other_inputs():
    # twelve inputs, the right answer winning on each: a zero-shot head right on every pair
    pairs = [pair(i, f"right answer {i}", f"wrong {i}") for i in range(12)]
    scores = {f"right answer {i}": 1.0 for i in range(12)} | {f"wrong {i}": 0.0 for i in range(12)}
    head = TableHead(scores, InputSplit())  # nothing trained: an empty split
    head.trains = False
    t = component_trust(head, "c", pairs)
    assert t["n_pairs"] == 12 and t["accuracy"] == 1.0  # every pair held out, not a split's share
    # each text is seen on its own input only: the other inputs' prior knows none of them
    assert t["controls"]["output_prior"]["accuracy"] == 0.5 and t["trusted"]
    # a text that wins on other inputs gives the prior its call; its own input does not count
    same = [pair(i, "yes", "no") for i in range(12)]
    head = TableHead({"yes": 1.0, "no": 0.0}, InputSplit())
    head.trains = False
    t = component_trust(head, "c", same)
    assert t["controls"]["output_prior"]["accuracy"] == 1.0 and not t["trusted"]
    assert prior_of_other_inputs(same[:1])(same[0]) == 0.5  # one input: no evidence


def written(i: int, chosen: str, rejected: str, by: tuple[str, str]) -> PreferencePair:
    p = pair(i, chosen, rejected)
    p.chosen_writer, p.rejected_writer = by
    return p


def test_a_head_that_only_knows_which_model_wrote_the_output_is_not_trusted():
    big, small = "local/qwen2.5-coder-1.5b-instruct", "local/smollm2-135m-instruct"
    train = [written(100 + i, f"a{i}", f"b{i}", (big, small)) for i in range(8)]
    # held out: the larger model's answer wins 16 of 20, every text new
    held = [written(i, f"c{i}", f"d{i}", (big, small)) for i in range(16)]
    held += [written(i, f"e{i}", f"f{i}", (small, big)) for i in range(16, 20)]
    head = [1.0] * 16 + [-1.0] * 4  # prefers the larger model's output, whatever the input
    t = assess(head, held, train)
    assert t["controls"]["output_prior"]["accuracy"] == 0.5  # it has seen none of these texts
    assert t["controls"]["model_identity"]["accuracy"] == 0.8 and not t["trusted"]
    assert "does not beat model_identity 0.80" in t["reason"]
    # the writer unknown or the same on both sides: the control makes no call
    assert output_prior(train, writers)(written(0, "x", "y", ("", small))) == 0.5
    assert output_prior(train, writers)(written(0, "x", "y", (big, big))) == 0.5
