"""The text a reward head scores, and its token ids within a length budget.

Layout (:func:`format_text`)::

    Component: <description>
    Inputs:
    <field>: <value>        one line per input field
    Output:
    <field>: <value>        one line per output field

Every segment (the description line and each field line) gets its own token budget:
the budget is water-filled, so a segment shorter than its fair share is kept whole
and hands what it does not use to the longer ones. A short question is therefore
never dropped next to a long retrieved context. A segment that is cut keeps its head
and its tail around a marker naming its full size (``[... 10 lines, 1250 tokens
...]``), so two long values that share a head (5 and 10 retrieved passages) still
give different token ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

INPUTS_HEADER = "Inputs:\n"
OUTPUT_HEADER = "Output:\n"
_SEG_CACHE_LIMIT = 200_000  # tokenized text pieces kept (cleared wholesale beyond this)
_IDS_CACHE_LIMIT = 50_000  # encoded texts kept
_HEAD_SHARE = 2 / 3  # of a cut segment's budget (after the marker) kept from its start
_MIN_KEPT = 4  # a budget too small for the marker and this many tokens is cut at the head


def value_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return str(v)


def description_line(description: str) -> str:
    return f"Component: {description}\n"


def field_line(name: str, value: Any) -> str:
    return f"{name}: {value_str(value)}\n"


def format_text(description: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> str:
    """The whole text a head scores, before any field is cut; fields in the dicts' order."""
    return (
        description_line(description)
        + INPUTS_HEADER
        + "".join(field_line(k, v) for k, v in inputs.items())
        + OUTPUT_HEADER
        + "".join(field_line(k, v) for k, v in outputs.items())
    )


def waterfill(lengths: Sequence[int], budget: int) -> list[int]:
    """Per-segment caps summing to at most ``budget``: short segments whole, long ones equal."""
    if sum(lengths) <= budget:
        return list(lengths)
    if budget <= 0:
        return [0] * len(lengths)
    lo, hi = 0, max(lengths)
    while lo < hi:  # the largest cap c with sum(min(n, c)) <= budget
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            lo = mid
        else:
            hi = mid - 1
    caps = [min(n, lo) for n in lengths]
    spare = budget - sum(caps)
    for i, n in enumerate(lengths):  # hand the remainder out in field order
        if spare <= 0:
            break
        if n > caps[i]:
            caps[i] += 1
            spare -= 1
    return caps


class TextEncoder:
    """Token ids of (description, inputs, outputs) texts, at most ``max_length`` each.

    ``tokenizer`` is a Hugging Face tokenizer; its special tokens (e.g. ``[CLS] ...
    [SEP]``) wrap every text and count towards ``max_length``. Results are cached.
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self._segments: dict[str, list[int]] = {}
        self._texts: dict[tuple[str, ...], list[int]] = {}
        self.prefix, self.suffix = self._special_tokens()

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """Token ids the tokenizer wraps a single sequence with."""
        bare = self.tokens("hello")
        full = list(self.tokenizer("hello", add_special_tokens=True)["input_ids"])
        for i in range(len(full) - len(bare) + 1):
            if full[i : i + len(bare)] == bare:
                return full[:i], full[i + len(bare) :]
        return [], []  # pragma: no cover - exotic tokenizer

    def tokens(self, text: str) -> list[int]:
        """Token ids of one piece of text, no special tokens (cached)."""
        ids = self._segments.get(text)
        if ids is None:
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._segments) >= _SEG_CACHE_LIMIT:
                self._segments.clear()
            self._segments[text] = ids
        return ids

    def clear(self) -> None:
        self._segments.clear()
        self._texts.clear()

    def encode(
        self, description: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> list[int]:
        """Token ids of :func:`format_text`, every segment within its own budget."""
        values = [description, *(value_str(v) for v in inputs.values()),
                  *(value_str(v) for v in outputs.values())]
        lines = [description_line(description),
                 *(field_line(k, v) for k, v in inputs.items()),
                 *(field_line(k, v) for k, v in outputs.items())]
        key = (str(len(inputs)), *lines)
        ids = self._texts.get(key)
        if ids is not None:
            return ids
        ih, oh = self.tokens(INPUTS_HEADER), self.tokens(OUTPUT_HEADER)
        segs = [self.tokens(s) for s in lines]
        fixed = len(self.prefix) + len(ih) + len(oh) + len(self.suffix)
        caps = waterfill([len(s) for s in segs], self.max_length - fixed)
        cut = [self._shorten(s, c, v) for s, c, v in zip(segs, caps, values, strict=True)]
        n_in = 1 + len(inputs)
        body = [*cut[0], *ih, *(t for s in cut[1:n_in] for t in s), *oh,
                *(t for s in cut[n_in:] for t in s)]
        room = self.max_length - len(self.prefix) - len(self.suffix)  # < headers: absurdly small
        ids = self.prefix + body[: max(0, room)] + self.suffix
        if len(self._texts) >= _IDS_CACHE_LIMIT:
            self._texts.clear()
        self._texts[key] = ids
        return ids

    def _shorten(self, seg: list[int], cap: int, value: str) -> list[int]:
        """``seg`` within ``cap`` tokens: its head and tail around a size marker."""
        if len(seg) <= cap:
            return seg
        n_lines = value.count("\n") + 1
        marker = self.tokens(f" [... {n_lines} lines, {len(seg)} tokens ...] ")
        room = cap - len(marker)
        if room < _MIN_KEPT:
            return seg[:cap]
        head = max(1, round(room * _HEAD_SHARE))
        tail = room - head
        return seg[:head] + marker + (seg[len(seg) - tail :] if tail else [])
