"""Read the Amazon KDD Cup 2024 next-item CSVs (`question, choices, answer`) into a Dataset.

Encoding of a row (checked for every row, errors name the file, its lines and the value):
- `question`: a fixed task sentence ("A user on a[n] [German ]online shopping platform has
  clicked ..."), then `Product Sequence:` and the session's product titles, one a line,
  oldest first;
- `choices`: a Python-literal list of exactly 4 product titles;
- `answer`: the 0-based index (0..3) of the product the user clicked next — an index, not a
  letter (primary file: 16/27/31/28 rows answer 0/1/2/3; multilingual: 82/71/80/85).

Inputs given to the system: `session` (the titles, one a line; a long session keeps its most
recent titles within MAX_SESSION_BYTES of UTF-8, the dropped ones counted in a first line, so
that the prompts fit the embedded models' 2048-token context: bytes, not characters, because a
Japanese character costs SmolLM2 up to 1.8 tokens and an English one about 0.45; measured,
every tokenizer of the ladder spends at most ~0.6 tokens per byte) and `candidates` ("0: title" ... "3:
title", one a line). The target is {"answer": index}; meta has the file, the market (the
language named in the question, None for the primary file) and the raw choices.

`data.path` picks the rows: null or `primary` (the English file, 102 rows), `multilingual`
(318 rows: German, Spanish, French, Italian, Japanese), `both` (the two merged, as the paper
trains and tests on both), or the path of any CSV in this layout. Splits are then drawn by
data.train_size/val_size/test_size and data.seed (optimas_cli.data.split).
"""

from __future__ import annotations

import ast
import csv
import re
from pathlib import Path

from optimas_cli.data import Dataset, Example, csv_rows, resolve_data_path
from optimas_cli.schema import DataConfig

FILES = {"primary": "amazon/session_based_next_item_selection_dataset.csv",  # registry names
         "multilingual": "amazon/multilingual_session_based_recommendation_dataset.csv"}
SETS = {"primary": ("primary",), "multilingual": ("multilingual",),
        "both": ("primary", "multilingual")}
HINT = ("Set data.path=primary|multilingual|both, a registry name (`optimas data list`), or "
        "the path of a CSV (question, choices, answer).")
COLUMNS = ("question", "choices", "answer")
NUM_CHOICES = 4
MARKER = "Product Sequence:"
MAX_SESSION_BYTES = 1800  # the most recent titles that fit: at most ~1,100 tokens
_MARKET = re.compile(r"on an? (?:(\w+) )?online shopping", re.IGNORECASE)


def session_text(titles: list[str], max_bytes: int = MAX_SESSION_BYTES) -> str:
    """The titles one a line, oldest first, keeping the most recent that fit in `max_bytes` of
    UTF-8 (always at least the last one); a first line counts the dropped ones."""
    kept: list[str] = []
    used = 0
    for title in reversed(titles):
        size = len(title.encode("utf-8")) + 1
        if kept and used + size > max_bytes:
            break
        kept.append(title)
        used += size
    kept.reverse()
    dropped = len(titles) - len(kept)
    head = [f"({dropped} earlier products not shown)"] if dropped else []
    return "\n".join(head + kept)


def candidates_text(choices: list[str]) -> str:
    return "\n".join(f"{i}: {c}" for i, c in enumerate(choices))


def parse_row(row: dict, where: str) -> tuple[list[str], list[str], int, str | None]:
    """(session titles, choices, answer index, market) of one CSV row; ValueError naming
    `where` (file and line), the column and the value on any departure from the layout."""
    question = row.get("question") or ""
    if MARKER not in question:
        raise ValueError(f"{where}: column 'question' has no '{MARKER}' line: {question[:80]!r}")
    intro, _, tail = question.partition(MARKER)
    titles = [t.strip() for t in tail.splitlines() if t.strip()]
    if not titles:
        raise ValueError(f"{where}: column 'question' lists no product after '{MARKER}'")
    raw = row.get("choices") or ""
    try:
        choices = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise ValueError(f"{where}: column 'choices' is not a Python list literal: "
                         f"{raw[:80]!r}") from None
    if (not isinstance(choices, list) or len(choices) != NUM_CHOICES
            or not all(isinstance(c, str) and c.strip() for c in choices)):
        raise ValueError(f"{where}: column 'choices' must list {NUM_CHOICES} product titles, "
                         f"got {raw[:80]!r}")
    answer = str(row.get("answer", "")).strip()
    if answer not in {str(i) for i in range(NUM_CHOICES)}:
        raise ValueError(f"{where}: column 'answer' is {row.get('answer')!r}; expected the "
                         f"0-based index of the next product, 0..{NUM_CHOICES - 1}")
    m = _MARKET.search(intro)
    return titles, [c.strip() for c in choices], int(answer), (m.group(1) if m else None)


def read_examples(path: Path, name: str) -> list[Example]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected "
                             f"{', '.join(COLUMNS)}")
        examples = []
        for n, (where, _, row) in enumerate(csv_rows(path, reader), 1):
            titles, choices, answer, market = parse_row(row, where)
            examples.append(Example(
                id=f"{name}-{n:03d}",
                inputs={"session": session_text(titles), "candidates": candidates_text(choices)},
                target={"answer": answer},
                meta={"file": name, "market": market, "choices": choices,
                      "session_length": len(titles)}))
    return examples


def load(cfg: DataConfig) -> Dataset:
    names = SETS.get(cfg.path or "primary")
    if names is None:  # a file of one's own
        path = resolve_data_path(cfg.path, FILES["primary"], HINT)
        return Dataset(examples=read_examples(path, path.stem))
    examples = []
    for name in names:
        examples += read_examples(resolve_data_path(None, FILES[name], HINT), name)
    return Dataset(examples=examples)


load.data_names = tuple(SETS)  # data.path values read by name (optimas_cli/checks.py)
