"""The run directory: created first, config written before any work, marker written last.

What lies in it (optimas_cli/layout.py names every artifact path; the others there):
  config.yaml        resolved config, secrets redacted
  overrides.txt      the command-line overrides, one a line
  run.log            the log of every stage
  predictions.jsonl  evaluate: one line per example (trace + score)
  metrics.json       evaluate: mean, std, n, failures, LM usage, wall time
  failures.jsonl     every failed example of every stage, with its component and error
  attempts.jsonl     each process's start and end here (optimas_cli.attempts: wall time)
  DONE | FAILED | STOPPED   how it ended (FAILED holds the traceback, or the one line of
                            failures.EvaluationFailed: too many examples failed, or of DiskFull:
                            the path a write found no space for and the space left; STOPPED why
                            the run could not go on: a spent budget, a rejected API key;
                            `resume=` continues it)

A full disk: every write here that finds no space raises errors.DiskFull, naming the path and
the free space, and leaves no temporary file. While a process works it holds a reserve
(layout.RESERVE, 64 KiB), which it frees to write its marker, so a run that filled the disk
still ends FAILED with that line. JSONL appends cut short leave a torn last line, which no
reader takes for a record and the next append (a resumed run's) cuts off (optimas_cli.jsonl).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from optimas_cli import failures, jsonl, layout
from optimas_cli.config import Composed, redact, scrub, to_yaml
from optimas_cli.errors import DiskFull
from optimas_cli.lm.base import RunStopped

log = logging.getLogger("optimas")
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})  # the errors of a write that found no space
RESERVE_BYTES = 64 * 1024  # a marker and the attempt's end line need a few hundred bytes


def free_space(path: Path) -> str:
    """'N free': the free space of the filesystem `path` (or its nearest parent that
    exists) lies on, in a unit a person reads."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        n = shutil.disk_usage(p).free
    except OSError:
        return "free space unknown"
    if n < 1024:
        return f"{n} bytes free"
    size, units = n / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while size >= 1024 and len(units) > 1:
        size /= 1024
        units.pop(0)
    return f"{size:.1f} {units[0]} free"


def disk_full(path: Path, e: OSError) -> DiskFull:
    """DiskFull for a write to `path` that failed with `e` (ENOSPC, EDQUOT)."""
    return DiskFull(f"{path}: {os.strerror(e.errno)} ({free_space(path)} on its filesystem)")


def _full_in(e: BaseException) -> OSError | None:
    """The first write that found the disk full, of `e` and the errors it arose from (a
    write in a `finally` fails too, over the one that filled the disk): the earliest
    DiskFull (it names its path), else the earliest ENOSPC/EDQUOT; None if none."""
    named = raw = None
    seen, cur = set(), e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, DiskFull):
            named = cur
        elif isinstance(cur, OSError) and cur.errno in FULL:
            raw = cur
        cur = cur.__cause__ or cur.__context__
    return named or raw


def _write_file(path: Path, data: bytes) -> None:
    """Create or truncate `path` and write `data` to it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


class _Scrubbing(logging.Formatter):
    """run.log never holds a secret value of the environment."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _RunLog(logging.FileHandler):
    """run.log. A line it cannot write (a full disk) is lost, and said once on stderr, not
    with a traceback per line as logging does."""

    failed = False

    def handleError(self, record: logging.LogRecord | None) -> None:
        if not self.failed:
            self.failed = True
            sys.stderr.write(f"warning: {self.baseFilename}: a log line could not be written "
                             f"({sys.exc_info()[1]}); later ones may be lost too\n")

    def close(self) -> None:
        try:
            super().close()  # flushes what is buffered
        except OSError:
            self.handleError(None)
            self.stream = None  # what it held is lost; the file is closed with it


