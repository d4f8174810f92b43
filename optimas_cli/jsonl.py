"""JSON-lines files that survive a kill at any instant (SIGKILL included).

A record is appended with one write(2) on an O_APPEND descriptor, so concurrent writers
never interleave and a record is either whole, or (killed in the middle of a large write)
a torn last line with no newline. A torn line is never a record: `read` skips it, and the
first `append` of a process cuts it off, so the next record starts on a line of its own
instead of gluing onto the fragment. Whatever the torn record held is redone by the
resumed run, as if the kill had come just before it.

Appends hold a shared flock(2) on the file while they write, the repair an exclusive one:
a tail without its newline that another writer is still writing is never cut off.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("optimas.jsonl")
_CHUNK = 1 << 16


def append(path: Path, line: str) -> None:
    """Append `line` (one JSON document, no newline) and a newline in one write."""
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # writers together, never during a repair
        while data:  # a regular file takes it all at once unless the process is dying
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)  # releases the lock


def repair(path: Path) -> int:
    """Cut a torn last line (one without its newline) off `path`; the bytes removed."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # no append in flight: a tail without "\n" is torn
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0:  # find the last newline, reading backwards
            start = max(0, end - _CHUNK)
            f.seek(start)
            chunk = f.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return 0  # intact
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        f.truncate(end)
    log.warning("%s: removed a torn last line (%d bytes) left by a killed process",
                path, size - end)
    return size - end


def read(path: Path) -> list[dict[str, Any]]:
    """Every record of `path` ([] if it does not exist). A torn last line is skipped; a
    line that does not parse elsewhere (a file damaged by other means) is skipped with a
    warning naming it, and the records after it are kept."""
    return [record for _, record in read_numbered(path)]


def read_numbered(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number from 1, record) of every record of `path`, as `read` reads them."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with its newline
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            log.warning("%s line %d: skipped a line that is not JSON (%s)", path, n, e)
    if torn:
        log.info("%s line %d: ignored a torn last line (%d bytes, no newline)", path,
                 len(lines) + 1, len(torn))
    return out
