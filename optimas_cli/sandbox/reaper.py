"""The process that stands between the harness and a sandboxed run, and takes it all down.

    python -I -S reaper.py --parent PID [--cgroup DIR]... [--uid UID] -- COMMAND...

It is started by the harness (sandbox/run.py) as the leader of a new session, and:
- becomes a child subreaper, so every process the run orphans (a double fork, a daemon,
  a setsid'd child) is reparented to it rather than to pid 1;
- asks for SIGTERM when its parent dies: a harness killed with SIGKILL cannot clean up,
  so this process does it;
- starts COMMAND in the run's cgroups (`--cgroup`: memory and pids bounds for the whole
  run, see sandbox/cgroups.py);
- when COMMAND ends, or on SIGTERM/SIGHUP/SIGINT, kills every process of the run: its
  descendants, the members of its cgroups, and every process whose *real* uid is the
  run's (`--uid`; /proc/<pid>/status, so a setuid binary's euid 0 does not hide it);
- exits as COMMAND did (the same exit code, or the same signal).

It imports the standard library only (it runs with -I -S, before any site packages), and
the harness imports `kill_run` from it for the same clean-up after a wall-clock kill.
"""

from __future__ import annotations

# `signal` and `pathlib` are not imported: with their imports (enum, re, fnmatch) the reaper
# took 3x as long to start, and it starts once per sandboxed run.
import _signal as signal  # noqa: PLC2701 - the C module under `signal`, without its enums
import os
import resource
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_ROUNDS = 200  # kill rounds before giving up (a fork bomb is held by pids.max / NPROC)


def real_uid(pid: int) -> int | None:
    """The real uid of `pid` (first field of Uid: in /proc/<pid>/status), or None if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def descendants(root: int) -> set[int]:
    """Every live process below `root` (by parent links in /proc)."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        ppid = parent_pid(pid)
        if ppid is not None:
            children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def cgroup_members(dirs: list[str]) -> set[int]:
    found = set()
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                found.update(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def run_processes(*, root: int | None, cgroups: list[str], uid: int | None) -> set[int]:
    """The processes of a run: below `root`, in `cgroups`, or of real uid `uid`."""
    found = cgroup_members(cgroups)
    if root is not None:
        found |= descendants(root)
    if uid is not None:
        found.update(p for p in _pids() if real_uid(p) == uid)
    found.discard(os.getpid())
    return found


def _reap() -> None:
    """Collect exited children without blocking (this process is their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_run(*, root: int | None = None, cgroups: list[str] = (), uid: int | None = None,
             reap: bool = False) -> int:
    """SIGKILL the run's processes until none is left; returns how many were found alive
    after the first round (0: the run had ended cleanly). `reap`: also collect this
    process's exited children, for the reaper alone, whose children are all the run's (the
    harness must not: it would take the exit status of a child it does not own, such as
    another run's reaper, whose Popen would then read exit 0)."""
    cgroups, survivors = list(cgroups), 0
    for n in range(_ROUNDS):
        alive = run_processes(root=root, cgroups=cgroups, uid=uid)
        alive = {p for p in alive if not _is_zombie(p)}
        if n == 1:
            survivors = len(alive)
        if not alive:
            return survivors
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if reap:
            _reap()
        time.sleep(0.01)
    return survivors


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def _prctl(option: int, value: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _parse(argv: list[str]) -> tuple[int, list[str], int | None, list[str]]:
    cut = argv.index("--")
    opts, command = argv[:cut], argv[cut + 1:]
    if len(opts) % 2:
        raise SystemExit(f"reaper: options come in pairs: {opts}")
    parent, cgroups, uid = 0, [], None
    for key, value in zip(opts[::2], opts[1::2], strict=True):
        if key == "--parent":
            parent = int(value)
        elif key == "--cgroup":
            cgroups.append(value)
        elif key == "--uid":
            uid = int(value)
        else:
            raise SystemExit(f"reaper: unknown option {key}")
    if not command:
        raise SystemExit("reaper: no command after --")
    return parent, cgroups, uid, command


def _start(command: list[str], cgroups: list[str]) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: into the run's cgroups, then the command (its descendants inherit them)
        for d in cgroups:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        os.execvp(command[0], command)
    except BaseException as e:  # noqa: BLE001 - the child must never return into the reaper
        os.write(2, f"reaper: cannot start {command[0]}: {e}\n".encode())
    os._exit(127)


def main(argv: list[str]) -> None:
    parent, cgroups, uid, command = _parse(argv)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # exiting by the command's signal dumps nothing
    me = os.getpid()

    def abandon(signum, frame):  # the harness died, or asked: the whole run goes
        kill_run(root=me, cgroups=cgroups, uid=uid, reap=True)
        os._exit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, abandon)
    if parent and os.getppid() != parent:  # the harness died before PDEATHSIG was set
        abandon(signal.SIGTERM, None)
    child = _start(command, cgroups)
    status = None
    while status is None:
        try:
            pid, st = os.waitpid(-1, 0)  # orphans are reaped here too
        except ChildProcessError:
            break
        if pid == child:
            status = st
    kill_run(root=me, cgroups=cgroups, uid=uid, reap=True)
    _reap()
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(me, sig)  # exit as the command did (SIGKILL, SIGXCPU, ...)
    os._exit(os.waitstatus_to_exitcode(status) if status is not None else 127)


if __name__ == "__main__":
    main(sys.argv[1:])
