"""Built-in loaders: JSONL, CSV and Hugging Face `datasets` saved to disk, mapped in YAML.

    system:
      loader: optimas_cli.loaders.jsonl   # or optimas_cli.loaders.csv, optimas_cli.loaders.hf_disk
    data:
      path: my.jsonl            # relative: from the working directory, then the project root
      inputs: {question: q}     # system input -> column (required)
      target: answer            # a column: example.target = {"answer": row["answer"]};
                                # or {answer: a} (target key -> column); null: no target
      id: qid                   # optional; default: the row's line number (hf_disk: row number)

A row that lacks a mapped column fails the load, naming the file, the row and the column.
Values are kept as read (CSV values are strings). `hf_disk` reads what
`datasets.Dataset.save_to_disk` wrote; a DatasetDict's splits are pooled, and the rows of its
"test" split make the test split (optimas_cli.data.split).
"""

from __future__ import annotations

import csv as _csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from optimas_cli.data import Dataset, Example, csv_rows, resolve_data_path
from optimas_cli.schema import DataConfig

Row = tuple[str, str, dict[str, Any]]  # where (for errors), default id, the row's columns


def jsonl(cfg: DataConfig) -> Dataset:
    """One JSON object per line (blank lines skipped); `data.*` maps its keys."""
    path = _path(cfg, "jsonl")
    return _dataset(cfg, _jsonl_rows(path), path)


def csv(cfg: DataConfig) -> Dataset:
    """A CSV file with a header row (UTF-8, a BOM allowed); `data.*` maps its columns."""
    path = _path(cfg, "csv")
    return _dataset(cfg, _csv_rows(path), path)


def hf_disk(cfg: DataConfig) -> Dataset:
    """A Hugging Face dataset saved with `save_to_disk` (a Dataset or a DatasetDict)."""
    import datasets  # pyarrow and friends: loaded only when used

    path = _path(cfg, "hf_disk")
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{path}: not a dataset written by datasets' save_to_disk "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if isinstance(loaded, datasets.DatasetDict):
        rows: Iterable[Row] = (
            (f"{path} split {name!r} row {i}", f"{name}-{i}", {**row, _SPLIT: name})
            for name, part in loaded.items() for i, row in enumerate(part, 1))
    else:
        rows = ((f"{path} row {i}", str(i), row) for i, row in enumerate(loaded, 1))
    return _dataset(cfg, rows, path)


_SPLIT = object()  # the key of a DatasetDict row's split name (never a column)


def _path(cfg: DataConfig, loader: str) -> Path:
    """The file to read, once the config says what to read and how to map it."""
    needs = f"the {loader} loader (optimas_cli.loaders.{loader}) needs"
    if not cfg.path:
        raise ValueError(f"{needs} data.path: the file to read")
    if not cfg.inputs:
        raise ValueError(f"{needs} data.inputs: system input -> column, e.g. {{question: q}}")
    return resolve_data_path(cfg.path, cfg.path, "Set data.path to the data file (relative "
                             "paths are read from the working directory, then the project root).")


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {n}: a JSON object per line, not a "
                                 f"{type(row).__name__}")
            yield f"{path} line {n}", str(n), row


def _csv_rows(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = _csv.DictReader(f)
        if reader.fieldnames is None:
            raise ValueError(f"{path}: empty, not even a header row")
        for where, line, row in csv_rows(path, reader):
            # a short row's absent cells are None; cells past the header go under None
            cells = {k: v for k, v in row.items() if k is not None and v is not None}
            yield where, str(line), cells


def _dataset(cfg: DataConfig, rows: Iterable[Row], path: Path) -> Dataset:
    """Examples of the rows as `data.inputs`, `data.target` and `data.id` map them."""
    columns = {f"data.inputs.{k}": c for k, c in (cfg.inputs or {}).items()}
    target = {cfg.target: cfg.target} if isinstance(cfg.target, str) else dict(cfg.target or {})
    columns |= {f"data.target.{k}" if isinstance(cfg.target, dict) else "data.target": c
                for k, c in target.items()}
    if cfg.id:
        columns["data.id"] = cfg.id
    examples, seen = [], {}
    for where, number, row in rows:
        for key, col in columns.items():
            if col not in row:
                have = sorted(str(k) for k in row if k is not _SPLIT)
                raise ValueError(f"{where}: no column {col!r} ({key}); the row has {have}")
        ex_id = str(row[cfg.id]) if cfg.id else number
        if ex_id in seen:
            raise ValueError(f"{where}: id {ex_id!r} (data.id column {cfg.id!r}) is not "
                             f"unique: {seen[ex_id]} has it too")
        seen[ex_id] = where
        inputs = {k: row[c] for k, c in (cfg.inputs or {}).items()}
        examples.append(Example(id=ex_id, inputs=inputs,
                                target={k: row[c] for k, c in target.items()},
                                meta={"split": "test"} if row.get(_SPLIT) == "test" else {}))
    if not examples:
        raise ValueError(f"{path}: no rows")
    return Dataset(examples=examples)
