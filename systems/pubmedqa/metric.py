"""PubMedQA label accuracy with strict extraction, and the rates that expose a one-label model.

A tiny model that answers "yes" to everything scores 57% on the test file (172 of
300 gold labels are yes), so `said_yes` is reported beside accuracy; `parsed` is
the share of answers that named a label at all.
"""

from __future__ import annotations

import re
from typing import Any

from optimas_cli.data import Example

# A whole word: "no" inside "not", "know", "nothing" or "no-one" is no answer.
_LABEL = re.compile(r"(?<![\w-])(yes|no|maybe)(?![\w-])", re.IGNORECASE)


def extract_label(text: str) -> str | None:
    """The first whole word among yes/no/maybe in `text` (lower-cased), else None."""
    m = _LABEL.search(str(text))
    return m.group(1).lower() if m else None


def metric(example: Example, fields: dict[str, Any]) -> dict[str, float]:
    label = extract_label(fields.get("answer", ""))
    correct = float(label is not None and label == example.target["answer"])
    return {"score": correct, "accuracy": correct, "parsed": float(label is not None),
            "said_yes": float(label == "yes")}
