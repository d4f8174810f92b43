"""What the processes that worked on a run directory spent, kill -9 included.

`spent.jsonl` holds one line per process: the system runs, model calls, LM requests and
tokens it spent. A process writes its line when it ends, failed and interrupted ones
included. A SIGKILL-ed one cannot, so while it works a process also keeps a checkpoint,
`spent.live/<pid>.json`, rewritten atomically before each write to the run directory and
every `interval` seconds. The next process on the run directory turns the checkpoints of
dead processes into their lines (`"command": "<command> (killed)"`), and so does the same
process for a checkpoint of its own that it no longer keeps: one whose line a full disk
kept from being written. So a resumed run's
budget counts everything a killed one spent on results it saved, and what it spent on work
it did not save, up to its last `interval` seconds.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from optimas_cli import layout
from optimas_cli.budget import SPENT_KEYS
from optimas_cli.run_dir import RunDir

SPENT, LIVE = layout.SPENT, layout.SPENT_LIVE
_RECORDING: set[Path] = set()  # the checkpoints this process is keeping now


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fold_orphans(run_dir: RunDir) -> int:
    """Turn the checkpoints of processes no longer alive into spent.jsonl lines; how many.
    A checkpoint of this process that it no longer keeps is one too: an earlier recording
    here that could not write its line (a full disk)."""
    live = run_dir.path / LIVE
    folded = 0
    for f in sorted(live.glob("*.json")) if live.is_dir() else []:
        pid = int(f.stem) if f.stem.isdigit() else -1
        if f.resolve() in _RECORDING or (pid != os.getpid() and pid > 0 and _alive(pid)):
            continue
        try:
            row = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # written by os.replace: never torn, but be safe
            row = None
        if row is not None:
            row["command"] = f"{row.get('command', '?')} (killed)"
            run_dir.append_jsonl(SPENT, row)
            folded += 1
        f.unlink(missing_ok=True)
    return folded


def spent_before(run_dir: RunDir) -> dict[str, int]:
    """What earlier processes spent on this run directory, killed ones included."""
    fold_orphans(run_dir)
    rows = run_dir.read_jsonl(SPENT)
    return {k: sum(int(r.get(k, 0)) for r in rows) for k in SPENT_KEYS}


def _row(command: str, now: dict[str, int], offset: dict[str, int]) -> dict[str, int | str]:
    return {"command": command, **{k: now.get(k, 0) - offset.get(k, 0) for k in SPENT_KEYS}}


@contextmanager
def recording(run_dir: RunDir, command: str, offset: dict[str, int],
              spent: Callable[[], dict[str, int]], interval: float = 2.0) -> Iterator[None]:
    """Checkpoint this process's spend while the block runs; its spent.jsonl line at the end.

    `spent()` is the running total, earlier processes included (Budget.spent); `offset`
    what they spent, so a line holds only this process's share.
    """
    live = run_dir.path / LIVE
    live.mkdir(exist_ok=True)
    path = live / f"{os.getpid()}.json"
    tmp = live / f".{os.getpid()}.tmp"
    stop, lock = threading.Event(), threading.Lock()

    def checkpoint() -> None:
        with lock:
            tmp.write_text(json.dumps(_row(command, spent(), offset)), encoding="utf-8")
            os.replace(tmp, path)

    def loop() -> None:
        while not stop.wait(interval):
            try:
                checkpoint()
            except Exception:  # a checkpoint is best effort; the final line is what counts
                pass

    thread = threading.Thread(target=loop, name="spend-checkpoint", daemon=True)
    thread.start()
    run_dir.before_write = checkpoint
    _RECORDING.add(path.resolve())
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        run_dir.before_write = None
        _RECORDING.discard(path.resolve())
        stop.set()
        thread.join()
        tmp.unlink(missing_ok=True)
        try:
            run_dir.append_jsonl(SPENT, _row(command, spent(), offset))
        except OSError:
            if not failed:
                raise
            # the block's error (a full disk) goes on; the checkpoint stays, and the next
            # process on the run directory folds it in as this one's line
        else:
            path.unlink(missing_ok=True)
