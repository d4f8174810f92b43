"""Whether the loop may trust a component's reward head: only where, on held-out pairs of the
component's own outputs, it has ranked them better than chance and better than rules that
never read the input.

The pairs are the held-out ones of ``LocalRewardModel.evaluate``'s ``sampled`` figures: the
inputs the model's split holds out, no gold answer on either side. The head is right on a
pair when r(chosen) - r(rejected) > TIE_TOL (a tie is wrong, as in ``evaluate``). The
input-blind controls, scored on the same pairs:

- ``shorter_wins``: the shorter output text wins; equal lengths count half.
- ``output_prior``: an output's text scores its wins minus its losses in the training pairs,
  whatever their input; the higher score wins, equal scores (texts never seen) count half.
- ``model_identity``: the same tally by the model that wrote the output (the pairs'
  ``chosen_writer`` / ``rejected_writer``; "the larger model's answer wins"); pairs whose
  writers are unknown or the same count half.

An output's text is its field values in key order, lowercased and whitespace-collapsed.
A model that is never trained (``lrf.trains`` False: the zero-shot judge of rewards/judge.py)
has no training pairs to keep apart: every pair of its own outputs is held out, and the
output prior of a pair is tallied on the pairs of the other inputs (cross-fitted by input).
The head is ``trusted`` when it beats chance and each control by one-sided sign tests at
``CHANCE_ALPHA`` over *inputs*: the pairs of one input share its text and its candidates,
so they are not independent evidence, and an input counts once. Against chance, an input is
a win when the head is right on more of its pairs than wrong, a loss when wrong on more;
against a control, a pair is a win for the head when the head is right and the control
wrong or tied, a loss when the head is wrong and the control right or tied, and an input
is a win or a loss by the balance of its pairs. Inputs that balance out are dropped.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from optimas_cli.rewards.model import CHANCE_ALPHA, TIE_TOL
from optimas_cli.rewards.pairs import PreferencePair, input_key
from optimas_cli.stats import sign_test_greater

Rule = Callable[[PreferencePair], float]  # 1: chosen wins, 0: rejected wins, 0.5: no call
# the fewest inputs on which a head right on every pair beats chance (0.5 ** n < alpha)
MIN_INPUTS = math.floor(math.log2(1 / CHANCE_ALPHA)) + 1


def sign_test_by_input(keys: Sequence[str], values: Sequence[float]) -> tuple[int, int, float]:
    """Inputs won and lost, and the one-sided sign test's p-value, where `values[i]` is
    pair i's +1 (a win), -1 (a loss) or 0 and `keys[i]` its input: an input is won when its
    pairs' values sum above 0, lost below, dropped at 0."""
    net: dict[str, float] = {}
    for k, v in zip(keys, values, strict=True):
        net[k] = net.get(k, 0.0) + v
    wins = sum(v > 0 for v in net.values())
    losses = sum(v < 0 for v in net.values())
    return wins, losses, sign_test_greater(wins, losses)


def output_text(outputs: Mapping[str, Any]) -> str:
    """An output's text as the controls read it: values in key order, lowercased,
    whitespace collapsed."""
    return " ".join(" ".join(str(outputs[k]).split()) for k in sorted(outputs)).lower()


def _compare(a: float, b: float) -> float:
    return 1.0 if a > b else 0.0 if a < b else 0.5


def shorter_wins(pair: PreferencePair) -> float:
    """1 when the chosen output's text is the shorter, 0 when the longer, 0.5 when as long."""
    return _compare(len(output_text(pair.rejected)), len(output_text(pair.chosen)))


Side = Callable[[PreferencePair], tuple[str, str]]  # what a prior tallies: (chosen, rejected)


def texts(p: PreferencePair) -> tuple[str, str]:
    return output_text(p.chosen), output_text(p.rejected)


def writers(p: PreferencePair) -> tuple[str, str]:
    return p.chosen_writer, p.rejected_writer


def _no_call(side: Side, a: str, b: str) -> bool:
    """The same text or writer, or a writer unknown: the prior cannot tell them apart."""
    return a == b or (side is writers and not (a and b))


def _tally(pairs: Sequence[PreferencePair], side: Side) -> Counter[str]:
    tally: Counter[str] = Counter()
    for p in pairs:
        won, lost = side(p)
        tally[won] += 1
        tally[lost] -= 1
    return tally


def output_prior(train: Sequence[PreferencePair], side: Side = texts) -> Rule:
    """The rule that prefers the output text (`side=writers`: the writing model) with more
    wins minus losses in `train`."""
    tally = _tally(train, side)

    def rule(p: PreferencePair) -> float:
        a, b = side(p)
        return 0.5 if _no_call(side, a, b) else _compare(tally[a], tally[b])

    return rule


