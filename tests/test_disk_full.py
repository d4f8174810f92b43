"""A full disk leaves a clear trace: the run ends FAILED with one line naming the path a write
found no space for and the free space, `optimas show` says so, no temporary file is left, a
line torn by the short write is never read as a record, and a resumed run, once space is
freed, goes on where the run stopped and ends as an uninterrupted one.

The disk is simulated (no root, no mount): `FakeDisk` gives the files under a folder a
budget of bytes. A write past it is cut short there, as the kernel cuts it, and the next one
fails with ENOSPC; a removed file gives its bytes back; `shutil.disk_usage` reports what is
left. `fill_at` makes "another process" take the space at a chosen write.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimas_cli import jsonl, layout
from optimas_cli.cli import app
from optimas_cli.config import load
from optimas_cli.errors import DiskFull
from optimas_cli.jobs import execute
from optimas_cli.run_dir import RunDir

HERE = Path(__file__).parent
LINEAR = HERE / "linear.yaml"
runner = CliRunner()
FULL_LINE = ("DiskFull: {path}: No space left on device (0 bytes free on its filesystem); free "
             "some space, then resume={run} goes on from what was saved")


class FakeDisk:
    """The filesystem of the files under `root`, with `free` bytes left."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root, self.free = root.resolve(), 10**9
        self.trigger: tuple[str, int, int] | None = None  # (file name, size past, free then)
        self._write, self._unlink, self._usage = os.write, os.unlink, shutil.disk_usage
        monkeypatch.setattr(os, "write", self.write)
        monkeypatch.setattr(os, "unlink", self.unlink)
        monkeypatch.setattr(shutil, "disk_usage", self.disk_usage)

    def _mine(self, path: str | Path) -> bool:
        return Path(path).resolve().is_relative_to(self.root)

    def fill_at(self, name: str, size_past: int, free: int) -> None:
        """When a write to a file called `name` finds it over `size_past` bytes, `free` bytes
        are left (another process took the rest)."""
        self.trigger = (name, size_past, free)

    def write(self, fd: int, data: bytes) -> int:
        try:
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return self._write(fd, data)
        if not self._mine(path):
            return self._write(fd, data)
        if self.trigger and path.name == self.trigger[0] and \
                os.fstat(fd).st_size > self.trigger[1]:
            self.free, self.trigger = self.trigger[2], None
        if self.free <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = self._write(fd, bytes(data[:self.free]))  # a short write: what fits
        self.free -= n
        return n

    def unlink(self, path, *args, **kwargs):
        size = os.stat(path).st_size if self._mine(path) and os.path.isfile(path) else 0
        self._unlink(path, *args, **kwargs)
        self.free += size

    def disk_usage(self, path):
        usage = self._usage(path)
        return usage._replace(free=self.free) if self._mine(path) else usage


@pytest.fixture
def disk(tmp_path, monkeypatch) -> FakeDisk:
    (tmp_path / "runs").mkdir()
    return FakeDisk(tmp_path / "runs", monkeypatch)


def _leftovers(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*")
                  if p.name.endswith(".tmp") or p.name == layout.RESERVE)


def test_a_full_disk_mid_evaluation_ends_failed_naming_the_path_and_the_free_space(tmp_path,
                                                                                   disk):
    disk.fill_at(layout.PREDICTIONS, 2000, free=10)  # 10 bytes left, two records in
    result = runner.invoke(app, ["evaluate", str(LINEAR), "optimizer=none",
                                 f"run_root={disk.root}", "-q"])
    assert result.exit_code == 1
    (run,) = (disk.root / "linear").iterdir()
    line = FULL_LINE.format(path=run / layout.PREDICTIONS, run=run)
    assert f"error: {line}" in " ".join(result.output.split())
    # the marker holds that line (the reserve made room for it), and show says it
    assert (run / layout.FAILED).read_text() == line + "\n"
    shown = runner.invoke(app, ["show", str(run)]).output
    assert "status: FAILED" in shown and f"error: {line}" in " ".join(shown.split())
    assert "RUNNING or KILLED" not in shown
    assert _leftovers(run) == []  # no FAILED.tmp, no metrics.json.tmp, no reserve
    assert jsonl.read(run / layout.ATTEMPTS)[-1]["outcome"] == "FAILED"
    # the record cut short is a torn last line, never read as a record
    data = (run / layout.PREDICTIONS).read_bytes()
    whole, torn = data.rsplit(b"\n", 1)
    assert len(torn) == 10 and torn.startswith(b'{"')
    records = jsonl.read(run / layout.PREDICTIONS)
    assert len(records) == whole.count(b"\n") + 1 >= 2
    assert all(set(r) >= {"id", "score", "trace"} for r in records)


