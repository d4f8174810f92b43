"""Preference pairs, and which inputs a reward model trains on or holds out.

A :class:`PreferencePair` says one output of a component beat another on the same
inputs. Pairs are split BY INPUT (an example id, or the inputs themselves when a pair
has none): every pair of one input is on the same side. :class:`InputSplit` remembers
each input's side for the life of a reward model, so a later fit never trains on an
input an earlier fit held out, and held-out figures only ever count never-trained pairs.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PreferencePair:
    """One preference between two outputs of the same component on the same inputs."""

    component: str
    inputs: dict
    chosen: dict
    rejected: dict
    score_chosen: float
    score_rejected: float
    example_id: str = ""
    gold: bool = False  # one side is the dataset's answer (collect.add_gold), not a model output
    # the model that wrote each side ("gold" for the dataset's answer; "" when unknown): what
    # rewards/trust.py's model_identity control reads
    chosen_writer: str = ""
    rejected_writer: str = ""

    @property
    def gap(self) -> float:
        return abs(float(self.score_chosen) - float(self.score_rejected))


def canonical(d: Mapping[str, Any]) -> str:
    """A dict as canonical JSON: equal dicts give equal strings."""
    return json.dumps(d, sort_keys=True, ensure_ascii=False, default=str)


def input_key(pair: PreferencePair) -> str:
    """What a pair is held out by: its example id, shared by every component, so the
    shared backbone never trains on a held-out example's text; without an id, a hash
    of the component and its inputs."""
    if pair.example_id:
        return f"example:{pair.example_id}"
    digest = hashlib.sha1((pair.component + "\x00" + canonical(pair.inputs)).encode()).hexdigest()
    return f"inputs:{digest[:16]}"


@dataclass
class InputSplit:
    """The held-out and training inputs of one reward model; an input never changes side."""

    heldout: set[str] = field(default_factory=set)
    train: set[str] = field(default_factory=set)

    def assign(
        self, pairs: Sequence[PreferencePair], holdout: float, seed: int
    ) -> tuple[list[PreferencePair], list[PreferencePair]]:
        """Split ``pairs`` into (train, held-out), giving inputs seen for the first time a side.

        Inputs seen before keep their side. New inputs are shuffled (seeded) and held out
        until about ``holdout`` of all inputs known so far are: at least one when there
        are two or more inputs and ``holdout > 0``, never all of them.
        """
        if not 0.0 <= holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {holdout}")
        new = sorted({input_key(p) for p in pairs} - self.heldout - self.train)
        total = len(self.heldout) + len(self.train) + len(new)
        n_held = 0
        if holdout > 0 and total >= 2:
            wanted = max(1, round(holdout * total)) - len(self.heldout)
            n_held = max(0, min(wanted, len(new) - (0 if self.train else 1)))
        random.Random(seed).shuffle(new)
        self.heldout.update(new[:n_held])
        self.train.update(new[n_held:])
        held = [p for p in pairs if input_key(p) in self.heldout]
        return [p for p in pairs if input_key(p) in self.train], held

    def to_dict(self) -> dict[str, list[str]]:
        return {"heldout": sorted(self.heldout), "train": sorted(self.train)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Iterable[str]] | None) -> InputSplit:
        d = d or {}
        return cls(set(d.get("heldout", ())), set(d.get("train", ())))


def split_by_input(
    pairs: Sequence[PreferencePair], holdout: float = 0.2, seed: int = 0
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held-out) pairs of a fresh :class:`InputSplit`: no input on both sides."""
    return InputSplit().assign(pairs, holdout, seed)
