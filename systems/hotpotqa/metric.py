"""HotpotQA answer metric: official F1 as the score, EM alongside."""

from __future__ import annotations

from typing import Any

from optimas_cli.data import Example
from optimas_cli.metrics import exact_match, f1_score


def metric(example: Example, fields: dict[str, Any]) -> dict[str, float]:
    pred = str(fields.get("answer", ""))
    gold = str(example.target["answer"])
    return {"score": f1_score(pred, gold), "f1": f1_score(pred, gold), "em": exact_match(pred, gold)}
