"""A cgroup per sandboxed run: its memory (shared memory and memfds included) and its
process count bounded for the whole run, not per process.

Where a run gets one:
- cgroup v2, where the cgroup this process runs in is delegated with the `memory` and
  `pids` controllers enabled for its children (its `cgroup.subtree_control` lists both and
  it is writable): one child group per run with `memory.max`, `memory.swap.max` 0 and
  `pids.max`;
- cgroup v1 as root, where the `memory` and `pids` hierarchies are mounted read-write (this
  machine): one group per run in each, under this process's own group, with
  `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes` where swap is accounted) and
  `pids.max`;
- elsewhere none: the per-process limits (RLIMIT_AS per process, RLIMIT_NPROC per uid) are
  the only bounds, and `describe()` says so.

The groups are made by the harness, joined by the run's first process (sandbox/reaper.py),
and emptied and removed by the harness after the run.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from optimas_cli.sandbox.limits import Limits
from optimas_cli.sandbox.reaper import kill_run

log = logging.getLogger(__name__)
_MB = 1024 * 1024


@dataclass
class RunGroup:
    """One run's cgroup(s): v2 one directory, v1 one per controller (memory, pids)."""

    kind: str  # "v2" | "v1"
    dirs: list[str]

    def _file(self, names: tuple[str, ...]) -> str | None:
        for d in self.dirs:
            for name in names:
                try:
                    return Path(d, name).read_text()
                except OSError:
                    continue
        return None

    def peak_memory_mb(self) -> float | None:
        """The run's peak memory as the kernel charged it (v2 memory.peak, v1
        memory.max_usage_in_bytes), or None where the kernel does not keep it."""
        text = self._file(("memory.peak", "memory.max_usage_in_bytes"))
        try:
            return int(text) / _MB if text is not None else None
        except ValueError:
            return None

    def oom_kills(self) -> int:
        """Processes of the run the kernel killed at the memory bound."""
        text = self._file(("memory.events", "memory.oom_control")) or ""
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        """Kill whatever is still in the groups, then remove them (never raises)."""
        kill_run(cgroups=self.dirs)
        for d in self.dirs:
            for _ in range(100):  # a killed task leaves the group once it is reaped
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    kill_run(cgroups=[d])
            else:
                log.warning("sandbox: could not remove cgroup %s", d)


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, type, options) of every cgroup mount."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, kind, opts, *_ = line.split()
        if kind in ("cgroup", "cgroup2"):
            found.append((point, kind, set(opts.split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and "" for v2 (/proc/self/cgroup)."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            paths[c] = path
    return paths


def _v2_parent() -> str | None:
    own = _own_paths().get("")
    for point, kind, _ in _mounts():
        if kind != "cgroup2" or own is None:
            continue
        parent = Path(point) / own.lstrip("/")
        try:
            enabled = set((parent / "cgroup.subtree_control").read_text().split())
        except OSError:
            continue
        if {"memory", "pids"} <= enabled and os.access(parent, os.W_OK):
            return str(parent)
    return None


def _v1_parents() -> dict[str, str] | None:
    if os.geteuid() != 0:
        return None
    own, parents = _own_paths(), {}
    for point, kind, opts in _mounts():
        for c in ("memory", "pids"):
            if kind == "cgroup" and c in opts and "rw" in opts and c in own:
                parents[c] = str(Path(point) / own[c].lstrip("/"))
    return parents if set(parents) == {"memory", "pids"} else None


@functools.cache
def support() -> tuple[str | None, str]:
    """Which per-run cgroup this machine gives ("v2", "v1" or None) and why."""
    try:
        if (parent := _v2_parent()) is not None:
            return _trial("v2", {"": parent})
        if (parents := _v1_parents()) is not None:
            return _trial("v1", parents)
    except OSError as e:
        return None, f"cgroups unreadable ({e})"
    why = ("not root, and no delegated cgroup v2 with memory and pids" if os.geteuid() != 0
           else "no writable cgroup v1 memory and pids hierarchies, and no delegated cgroup v2")
    return None, why


def _trial(kind: str, parents: dict[str, str]) -> tuple[str | None, str]:
    group = _make(kind, parents, Limits())
    if group is None:
        return None, f"cgroup {kind} found at {sorted(parents.values())}, but a group could " \
                     "not be made there"
    group.remove()
    return kind, f"cgroup {kind} under {', '.join(sorted(parents.values()))}"


def _make(kind: str, parents: dict[str, str], limits: Limits) -> RunGroup | None:
    name = f"optimas-run-{secrets.token_hex(6)}"
    mem = str(limits.memory_mb * _MB)
    if kind == "v2":
        writes = {"": [("memory.max", mem), ("memory.swap.max", "0"),
                       ("pids.max", str(limits.max_processes))]}
    else:
        writes = {"memory": [("memory.limit_in_bytes", mem), ("memory.memsw.limit_in_bytes", mem)],
                  "pids": [("pids.max", str(limits.max_processes))]}
    group = RunGroup(kind, [])
    try:
        for controller, parent in parents.items():
            d = Path(parent, name)
            d.mkdir()
            group.dirs.append(str(d))
            for file, value in writes[controller]:
                if (d / file).exists() or file != "memory.memsw.limit_in_bytes":
                    (d / file).write_text(value)  # memsw exists only where swap is accounted
    except OSError as e:
        log.warning("sandbox: could not make a cgroup for a run (%s); per-process limits only",
                    e)
        group.remove()
        return None
    return group


def create(limits: Limits) -> RunGroup | None:
    """A fresh cgroup for one run under `limits`, or None where this machine has none."""
    kind, _ = support()
    if kind is None:
        return None
    parents = {"": _v2_parent()} if kind == "v2" else _v1_parents()
    return _make(kind, parents, limits)


def describe() -> dict[str, str]:
    """Which bound is in force for a run's memory and processes here."""
    kind, why = support()
    if kind is None:
        return {"memory_mb": "per process (RLIMIT_AS): " + why,
                "max_processes": "per uid (RLIMIT_NPROC): " + why}
    return {"memory_mb": f"whole run ({why}) and per process (RLIMIT_AS)",
            "max_processes": f"whole run ({why}) and per uid (RLIMIT_NPROC)"}
