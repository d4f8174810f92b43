"""When a run ran: one record per start and end of a process working in its directory, and
the run's wall time summed over those attempts.

A resumed run's time since its first start also counts the hours it lay killed or paused
between attempts (a bench run resumed on another day said 60,004 s); what it cost is the
time its processes ran. An attempt killed without an end record (kill -9, a lost machine)
ends at its last run.log line before the next start.

    attempts.jsonl   {"start": ISO time} ... {"end": ISO time, "outcome": "DONE"} ...
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from optimas_cli import jsonl, layout

FILE = layout.ATTEMPTS
LOG_STAMP = "%Y-%m-%d %H:%M:%S,%f"  # logging's asctime, the first 23 characters of a line


def log_times(log: Path) -> list[datetime]:
    """The timestamps of run.log's lines (continuation lines of a traceback have none)."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(datetime.strptime(line[:23], LOG_STAMP))
        except ValueError:
            continue
    return out


def active_seconds(records: list[dict[str, Any]], log: Path,
                   now: datetime | None = None) -> float | None:
    """Seconds spent in the attempts of `records` (attempts.jsonl), None without any: an
    attempt with an end record counts to it, one killed without one to its last log line
    before the next start, the last one still open (the caller's own) to `now`."""
    starts = [i for i, r in enumerate(records) if "start" in r]
    if not starts:
        return None
    now = now or datetime.now()
    times = log_times(log)
    total = 0.0
    for n, i in enumerate(starts):
        start = datetime.fromisoformat(records[i]["start"])
        nxt = starts[n + 1] if n + 1 < len(starts) else len(records)
        ends = [r["end"] for r in records[i + 1:nxt] if "end" in r]
        if ends:
            end = datetime.fromisoformat(ends[0])
        elif n + 1 == len(starts):
            end = now
        else:
            limit = datetime.fromisoformat(records[nxt]["start"])
            end = max([t for t in times if start <= t < limit], default=start)
        total += max(0.0, (end - start).total_seconds())
    return round(total, 1)


def run_seconds(run_dir: Path, now: datetime | None = None) -> float | None:
    """The active wall time of the run in `run_dir` (see active_seconds)."""
    return active_seconds(jsonl.read(run_dir / FILE), run_dir / layout.LOG, now)
