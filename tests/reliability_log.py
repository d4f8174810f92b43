"""What the reliability tests saw, for bench/reliability.py's figures (BENCHMARKS.md).

A test calls `record(item, **fields)`; with OPTIMAS_RELIABILITY_LOG set to a file, one JSON
line is appended there (several pytest processes may append at once: one write each),
otherwise nothing happens. The tests assert the behaviour themselves; this only counts.
"""

from __future__ import annotations

import json
import os

ENV = "OPTIMAS_RELIABILITY_LOG"


def record(item: str, **fields) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"item": item, **fields}, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
