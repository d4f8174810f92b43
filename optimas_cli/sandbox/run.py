"""Sandbox: run untrusted commands, each in a fresh directory under limits, a few at a time.

The harness never executes the code itself: every run is a separate process tree
that is killed at its wall-clock limit, whose output is read from files (so a
flood of output cannot exhaust the caller's memory), and whose failure, however
it happens, comes back as a Result instead of an exception.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from optimas_cli.sandbox import cgroups, launch, reaper
from optimas_cli.sandbox.limits import Limits, Mode, Result, Status, signal_name

log = logging.getLogger(__name__)
_REAPER_GRACE = 2.0  # seconds the reaper has to take a timed-out run down before SIGKILL


class SandboxUnavailable(RuntimeError):
    """mode='bwrap' was asked for where bubblewrap cannot start."""


@dataclass
class Job:
    files: Mapping[str, str]  # relative path in the working dir -> text
    command: Sequence[str]  # argv; a leading "python" is the sandbox's interpreter
    stdin: str = ""
    limits: Limits | None = None  # None: the sandbox's own


@dataclass(eq=False)  # compared and hashed by identity: it holds its slots
class Sandbox:
    """Where and how untrusted commands run; `mode` "auto" takes bwrap where it works.

    `pythonpath`: host directories put on the sandbox's PYTHONPATH (bound read-only
    in bwrap mode); `ro_paths`: more host paths visible read-only; `env`: variables
    added to the allow-listed environment (the parent's are never passed on).
    """

    limits: Limits = field(default_factory=Limits)
    mode: Literal["auto", "bwrap", "rlimits"] = "auto"
    max_parallel: int = 4
    python: str = sys.executable
    pythonpath: list[str] = field(default_factory=list)
    ro_paths: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.max_parallel)
        self.resolved: Mode = self._resolve_mode()

    # ---------------------------------------------------------------- public

    def run(self, files: Mapping[str, str], command: Sequence[str], *, stdin: str = "",
            limits: Limits | None = None) -> Result:
        """Run `command` in a fresh working dir holding `files`; waits for a free slot."""
        with self._slots:
            return self._run(dict(files), list(command), stdin, limits or self.limits)

    def run_many(self, jobs: Iterable[Job]) -> list[Result]:
        """Results of `jobs`, in order, up to `max_parallel` at once."""
        with ThreadPoolExecutor(self.max_parallel) as pool:
            return list(pool.map(lambda j: self.run(j.files, j.command, stdin=j.stdin,
                                                    limits=j.limits), jobs))

    def why_not_bwrap(self) -> str | None:
        """Why bwrap mode cannot run here, or None where it can."""
        return bwrap_problem(self.python, tuple(self._ro_paths()))

    def describe(self) -> str:
        """One line: the mode in force and what bounds a run's memory and processes."""
        kind, _ = cgroups.support()
        what = ("namespaces: no network, no host files" if self.resolved == "bwrap" else
                "resource limits only: host files and network reachable")
        bound = (f"for the whole run (cgroup {kind}) and per process" if kind else
                 "per process only (no per-run cgroup here)")
        return (f"{self.resolved} ({what}); {self.limits.memory_mb} MB and "
                f"{self.limits.max_processes} processes {bound}")

    # ---------------------------------------------------------------- setup

    def _resolve_mode(self) -> Mode:
        if self.mode == "rlimits":
            return "rlimits"
        problem = bwrap_problem(self.python, tuple(self._ro_paths()))
        if problem is None:
            return "bwrap"
        if self.mode == "bwrap":
            raise SandboxUnavailable(f"sandbox mode 'bwrap' is unavailable: {problem}")
        warn_fallback(problem, self.python)
        return "rlimits"

    def _ro_paths(self) -> list[str]:
        paths = [*launch.python_dirs(self.python), *self.pythonpath, *self.ro_paths]
        return sorted({os.path.abspath(p) for p in paths})

    # ---------------------------------------------------------------- one run

    def _run(self, files: dict[str, str], command: list[str], stdin: str,
             limits: Limits) -> Result:
        for name in files:
            check_name(name)
        if command and command[0] == "python":
            command = [self.python, *command[1:]]
        stage = Path(tempfile.mkdtemp(prefix="optimas-sandbox-"))
        try:
            os.chmod(stage, 0o711)  # a dropped uid may pass through to work/, not list it
            return self._run_staged(stage, files, command, stdin, limits)
        except Exception as e:  # noqa: BLE001 - run() never raises: a result says what broke
            return Result("failed_to_start", None, "", f"{type(e).__name__}: {e}", 0.0,
                          self.resolved)
        finally:
            remove_tree(stage, limits.wall_seconds)

    def _run_staged(self, stage: Path, files: dict[str, str], command: list[str], stdin: str,
                    limits: Limits) -> Result:
        (stage / "stdin").write_text(stdin)
        fds: list[int] = []
        if self.resolved == "bwrap":
            uid = launch.fresh_uid() if launch.is_root() else None
            file_fds = {}
            for n, (name, text) in enumerate(files.items()):
                path = stage / f"in_{n}"
                path.write_text(text)
                file_fds[name] = os.open(path, os.O_RDONLY)
            fds = list(file_fds.values())
            env = launch.sandbox_env(launch.SANDBOX_DIR, "/tmp", self.python, self.pythonpath,
                                     self.env)
            argv = launch.bwrap_argv(limits=limits, uid=uid, file_fds=file_fds, env=env,
                                     ro_paths=self._ro_paths(), command=command)
            cwd, popen_env = stage, {"PATH": "/usr/bin:/bin"}
        else:
            uid = launch.fresh_uid() if can_drop_uid(self.python) else None
            work = stage / "work"
            (work / ".tmp").mkdir(parents=True)
            for name, text in files.items():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                (work / name).write_text(text)
            if uid is not None:
                for p in [work, *work.rglob("*")]:
                    os.chown(p, uid, uid)
            popen_env = launch.sandbox_env(str(work), str(work / ".tmp"), self.python,
                                           self.pythonpath, self.env)
            argv, cwd = launch.rlimits_argv(uid=uid, command=command), work
        argv = launch.prlimit_args(limits, launch.nproc_limit(limits, uid)) + argv
        group = cgroups.create(limits)
        dirs = group.dirs if group is not None else []
        argv = launch.reaper_argv(cgroups=dirs, uid=uid) + argv
        start = time.monotonic()
        try:
            with open(stage / "stdin", "rb") as fin, open(stage / "stdout", "wb") as fout, \
                    open(stage / "stderr", "wb") as ferr:
                try:
                    proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, cwd=cwd,
                                            env=popen_env, pass_fds=fds, start_new_session=True)
                finally:
                    for fd in fds:
                        os.close(fd)
                timed_out = _wait(proc, limits.wall_seconds)
        finally:  # what outlived its reaper: its uid's processes, by real uid, and its cgroups
            reaper.kill_run(uid=uid)
            peak = group.peak_memory_mb() if group is not None else None
            if group is not None:
                group.remove()  # kills what is left in the groups, then removes them
        seconds = time.monotonic() - start
        out = read_capped(stage / "stdout", limits.max_output_bytes)
        err = read_capped(stage / "stderr", limits.max_output_bytes)
        status, sig = classify(proc.returncode, timed_out, err, self.resolved)
        return Result(status, proc.returncode, out, err, seconds, self.resolved, sig, peak)


