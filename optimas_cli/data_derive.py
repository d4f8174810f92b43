"""Building a registered data file from its official file, where no mirror serves it.

Every seed file keeps rows of an official release (optimas_cli/datasets_registry.yaml). For
an entry with a `build` block, `build()`:

1. downloads the official file (`Entry.official_url`) once with pooch into
   `<official_dir>/<folder>/<file name>` and keeps it (its own sha256 is not recorded, so it
   is not checked; a later build reads the kept copy and downloads nothing);
2. picks the rows whose id (`selection.by`: a JSON key, or `row`, the 0-based CSV data row)
   is in the selection's id list, in that list's order; an id the file lacks fails;
3. writes them as the seed file is written (`build.keys`, `build.ensure_ascii`; CSV by
   Python's csv.writer) into a temporary file beside the target, and returns it.

Whether those bytes are the registry's (size and sha256) is checked, and the file kept, by
optimas_cli/data_files.py. Errors are one-line BuildErrors naming the file and the id, key or
row at fault.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TextIO
from urllib.parse import urlparse

from optimas_cli import datasets_registry as reg

CHUNK = 1 << 20  # characters read at a time from a JSON array (the HotpotQA train file: 566 MB)


class BuildError(ValueError):
    """An official file that could not be downloaded or does not hold the selected rows."""


def official_path(entry: reg.Entry, official_dir: Path) -> Path:
    """Where the official file of an entry is kept: <official_dir>/<folder>/<its file name>."""
    folder = PurePosixPath(entry.name).parent
    return official_dir / folder / PurePosixPath(urlparse(entry.official_url).path).name


def build(entry: reg.Entry, official_dir: Path, into: Path) -> Path:
    """A temporary file in `into` holding the entry's rows, built from its official file."""
    if entry.build is None or entry.selection is None:
        raise BuildError(f"{entry.name} cannot be built here: {entry.no_build}")
    source = download(entry, official_dir)
    rows = select(entry, source)
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="", dir=into,
                                     prefix=f".{PurePosixPath(entry.name).name}.",
                                     suffix=".part", delete=False) as f:
        tmp = Path(f.name)
        try:
            write(entry, rows, f)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
    return tmp


def download(entry: reg.Entry, official_dir: Path) -> Path:
    """The kept official file of an entry, downloaded first where it is not there yet."""
    import pooch
    from filelock import FileLock

    path = official_path(entry, official_dir)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    url = entry.official_url
    with FileLock(str(path) + ".lock"), _no_hash_advice():
        try:  # pooch downloads to a temporary file and moves it in place when complete
            pooch.retrieve(url, known_hash=None, fname=path.name, path=path.parent,
                           progressbar=sys.stderr.isatty() and _has("tqdm"))
        except (OSError, ValueError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BuildError(f"{entry.name}: downloading its official file {url} failed "
                             f"({why})") from None
    return path


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@contextlib.contextmanager
def _no_hash_advice() -> Iterator[None]:
    """Drop pooch's advice to pin the downloaded file's hash: it is for pooch's callers, and
    what is checked here is the built file."""
    import pooch

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SHA256 hash of downloaded file")

    logger = pooch.get_logger()
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


# ------------------------------------------------------------------ selecting


@dataclass
class Selected:
    """The rows of a selection, in its order, and (CSV) the official header row."""

    rows: list[Any]
    header: list[str] | None = None


def select(entry: reg.Entry, source: Path) -> Selected:
    """The selection's rows of the official file, in the selection's order."""
    ids = reg.selection_ids(entry.name)
    wanted, found = set(ids), {}
    header, pairs = _read(entry, source)
    for row_id, row in pairs:
        if row_id in wanted and row_id not in found:
            found[row_id] = row
    missing = [i for i in ids if i not in found]
    if missing:
        more = f" (and {len(missing) - 1} more of its {len(ids)})" if len(missing) > 1 else ""
        raise BuildError(
            f"{entry.name}: {entry.selection.by} {missing[0]}{more} of "
            f"{reg.IDS_DIR / entry.selection.ids} is not in the official file {source} "
            f"(from {entry.official_url}): not the release the registry was made from; "
            f"delete it to download it again")
    return Selected([found[i] for i in ids], header)


def _read(entry: reg.Entry, source: Path) -> tuple[list[str] | None, Iterator[tuple[str, Any]]]:
    """The official file's header (CSV) and its (id, row) pairs, in its order."""
    fmt, by = entry.build.format, entry.selection.by
    if fmt == "csv":
        f = source.open(encoding="utf-8", newline="")
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise BuildError(f"{source}: an empty CSV file (official file of {entry.name})")
        return header, _closing(f, ((str(n), row) for n, row in enumerate(reader)))
    items = json_array(source) if fmt == "json_array" else _jsonl(source)
    return None, ((_id_of(row, by, source), row) for row in items)


def _closing(f: TextIO, pairs: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    with f:
        yield from pairs


def _id_of(row: Any, by: str, source: Path) -> str:
    if not isinstance(row, dict) or by not in row:
        raise BuildError(f"{source}: a row without the id key {by!r}: {str(row)[:80]!r}")
    return str(row[by])


def _jsonl(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise BuildError(f"{path}: line {n} is not JSON ({e.msg})") from None


def json_array(path: Path) -> Iterator[Any]:
    """The objects of a file holding one JSON array of objects, one at a time: json.load
    would hold the whole official HotpotQA train file (566 MB) in memory, several GB."""
    decoder = json.JSONDecoder()
    with path.open(encoding="utf-8") as f:
        buf, pos, need = f.read(CHUNK).lstrip(), 1, CHUNK
        if not buf.startswith("["):
            raise BuildError(f"{path}: not a JSON array")
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if buf.startswith("]", pos):
                return
            try:  # an object ends at its closing brace: a whole one is never taken for a cut one
                item, pos = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:  # cut by the read (or broken): read on, more each time
                chunk = f.read(need)
                if not chunk:
                    raise BuildError(f"{path}: the JSON array is cut short or broken after "
                                     f"its last whole item (a partial download? delete it to "
                                     f"download it again)") from None
                buf, pos, need = buf[pos:] + chunk, 0, need * 2
                continue
            need = CHUNK
            yield item


# ------------------------------------------------------------------ writing


def write(entry: reg.Entry, selected: Selected, f: TextIO) -> None:
    """The rows as the seed file has them: CSV by csv.writer, JSON one object a line."""
    if entry.build.format == "csv":
        writer = csv.writer(f)
        writer.writerow(selected.header)
        writer.writerows(selected.rows)
        return
    keys, ascii_only, by = entry.build.keys, entry.build.ensure_ascii, entry.selection.by
    for row in selected.rows:
        if keys is not None:
            lacking = [k for k in keys if k not in row]
            if lacking:
                raise BuildError(f"{entry.name}: the official row {by} {row[by]} has no key "
                                 f"{lacking[0]!r} (build.keys in {reg.REGISTRY_FILE})")
            row = {k: row[k] for k in keys}
        f.write(json.dumps(row, ensure_ascii=ascii_only) + "\n")
