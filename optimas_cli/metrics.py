"""Metrics: the contract of a system's metric, its checked call, and answer metrics
(F1/EM follow the official HotpotQA evaluation script's normalization)."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from optimas_cli.data import Example


class Metric(Protocol):
    """`system.metric`: scores the system's fields on one example.

    `fields` holds every field known at the end of the run: the system inputs and each
    component's outputs (the final output under `system.final_output`). Return a dict of
    floats with a required "score" (what optimization maximizes, usually 0..1); other keys
    are reported beside it (metrics.json). An exception fails that example (score 0,
    recorded in failures.jsonl).
    """

    def __call__(self, example: Example, fields: dict[str, Any]) -> dict[str, float]: ...


class MetricReturnError(TypeError):
    """A metric returned something other than a dict with a float "score"."""


def name_of(fn: Any) -> str:
    """A callable as its dotted path, `module:qualname` (as a config names it)."""
    qual = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{getattr(fn, '__module__', None) or type(fn).__module__}:{qual}"


def scores_of(metric: Metric, example: Example, fields: dict[str, Any]) -> dict[str, float]:
    """`metric(example, fields)`, checked: MetricReturnError naming the metric unless it
    returned a dict whose "score" is a number."""
    out = metric(example, fields)
    must = "it must return a dict with a float 'score'"
    if not isinstance(out, dict):
        raise MetricReturnError(f"{name_of(metric)} returned {type(out).__name__}; {must}")
    if "score" not in out:
        raise MetricReturnError(f"{name_of(metric)} returned a dict without 'score' (keys "
                        f"{sorted(map(str, out))}); {must}")
    try:
        float(out["score"])
    except (TypeError, ValueError):
        raise MetricReturnError(f"{name_of(metric)} returned 'score' = {out['score']!r} "
                        f"({type(out['score']).__name__}); {must}") from None
    return out


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze whitespace."""
    s = str(s).lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token F1; yes/no/noanswer must match exactly, as in the official script."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    special = {"yes", "no", "noanswer"}
    if (pred in special or ref in special) and pred != ref:
        return 0.0
    p, r = pred.split(), ref.split()
    common = Counter(p) & Counter(r)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)
