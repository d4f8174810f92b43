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
                            failures.EvaluationFailed: too many examples failed; STOPPED why the
                            run could not go on: a spent budget, a rejected API key;
                            `resume=` continues it)
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from optimas_cli import failures, jsonl, layout
from optimas_cli.config import Composed, redact, scrub, to_yaml
from optimas_cli.lm.base import RunStopped

log = logging.getLogger("optimas")


class _Scrubbing(logging.Formatter):
    """run.log never holds a secret value of the environment."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


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
        path.mkdir(parents=True, exist_ok=True)
        rd = cls(path.resolve())
        rd.write_text(layout.CONFIG, to_yaml(redact(composed.raw)))
        rd.write_text(layout.OVERRIDES, "".join(o + "\n" for o in composed.overrides))
        return rd

    # ------------------------------------------------------------ files

    def file(self, name: str) -> Path:
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_text(self, name: str, text: str) -> Path:
        """Atomic write (temp file + rename), so a kill never leaves half a file. Secret
        values of the environment are scrubbed (config.scrub), here and in every line."""
        if self.before_write is not None:
            self.before_write()
        p = self.file(name)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(scrub(text), encoding="utf-8")
        tmp.replace(p)
        return p

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        """One record, in one write (optimas_cli.jsonl: a kill never leaves half a record
        that the next one would glue onto)."""
        line = scrub(json.dumps(record, ensure_ascii=False, default=str))
        if self.before_write is not None:
            self.before_write()
        with self._lock:
            path = self.file(name)
            if name not in self._repaired:
                jsonl.repair(path)
                self._repaired.add(name)
            jsonl.append(path, line)

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
        """Log to run.log; write DONE, STOPPED (RunStopped) or FAILED (traceback) at the end."""
        for m in layout.MARKERS:
            (self.path / m).unlink(missing_ok=True)
        handler = logging.FileHandler(self.path / layout.LOG, encoding="utf-8")
        handler.setFormatter(_Scrubbing("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        token = failures.activate(self.failures)  # evaluations record their failures here
        self.append_jsonl(layout.ATTEMPTS, {"start": datetime.now().isoformat()})
        outcome = layout.DONE
        try:
            yield self
        except RunStopped as e:
            outcome = layout.STOPPED
            self.write_text(layout.STOPPED, f"{e}\n")
            log.warning("stopped: %s", e)
            raise
        except failures.EvaluationFailed as e:  # the one line says it all: no traceback
            outcome = layout.FAILED
            self.write_text(layout.FAILED, f"{e}\n")
            log.error("failed: %s", e)
            raise
        except BaseException:
            outcome = layout.FAILED
            self.write_text(layout.FAILED, traceback.format_exc())
            log.error("failed:\n%s", traceback.format_exc())
            raise
        else:
            self.write_text(layout.DONE, datetime.now().isoformat() + "\n")
        finally:
            self.append_jsonl(layout.ATTEMPTS, {"end": datetime.now().isoformat(),
                                              "outcome": outcome})
            failures.deactivate(token)
            log.removeHandler(handler)
            handler.close()
