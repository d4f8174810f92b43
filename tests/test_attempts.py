"""A run's wall time summed over its attempts (optimas_cli.attempts), not since its first start."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from optimas_cli import attempts, jsonl
from optimas_cli.run_dir import RunDir

T0 = datetime(2026, 11, 27, 10, 0, 0)


def _at(s: float) -> str:
    return (T0 + timedelta(seconds=s)).isoformat()


def _log(path, *seconds):
    path.write_text("".join(f"{(T0 + timedelta(seconds=s)).strftime(attempts.LOG_STAMP)[:23]}"
                            f" INFO optimas: line\n  continuation without a time\n"
                            for s in seconds))


def test_a_killed_attempt_ends_at_its_last_log_line_and_the_gap_is_not_counted(tmp_path):
    log = tmp_path / "run.log"
    # attempt 1: 0 s, logs to 30 s, killed (no end); machine off for a day;
    # attempt 2: 86,400 s, ends 86,460 s; attempt 3, still running: started 90,000 s
    _log(log, 1, 5, 30, 86_401, 86_450, 90_001)
    records = [{"start": _at(0)}, {"start": _at(86_400)},
               {"end": _at(86_460), "outcome": "STOPPED"}, {"start": _at(90_000)}]
    now = T0 + timedelta(seconds=90_010)
    assert attempts.active_seconds(records, log, now) == pytest.approx(30 + 60 + 10)
    # once the last attempt has ended, later clocks change nothing
    done = [*records, {"end": _at(90_020), "outcome": "DONE"}]
    assert attempts.active_seconds(done, log, now + timedelta(days=3)) == pytest.approx(30 + 60 + 20)
    # a killed attempt that never logged counts 0; no record at all: unknown
    assert attempts.active_seconds([{"start": _at(5_000)}, *done[1:]], log) == pytest.approx(60 + 20)
    assert attempts.active_seconds([], log) is None


def test_guard_records_each_attempt_with_its_outcome(tmp_path):
    rd = RunDir(tmp_path)
    with rd.guard():
        pass
    with pytest.raises(RuntimeError), rd.guard():
        raise RuntimeError("boom")
    records = jsonl.read(tmp_path / attempts.FILE)
    assert ["start" in r for r in records] == [True, False, True, False]
    assert [r.get("outcome") for r in records if "end" in r] == ["DONE", "FAILED"]
    spent = attempts.run_seconds(tmp_path)
    # both attempts ended: the total is theirs, whatever the clock says later
    later = attempts.run_seconds(tmp_path, now=datetime.now() + timedelta(hours=5))
    assert spent is not None and 0 <= spent == later < 60