def test_a_run_resumed_once_space_is_freed_goes_on_where_it_stopped(tmp_path, disk):
    overrides = ["optimizer=search", "optimizer.budget_system_runs=60"]
    ref, _ = execute("run", load(LINEAR, [*overrides, f"run_root={tmp_path / 'ref'}"]),
                     show_progress=False)
    # the disk fills while the second history record is written: 10 of its bytes land
    disk.fill_at(layout.HISTORY, 10, free=10)
    with pytest.raises(DiskFull) as e:
        execute("run", load(LINEAR, [*overrides, f"run_root={disk.root}"]), show_progress=False)
    (run,) = (disk.root / "linear").iterdir()
    line = FULL_LINE.format(path=run / layout.HISTORY, run=run)
    assert f"DiskFull: {e.value}" == line and (run / layout.FAILED).read_text() == line + "\n"
    assert RunDir(run).status() == layout.FAILED and _leftovers(run) == []
    assert not (run / layout.HISTORY).read_bytes().endswith(b"\n")  # torn
    assert len(jsonl.read(run / layout.HISTORY)) == 1  # the initial record only
    disk.free = 10**9  # space freed
    _, summary = execute("run", load(LINEAR, [*overrides, f"resume={run}"]), show_progress=False)
    assert RunDir(run).status() == layout.DONE and _leftovers(run) == []
    text = (run / layout.HISTORY).read_text()
    assert text.endswith("\n")  # the tear cut off: every line a record
    assert all(isinstance(json.loads(x), dict) for x in text.splitlines())

    def steady(path: Path) -> list[dict]:  # what the work found; spend and timing apart
        drop = {"seconds", "system_runs", "component_calls", "lm_calls", "lm_tokens",
                "lm_requests"}
        return [{k: v for k, v in r.items() if k not in drop}
                for r in jsonl.read(path / layout.HISTORY)]

    assert steady(run) == steady(ref) and len(steady(ref)) == 3
    assert summary["test"]["final"]["mean"] == 1.0
    # what the process that hit the full disk spent is counted (its checkpoint, folded in)
    spent = jsonl.read(run / layout.SPENT)
    assert [r["command"] for r in spent] == ["run (killed)", "run"]
    assert spent[0]["system_runs"] == 20  # the initial validation and one candidate's
    assert jsonl.read(run / layout.HISTORY)[-1]["system_runs"] == \
        jsonl.read(ref / layout.HISTORY)[-1]["system_runs"] + 10  # that candidate, again


def test_a_write_that_finds_no_space_leaves_no_temporary_file_and_names_its_path(tmp_path,
                                                                                  disk):
    rd = RunDir(disk.root)
    rd.write_text("a.txt", "kept")
    disk.free = 3
    # the 3 bytes that went into the temporary file are free again once it is removed
    with pytest.raises(DiskFull, match=re.escape(f"{disk.root / 'a.txt'}: No space left on "
                                                 "device (3 bytes free on its filesystem)")):
        rd.write_text("a.txt", "a longer text")
    assert (disk.root / "a.txt").read_text() == "kept"  # the old content stands
    assert sorted(p.name for p in disk.root.iterdir()) == ["a.txt"]
    # an append cut short: torn, then cut off by the next append once there is space
    disk.free = 10**9
    rd.append_jsonl("h.jsonl", {"i": 0})
    disk.free = 4
    with pytest.raises(DiskFull, match=re.escape(f"{disk.root / 'h.jsonl'}: No space")):
        rd.append_jsonl("h.jsonl", {"i": 1, "pad": "x" * 100})
    assert (disk.root / "h.jsonl").read_bytes() == b'{"i": 0}\n{"i"'
    assert rd.read_jsonl("h.jsonl") == [{"i": 0}]
    disk.free = 10**9
    rd.append_jsonl("h.jsonl", {"i": 2})  # the same RunDir: it repairs again after a failure
    assert (disk.root / "h.jsonl").read_bytes() == b'{"i": 0}\n{"i": 2}\n'


def test_a_disk_full_before_the_config_is_written_leaves_no_run_directory(tmp_path, disk):
    disk.free = 5
    result = runner.invoke(app, ["evaluate", str(LINEAR), "optimizer=none",
                                 f"run_root={disk.root}", "-q"])
    assert result.exit_code == 1
    assert re.search(rf"error: DiskFull: {re.escape(str(disk.root / 'linear'))}/[^ ]+/config\.yaml: "
                     r"No space left on device \(5 bytes free on its filesystem\)",
                     " ".join(result.output.split())), result.output
    assert list((disk.root / "linear").iterdir()) == []


def test_a_log_line_that_cannot_be_written_is_said_once_not_with_a_traceback_each(tmp_path,
                                                                                  capsys):
    import logging

    class Full:
        def write(self, text=""):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        flush = close = write

    rd = RunDir(tmp_path)
    with rd.guard():
        (handler,) = [h for h in logging.getLogger("optimas").handlers
                      if getattr(h, "baseFilename", None) == str(tmp_path / layout.LOG)]
        handler.stream = Full()
        for i in range(3):
            logging.getLogger("optimas").info("line %d", i)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert err == (f"warning: {tmp_path / layout.LOG}: a log line could not be written ([Errno 28] "
                   "No space left on device); later ones may be lost too\n")
    assert rd.status() == layout.DONE


def test_a_file_other_code_writes_is_named_when_the_disk_is_full(tmp_path):
    rd = RunDir(tmp_path)
    with pytest.raises(DiskFull, match=rf"^{tmp_path / 'val_score.png'}: No space left on device "
                                       r"\(\d[^()]* free on its filesystem\)$"):
        with rd.writing("val_score.png") as path:
            assert path == tmp_path / "val_score.png"
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what savefig raised
    with pytest.raises(OSError, match="Permission denied"), rd.writing("x.png"):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))  # any other error goes as it is