def prior_of_other_inputs(pairs: Sequence[PreferencePair], side: Side = texts) -> Rule:
    """output_prior with a pair's own input left out of the tally: a control for a model
    judged on every pair (none of them trained on)."""
    total = _tally(pairs, side)
    by_input: dict[str, list[PreferencePair]] = {}
    for p in pairs:
        by_input.setdefault(input_key(p), []).append(p)
    own = {k: _tally(ps, side) for k, ps in by_input.items()}

    def rule(p: PreferencePair) -> float:
        mine = own.get(input_key(p), Counter())
        a, b = side(p)
        if _no_call(side, a, b):
            return 0.5
        return _compare(total[a] - mine[a], total[b] - mine[b])

    return rule


def assess(margins: Sequence[float], heldout: Sequence[PreferencePair],
           train: Sequence[PreferencePair], cross_fit: Sequence[PreferencePair] = ()
           ) -> dict[str, Any]:
    """Trust in one head: `margins[i]` is its r(chosen) - r(rejected) on `heldout[i]`
    (pairs with the gold answer are left out here), `train` the pairs it trained on, whose
    priors are the controls; with `cross_fit` (a model trained on nothing), the priors are
    tallied on those pairs, each held-out pair's own input left out.

    Returns ``{"n_pairs", "n_inputs", "accuracy", "p_value" (vs chance, by input),
    "controls": {name: {"accuracy", "p_value" (sign test of the head against it, by
    input)}}, "trusted"}`` and, when not trusted, a one-line ``reason``."""
    if len(margins) != len(heldout):
        raise ValueError(f"{len(margins)} margins for {len(heldout)} held-out pairs")
    own = [(m, p) for m, p in zip(margins, heldout, strict=True) if not p.gold]
    head = [float(m > TIE_TOL) for m, _ in own]
    keys = [input_key(p) for _, p in own]
    n, n_inputs = len(own), len(set(keys))
    right = int(sum(head))
    out: dict[str, Any] = {"n_pairs": n, "n_inputs": n_inputs,
                           "accuracy": right / n if n else None,
                           "p_value": sign_test_by_input(keys, [2 * h - 1 for h in head])[2],
                           "controls": {}}
    reasons = []
    def prior(side: Side) -> Rule:
        return prior_of_other_inputs(cross_fit, side) if cross_fit else output_prior(train, side)

    for name, rule in (("shorter_wins", shorter_wins), ("output_prior", prior(texts)),
                       ("model_identity", prior(writers))):
        calls = [rule(p) for _, p in own]
        p = sign_test_by_input(keys, [float(h > c) - float(h < c)
                                      for h, c in zip(head, calls, strict=True)])[2]
        out["controls"][name] = {"accuracy": sum(calls) / n if n else None, "p_value": p}
        if n and p >= CHANCE_ALPHA:
            reasons.append(f"accuracy {out['accuracy']:.2f} does not beat {name} "
                           f"{sum(calls) / n:.2f} (sign test by input p={p:.2g})")
    if n == 0:
        reasons = ["no held-out pair of the component's own outputs (gold pairs do not count)"]
    elif n_inputs < MIN_INPUTS:
        reasons = [f"{n} held-out pairs of own outputs on {n_inputs} input(s): too few to "
                   f"show anything"]
    elif out["p_value"] >= CHANCE_ALPHA:
        reasons.insert(0, f"accuracy {out['accuracy']:.2f} on {n} held-out pairs of own "
                          f"outputs ({n_inputs} inputs) does not beat chance "
                          f"(p={out['p_value']:.2g}, by input)")
    out["trusted"] = not reasons
    if reasons:
        out["reason"] = "; ".join(reasons)
    return out


def component_trust(lrf: Any, component: str, pairs: Sequence[PreferencePair]) -> dict[str, Any]:
    """`assess` for `component`'s head of `lrf` (a LocalRewardModel): the held-out and
    training pairs among `pairs` are those of its split (`lrf.split`); for a model that is
    never trained, every pair is held out (the output prior cross-fitted by input)."""
    mine = [p for p in pairs if p.component == component]
    zero_shot = not getattr(lrf, "trains", True)
    held = [p for p in mine if (zero_shot or input_key(p) in lrf.split.heldout) and not p.gold]
    train = [] if zero_shot else [p for p in mine if input_key(p) in lrf.split.train]
    r = lrf.score_items([(component, p.inputs, side) for p in held
                         for side in (p.chosen, p.rejected)])
    return assess([r[2 * i] - r[2 * i + 1] for i in range(len(held))], held, train,
                  cross_fit=mine if zero_shot else ())


def untrusted(trust: Mapping[str, Any] | None) -> str | None:
    """Why a head's ranking may not decide anything (None when it may): its `assess`
    reason, or that its alignment was not measured."""
    if trust is None:
        return "the local reward's alignment was not measured (no held-out pairs)"
    return None if trust.get("trusted") else trust.get("reason", "not trusted")
