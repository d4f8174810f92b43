"""Examples, datasets, the loader contract, and seeded train/val/test splits."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimas_cli import data_files, datasets_registry
from optimas_cli.schema import DataConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Example:
    """One row of data.

    id: unique in the dataset (failures, predictions and paired comparisons name it).
    inputs: the system's input fields, one per name in `system.inputs` (a row that lacks
    one fails that example, recorded with its id).
    target: what the metric compares against, e.g. {"answer": "Paris"}.
    meta: anything else; `meta["split"] = "test"` puts the example in the test split.
    """

    id: str
    inputs: dict[str, Any]  # the system's input fields
    target: dict[str, Any]  # what the metric compares against
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    """What a loader returns: every example (splits are drawn from them, data.*_size), and
    shared resources components read, e.g. {"corpus": [passages]} for a retriever."""

    examples: list[Example]
    resources: dict[str, Any] = field(default_factory=dict)  # e.g. {"corpus": [passages]}


# `system.loader`: the data config (data.path and the other data.* keys) -> the Dataset.
# Built-in ones for JSONL, CSV and `datasets` saved to disk: optimas_cli.loaders.
Loader = Callable[[DataConfig], Dataset]


def resolve_data_path(configured: str | None, default_relative: str, hint: str) -> Path:
    """The data file to read: the configured one, else the default.

    A registry name (`hotpotqa/hotpot_dev_distractor_1k.jsonl`, optimas_cli/datasets_registry.yaml)
    is found or downloaded, and checked, by optimas_cli.data_files; any other value is a path,
    tried from the working directory, then from the project root, and read as it is.
    """
    rel = configured or default_relative
    if datasets_registry.entry(rel) is not None:
        return data_files.resolve(rel)
    candidates = [Path(rel)] if Path(rel).is_absolute() else \
        list(dict.fromkeys([Path.cwd() / rel, PROJECT_ROOT / rel]))  # once when cwd is the root
    for c in candidates:
        if c.exists():
            return c.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"data file not found (tried {tried}). {hint}")


def numbered_records(path: Path) -> list[tuple[str, dict]]:
    """(where, record) of each JSON object of a data file: JSON lines (blank lines skipped),
    where is "PATH line N" (from 1, as editors number lines); or one JSON list, where is
    "PATH record N" (from 1: its objects have no line of their own). A line that is not
    JSON, or a record that is not an object, is a ValueError saying where."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {e.lineno}: not valid JSON ({e.msg})") from None
        rows = [(f"{path} record {n}", r) for n, r in enumerate(items, 1)]
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((f"{path} line {n}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path} line {n}: not valid JSON ({e.msg})") from None
    for where, r in rows:
        if not isinstance(r, dict):
            raise ValueError(f"{where}: a JSON object, not a {type(r).__name__}")
    return rows


def csv_rows(path: Path, reader: csv.DictReader) -> Iterator[tuple[str, int, dict]]:
    """(where, last line, row) of each row of a csv.DictReader over `path`, whose header is
    read: where is "PATH line N", or "PATH lines N-M" for a row whose quoted cell spans
    lines (numbered from 1, as editors number lines)."""
    end = reader.line_num
    for row in reader:
        start, end = end + 1, reader.line_num
        yield (f"{path} line {end}" if start >= end else f"{path} lines {start}-{end}"), end, row


def said_of_data(e: Exception) -> str:
    """A loader's or split's error under one "data:" prefix: a message that already
    begins with the word (split's "data: ...", "data file not found ...") gets none."""
    msg = str(e).removeprefix("data: ")
    return msg if msg.lower().startswith("data") else f"data: {msg}"


def split(dataset: Dataset, cfg: DataConfig) -> dict[str, list[Example]]:
    """Seeded, disjoint train/val/test splits of the configured sizes.

    A loader that reads an official test file marks those examples `meta["split"] = "test"`:
    the test split is then drawn from them alone, train and val from the others.
    """
    marked = [e for e in dataset.examples if e.meta.get("split") == "test"]
    pool = [e for e in dataset.examples if e.meta.get("split") != "test"] if marked else \
        list(dataset.examples)
    need = cfg.train_size + cfg.val_size + (0 if marked else cfg.test_size)
    if need > len(pool):
        sizes = "train_size+val_size" if marked else "train_size+val_size+test_size"
        raise ValueError(f"data: {sizes} = {need} but the dataset has only {len(pool)} "
                         f"examples for them")
    if cfg.test_size > len(marked) > 0:
        raise ValueError(f"data: test_size = {cfg.test_size} but the test file has only "
                         f"{len(marked)} examples")
    rng = random.Random(cfg.seed)
    rng.shuffle(pool)
    a, b = cfg.train_size, cfg.train_size + cfg.val_size
    if marked:
        tests = list(marked)
        rng.shuffle(tests)
        return {"train": pool[:a], "val": pool[a:b], "test": tests[:cfg.test_size]}
    return {"train": pool[:a], "val": pool[a:b], "test": pool[b:need]}