# -------------------------------------------------------------------- helpers


def _wait(proc: subprocess.Popen, wall_seconds: float) -> bool:
    """Wait for the run; past the wall limit kill its process group. True if it timed out.

    A pidfd wakes us the moment the process exits (Popen.wait with a timeout polls, at
    up to 50 ms a time), and the pid cannot be reused before we reap it.
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        fd = None
    try:
        if fd is not None:
            exited = bool(select.select([fd], [], [], wall_seconds)[0])
        else:
            try:
                proc.wait(timeout=wall_seconds)
                exited = True
            except subprocess.TimeoutExpired:
                exited = False
        if not exited:  # the reaper takes the run down, then anything left in its group goes
            _signal(proc.pid, signal.SIGTERM, group=False)
            try:
                proc.wait(timeout=_REAPER_GRACE)
            except subprocess.TimeoutExpired:
                pass
            _signal(proc.pid, signal.SIGKILL, group=True)
        proc.wait()
        return not exited
    finally:
        if fd is not None:
            os.close(fd)


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except ProcessLookupError:
        pass


def classify(rc: int | None, timed_out: bool, stderr: str,
             mode: Mode) -> tuple[Status, str | None]:
    """Status and signal name of a finished run from its exit status."""
    if timed_out:
        return "timeout", None
    if rc == 0:
        return "ok", None
    if rc is not None and rc < 0:
        return "killed", signal_name(-rc)
    if mode == "bwrap" and rc is not None and 128 < rc <= 128 + 64:  # bwrap: 128 + signal
        return "killed", signal_name(rc - 128)
    if mode == "bwrap" and rc == 1 and stderr.startswith("bwrap: "):
        return "failed_to_start", None
    return "error", None


def check_name(name: str) -> None:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"sandbox file name {name!r} must be a relative path inside the "
                         "working dir")


def remove_tree(path: Path, seconds: float) -> None:
    """Remove a run's staging directory, whatever the program left in it: shutil.rmtree
    recurses once per level (a tree thousands of levels deep raises RecursionError), so
    `rm -rf` takes over, bounded by `seconds`; nothing is raised."""
    try:
        shutil.rmtree(path)
        return
    except (OSError, RecursionError):
        pass
    try:
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], timeout=max(seconds, 10),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        log.warning("sandbox: could not remove %s", path)


def read_capped(path: Path, limit: int) -> str:
    """A file's text; past `limit` bytes, its head and tail around a note of what was cut."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= limit:
            data = f.read()
        else:
            head = f.read(limit // 2)
            f.seek(size - limit // 2)
            data = head + f"\n... [{size - limit} bytes cut] ...\n".encode() + f.read()
    return data.decode("utf-8", errors="replace")


@functools.cache
def bwrap_problem(python: str, ro_paths: tuple[str, ...]) -> str | None:
    """Why bwrap mode cannot run `python` here, or None when it can (a trial run, once)."""
    for tool in ("bwrap", "prlimit") + (("setpriv",) if launch.is_root() else ()):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (apt-get install bubblewrap util-linux)"
    probe = Sandbox(Limits(wall_seconds=30), mode="rlimits", python=python, ro_paths=list(ro_paths))
    probe.resolved = "bwrap"  # what is on trial
    r = probe.run({}, ["python", "-c", "import sys; print(sys.prefix)"])
    expected = launch.python_prefixes(python)[0]
    if r.status == "ok" and r.stdout.strip() == expected:
        return None
    if r.status == "ok":  # it started, but not as itself (e.g. its venv was out of reach)
        return f"inside, the interpreter found sys.prefix {r.stdout.strip()}, not {expected}"
    return f"a trial run failed ({r.describe()}): {(r.stderr or r.stdout).strip()[:300]}"


@functools.cache
def can_drop_uid(python: str) -> bool:
    """rlimits mode as root: whether `python` runs as an unprivileged uid (it may live in
    a directory only root can read, like /root/.pyenv)."""
    if not launch.is_root() or shutil.which("setpriv") is None:
        return False
    argv = launch.rlimits_argv(uid=launch.fresh_uid(), command=[python, "-c", "pass"])
    try:
        return subprocess.run(argv, capture_output=True, timeout=60, cwd="/",
                              env={"PATH": "/usr/bin:/bin"}).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def warn_fallback(problem: str, python: str) -> None:
    exposed = "read the host's world-readable files and use the network"
    if not can_drop_uid(python):
        exposed = ("read, write and delete whatever this process may, signal its processes "
                   "and use the network")
    log.warning("sandbox: bubblewrap is unavailable (%s); falling back to resource limits "
                "only: untrusted code can then %s (README: 'BigCodeBench and the sandbox')",
                problem, exposed)