class RunDir:
    """A run directory on disk; all writes go through here."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._repaired: set[str] = set()  # JSONL files whose torn tail this process cut off
        self.failures = failures.FailureLog(lambda r: self.append_jsonl(layout.FAILURES, r))
        # called before every write (optimas_cli.spend checkpoints what this process spent,
        # so a result on disk is never one whose cost a kill -9 left unrecorded)
        self.before_write: Callable[[], None] | None = None

    @classmethod
    def create(cls, composed: Composed) -> RunDir:
        """Make the directory and write config.yaml and overrides.txt."""
        run = composed.run
        if run.run_dir:
            path = Path(run.run_dir)
        else:
            stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
            path = Path(run.run_root) / run.system.name / stamp
            n = 1
            while path.exists():
                n += 1
                path = Path(run.run_root) / run.system.name / f"{stamp}_{n}"
        made = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        rd = cls(path.resolve())
        try:
            rd.write_text(layout.CONFIG, to_yaml(redact(composed.raw)))
            rd.write_text(layout.OVERRIDES, "".join(o + "\n" for o in composed.overrides))
        except OSError:  # a full disk: no run directory without its config is left behind
            if made:
                shutil.rmtree(path, ignore_errors=True)
            raise
        return rd

    # ------------------------------------------------------------ files

    def file(self, name: str) -> Path:
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_text(self, name: str, text: str) -> Path:
        """Atomic write (temp file + rename), so a kill never leaves half a file. Secret
        values of the environment are scrubbed (config.scrub), here and in every line."""
        self._before_write(name)
        return self._write(name, scrub(text))

    def _before_write(self, name: str) -> None:
        """The checkpoint before a write of `name`; on a full disk, DiskFull names `name`."""
        if self.before_write is not None:
            try:
                self.before_write()
            except OSError as e:
                if e.errno in FULL and not isinstance(e, DiskFull):
                    raise disk_full(self.path / name, e) from e
                raise

    def _write(self, name: str, text: str) -> Path:
        """`text` to `name` through a temporary file, which a failed write removes; a full
        disk raises DiskFull."""
        p = self.path / name
        tmp = p.with_name(p.name + ".tmp")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            _write_file(tmp, text.encode("utf-8"))
            tmp.replace(p)
        except BaseException as e:
            tmp.unlink(missing_ok=True)  # never a half-written (or empty) temporary file left
            if isinstance(e, OSError) and e.errno in FULL and not isinstance(e, DiskFull):
                raise disk_full(p, e) from e
            raise
        return p

    @contextmanager
    def writing(self, name: str) -> Iterator[Path]:
        """The path of `name`, for other code to write (a plot, a model's weights): a full
        disk raises DiskFull naming it."""
        path = self.file(name)
        try:
            yield path
        except OSError as e:
            if e.errno in FULL and not isinstance(e, DiskFull):
                raise disk_full(path, e) from e
            raise

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        """One record, in one write (optimas_cli.jsonl: a kill never leaves half a record
        that the next one would glue onto)."""
        line = scrub(json.dumps(record, ensure_ascii=False, default=str))
        self._before_write(name)
        with self._lock:
            path = self.path / name
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if name not in self._repaired:
                    jsonl.repair(path)
                    self._repaired.add(name)
                jsonl.append(path, line)
            except OSError as e:
                self._repaired.discard(name)  # a write cut short: its torn tail goes first
                if e.errno in FULL and not isinstance(e, DiskFull):
                    raise disk_full(path, e) from e
                raise

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """The records of `name`; a line torn by a kill is not one."""
        return jsonl.read(self.path / name)

    def status(self) -> str:
        for m in layout.MARKERS:
            if (self.path / m).exists():
                return m
        return "RUNNING or KILLED"

    # ------------------------------------------------------------ lifecycle

    @contextmanager
    def guard(self) -> Iterator[RunDir]:
        """Log to run.log; write DONE, STOPPED (RunStopped) or FAILED (traceback; on a full
        disk the one line of DiskFull, which is raised in place of the error) at the end."""
        for m in layout.MARKERS:
            (self.path / m).unlink(missing_ok=True)
        handler = _RunLog(self.path / layout.LOG, encoding="utf-8")
        handler.setFormatter(_Scrubbing("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        token = failures.activate(self.failures)  # evaluations record their failures here
        self._reserve()
        outcome = layout.DONE
        try:
            self.append_jsonl(layout.ATTEMPTS, {"start": datetime.now().isoformat()})
            yield self
        except RunStopped as e:
            outcome = layout.STOPPED
            self._mark(layout.STOPPED, f"{e}\n")
            log.warning("stopped: %s", e)
            raise
        except failures.EvaluationFailed as e:  # the one line says it all: no traceback
            outcome = layout.FAILED
            self._mark(layout.FAILED, f"{e}\n")
            log.error("failed: %s", e)
            raise
        except BaseException as e:
            outcome = layout.FAILED
            full = _full_in(e)
            if full is None:
                self._mark(layout.FAILED, traceback.format_exc())
                log.error("failed:\n%s", traceback.format_exc())
                raise
            error = self._disk_full_error(full)
            self._mark(layout.FAILED, f"{type(error).__name__}: {error}\n")
            log.error("failed: %s", error)
            raise error from e
        else:
            self._mark(layout.DONE, datetime.now().isoformat() + "\n")
        finally:
            self._release_reserve()
            try:
                self.append_jsonl(layout.ATTEMPTS, {"end": datetime.now().isoformat(),
                                                  "outcome": outcome})
            except OSError as e:  # a full disk: the marker says how it ended
                log.warning("%s: this attempt's end is not recorded: %s", layout.ATTEMPTS, e)
            failures.deactivate(token)
            log.removeHandler(handler)
            handler.close()

    def _disk_full_error(self, full: OSError) -> DiskFull:
        """What a run that filled its disk says: the path (the run directory where the error
        names none), the free space, and how to go on."""
        if isinstance(full, DiskFull):
            said = str(full)
        elif full.filename:
            said = str(disk_full(Path(full.filename), full))
        else:
            said = (f"a write failed: {os.strerror(full.errno)} (the run directory "
                    f"{self.path}: {free_space(self.path)} on its filesystem)")
        return DiskFull(f"{said}; free some space, then resume={self.path} goes on from what "
                        "was saved")

    def _reserve(self) -> None:
        """Hold RESERVE_BYTES of the disk for the marker (random bytes: a compressing
        filesystem keeps them whole); on a disk already full, nothing is held."""
        try:
            _write_file(self.path / layout.RESERVE, os.urandom(RESERVE_BYTES))
        except OSError:
            self._release_reserve()

    def _release_reserve(self) -> None:
        (self.path / layout.RESERVE).unlink(missing_ok=True)

    def _mark(self, name: str, text: str) -> None:
        """Write the marker `name`, a full disk included: the reserve is freed for it first;
        if that is not enough, it is written in place (no temporary file), whole or in part,
        or at least created: a run directory without a marker would read RUNNING or KILLED.
        Secret values are scrubbed, as by write_text (a traceback may quote one)."""
        self._release_reserve()
        text = scrub(text)
        try:
            self._write(name, text)
        except OSError as e:
            if e.errno not in FULL:
                raise
            log.error("%s: written in place, perhaps in part: %s", name, e)
            try:
                _write_file(self.path / name, text.encode("utf-8"))
            except OSError:
                pass  # created, though empty or cut short, unless even that failed
