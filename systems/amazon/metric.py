"""Next-item accuracy with strict index parsing, and the rate that exposes position bias.

The decider must answer with the 0-based index of a candidate. Parsing is strict: the first
number in the reply decides, and it must be a whole integer 0..3 on its own — "1" inside
"10", "12" or "1.5", a letter ("B") or a title are no index, so such a reply is unparseable,
scores 0 and is counted in `parsed`. Words before the number are allowed ("Answer: 2",
"Product 2."), as are a closing period or bracket ("2.", "[2]").

`chose_first` is the share of replies picking index 0: a model stuck on the first candidate
scores what always-first scores (15.7% on the primary file, systems/amazon/floors.py).
"""

from __future__ import annotations

import re
from typing import Any

from optimas_cli.data import Example

NUM_CHOICES = 4
# the first run of digits not glued to a letter, a digit, a sign, a decimal part or a range
_NUMBER = re.compile(r"(?<![\w.,-])(\d+)(?!\w|[.,-]\d)")


def extract_choice(text: Any, num_choices: int = NUM_CHOICES) -> int | None:
    """The index named by the first number in `text` if it is 0..num_choices-1, else None."""
    m = _NUMBER.search(str(text or ""))
    if not m:
        return None
    value = int(m.group(1))
    return value if value < num_choices and len(m.group(1)) == 1 else None


def metric(example: Example, fields: dict[str, Any]) -> dict[str, float]:
    choice = extract_choice(fields.get("answer", ""))
    correct = float(choice is not None and choice == example.target["answer"])
    return {"score": correct, "accuracy": correct, "parsed": float(choice is not None),
            "chose_first": float(choice == 0)}
