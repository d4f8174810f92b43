"""The command lines that start a sandboxed run, in each mode.

bwrap mode: bubblewrap puts the command in new network, PID, IPC, UTS and mount
namespaces. Its root holds /usr and the interpreter's prefixes read-only, a fresh
/proc and /dev, and size-limited tmpfs at /tmp, /dev/shm and the working dir
/sandbox, into which the input files are copied; nothing else of the host (no
/work, /root, /home; of /etc only the loader cache, tool links, time zone and font
config). As root, bubblewrap keeps only CAP_SETUID and CAP_SETGID, which setpriv uses to become a fresh unprivileged uid with no
capabilities, so RLIMIT_NPROC counts this run's processes alone; as another user,
bubblewrap maps that user into a user namespace. Resource limits come from
prlimit, set before bubblewrap starts and inherited by everything inside.

rlimits mode: the same resource limits and environment, a fresh working dir on the
host, and (as root, where the interpreter is readable by others) a fresh
unprivileged uid; but no namespaces: the host's files and network stay reachable.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from optimas_cli.sandbox import reaper
from optimas_cli.sandbox.limits import Limits

SANDBOX_DIR = "/sandbox"
_MB = 1024 * 1024
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Read-only from /etc, nothing secret: the loader cache, tool links, time zone, font config.
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime", "/etc/fonts")
_UID_RANGE = (1_000_000, 2_000_000)  # uids no account uses: one fresh uid per run


def is_root() -> bool:
    return os.geteuid() == 0


def fresh_uid() -> int:
    """An unused uid for one run, so its process limit and leftovers are its own."""
    return random.SystemRandom().randrange(*_UID_RANGE)


def sandbox_env(home: str, tmp: str, python: str, pythonpath: list[str],
                extra: dict[str, str]) -> dict[str, str]:
    """The whole environment a sandboxed command sees: an allow-list, never the parent's."""
    env = {
        "PATH": f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "HOME": home, "TMPDIR": tmp, "USER": "sandbox", "LOGNAME": "sandbox",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg",
        # One thread per numeric library: fair under parallel runs, and BLAS thread
        # pools reserve address space that counts against the memory limit.
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
    }
    if pythonpath:
        env["PYTHONPATH"] = ":".join(pythonpath)
    env.update(extra)
    return env


@functools.cache
def python_prefixes(python: str) -> tuple[str, ...]:
    """sys.prefix, base_prefix, exec_prefix and base_exec_prefix of an interpreter."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    code = ("import json,sys; print(json.dumps([sys.prefix, sys.base_prefix, "
            "sys.exec_prefix, sys.base_exec_prefix]))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"}, check=True)
    return tuple(json.loads(out.stdout))


def python_dirs(python: str) -> list[str]:
    """The directories an interpreter needs to run: its prefixes (a venv and its base)."""
    dirs = {str(Path(python).parent), os.path.realpath(Path(python).parent)}
    for p in python_prefixes(python):
        dirs.update({p, os.path.realpath(p)})
    # A prefix under /usr is bound with /usr already.
    return sorted(d for d in dirs if d and not (d + "/").startswith("/usr/"))


def prlimit_args(limits: Limits, nproc: int) -> list[str]:
    """prlimit's options: the limits are set on it, then inherited by what it executes."""
    cpu = limits.cpu_seconds
    return [shutil.which("prlimit") or "prlimit", f"--cpu={cpu}:{cpu + 1}",
            f"--as={limits.memory_mb * _MB}", f"--nproc={nproc}",
            f"--fsize={limits.max_file_mb * _MB}", "--core=0",
            f"--nofile={limits.max_open_files}", "--"]


def count_tasks(uid: int) -> int:
    """Processes and threads of `uid` now (what RLIMIT_NPROC counts)."""
    n = 0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                status = (d / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields.get("Uid", "-1").split()[0]) == uid:
                n += int(fields.get("Threads", "1").strip())
    return n


def nproc_limit(limits: Limits, uid: int | None) -> int:
    """A fresh uid starts at 0 tasks; the caller's own uid shares the count with its tasks."""
    return limits.max_processes if uid is not None else count_tasks(os.getuid()) + \
        limits.max_processes


def reaper_argv(*, cgroups: list[str], uid: int | None) -> list[str]:
    """The run's first process (sandbox/reaper.py, run by this interpreter, isolated from
    site packages): a subreaper that puts the command in `cgroups` and kills the whole run,
    by its descendants, its cgroups and its real `uid`, when the command ends or the
    harness dies."""
    a = [sys.executable, "-I", "-S", reaper.__file__, "--parent", str(os.getpid())]
    for d in cgroups:
        a += ["--cgroup", d]
    if uid is not None:
        a += ["--uid", str(uid)]
    return a + ["--"]


def bwrap_argv(*, limits: Limits, uid: int | None, file_fds: dict[str, int], env: dict[str, str],
               ro_paths: list[str], command: list[str]) -> list[str]:
    """bubblewrap's command line for one run (see the module doc)."""
    a = [shutil.which("bwrap") or "bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc",
         "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session",
         "--hostname", "sandbox"]
    if uid is not None:  # root: setpriv needs these two to drop to `uid`, and then drops them
        a += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        a += ["--unshare-user"]
    a += ["--ro-bind", "/usr", "/usr"]
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            a += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            a += ["--ro-bind", d, d]
    a += ["--perms", "0755", "--dir", "/etc"]  # made by bwrap, it would be 0700 to the uid
    for f in _SYSTEM_FILES:
        a += ["--ro-bind-try", f, f]
    disk = str(limits.disk_mb * _MB)
    a += ["--proc", "/proc", "--dev", "/dev",
          "--perms", "1777", "--size", disk, "--tmpfs", "/dev/shm",  # multiprocessing's locks
          "--perms", "1777", "--size", disk, "--tmpfs", "/tmp",
          "--perms", "0777", "--size", disk, "--tmpfs", SANDBOX_DIR]
    made: set[str] = set()
    # after the tmpfs mounts: a virtualenv under /tmp (a CI clone there) stays visible
    for p in ro_paths:  # their parents must be traversable by the dropped uid
        for parent in reversed(Path(p).parents[:-1]):
            if str(parent) not in made and not str(parent).startswith("/usr"):
                made.add(str(parent))
                a += ["--perms", "0755", "--dir", str(parent)]
        a += ["--ro-bind", p, p]
    for name, fd in file_fds.items():
        for parent in reversed(Path(name).parents[:-1]):
            if str(parent) not in made:
                made.add(str(parent))
                a += ["--perms", "0777", "--dir", f"{SANDBOX_DIR}/{parent}"]
        a += ["--perms", "0666", "--file", str(fd), f"{SANDBOX_DIR}/{name}"]
    a += ["--chdir", SANDBOX_DIR, "--clearenv"]
    for k, v in env.items():
        a += ["--setenv", k, v]
    if uid is not None:  # no_new_privs: a setuid binary (su, ...) cannot raise the uid again
        a += [shutil.which("setpriv") or "setpriv", "--no-new-privs", f"--reuid={uid}",
              f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]
    return a + command


def rlimits_argv(*, uid: int | None, command: list[str]) -> list[str]:
    """The command under setpriv: killed with its parent, with no_new_privs (a setuid binary
    such as su cannot raise its privileges), as `uid` where one is given."""
    a = [shutil.which("setpriv") or "setpriv", "--pdeathsig", "KILL", "--no-new-privs"]
    if uid is not None:
        a += [f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]
    return a + command
