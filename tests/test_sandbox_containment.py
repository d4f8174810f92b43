"""A sandboxed run is bounded and taken down as a whole: its memory and processes through a
cgroup per run, its orphans through the reaper, even when the harness itself is SIGKILLed.

Each case runs in both modes where this machine has them (bwrap and rlimits); the memory
case needs a per-run cgroup (sandbox/cgroups.py: root with cgroup v1, or a delegated v2),
and is skipped elsewhere with the README's reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from reliability_log import record
from test_sandbox_attacks import sandbox_modes

from optimas_cli.sandbox import Limits, Sandbox, cgroups, reaper

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(cpu_seconds=5, wall_seconds=20, memory_mb=256, max_processes=32)


@pytest.fixture(params=sandbox_modes())
def mode(request):
    return request.param


def with_marker(marker: str) -> list[int]:
    """Live processes whose command line holds `marker`."""
    found = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and marker.encode() in Path(f"/proc/{d}/cmdline").read_bytes() \
                    and not reaper._is_zombie(int(d)):
                found.append(int(d))
        except OSError:
            continue
    return found


def _wait_for(predicate, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


HOG = """
import os, sys, time  # argv[1]: a marker for the test to find what is left
MB = 1 << 20
chunk = b"x" * MB
for i in range(48):  # memfds: no process's address space holds them
    fd = os.memfd_create(f"m{i}")
    for _ in range(16):
        os.write(fd, chunk)
    print("touched 16", flush=True)
for i in range(6):  # forks of 180 MB each, every page touched
    if os.fork() == 0:
        b = bytearray(180 * MB)
        for j in range(0, len(b), 4096):
            b[j] = 1
        print("touched 180", flush=True)
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(30)",
                                  sys.argv[1]])
        os._exit(0)
time.sleep(30)
"""


@pytest.mark.skipif(cgroups.support()[0] is None, reason="no per-run cgroup here: memory_mb "
                    "bounds each process only (README: 'BigCodeBench and the sandbox')")
def test_memory_is_bounded_for_the_whole_run_memfds_and_forks_included(mode):
    marker = f"optimas-marker-{uuid.uuid4().hex}"
    r = Sandbox(LIMITS, mode=mode).run({"main.py": HOG}, ["python", "main.py", marker])
    record("containment", attack="6 forks x 180 MB + 48 memfds x 16 MB", mode=mode,
           left=len(with_marker(marker)), peak_mb=r.peak_memory_mb, bound_mb=LIMITS.memory_mb)
    assert not with_marker(marker)
    touched = sum(int(line.split()[1]) for line in r.stdout.splitlines()
                  if line.startswith("touched"))
    assert not r.ok  # it wanted 1,848 MB
    assert r.peak_memory_mb is not None and r.peak_memory_mb <= LIMITS.memory_mb, r
    # what the run itself says it held: the interpreter's own pages count too, so less
    assert touched <= LIMITS.memory_mb, r.stdout
    assert touched >= 64, r  # it did get going (the memfds come first)


SLEEPER = """
import os, sys, time
marker = sys.argv[1]
for _ in range(2):  # two orphans in sessions of their own
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)",
                                      marker])
        os._exit(0)
print("started", flush=True)
time.sleep(300)
"""

HARNESS = """
import sys
from optimas_cli.sandbox import Limits, Sandbox
box = Sandbox(Limits(wall_seconds=120), mode=sys.argv[1])
box.run({"main.py": sys.argv[3]}, ["python", "main.py", sys.argv[2]])
"""


def test_a_harness_killed_with_sigkill_takes_its_whole_run_along(mode):
    marker = f"optimas-marker-{uuid.uuid4().hex}"
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, mode, marker, SLEEPER],
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        # the run and its two orphans (and in bwrap mode bubblewrap) are up
        assert _wait_for(lambda: len(with_marker(marker)) >= 3, 60), with_marker(marker)
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait()
        gone = _wait_for(lambda: not with_marker(marker), 10)
        record("containment", attack="harness SIGKILLed with 2 setsid orphans running",
               mode=mode, left=len(with_marker(marker)))
        assert gone, f"left running after the harness died: {with_marker(marker)}"
    finally:
        harness.kill()
        for pid in with_marker(marker):
            os.kill(pid, signal.SIGKILL)


def test_orphans_left_at_a_normal_end_are_gone(mode):
    marker = f"optimas-marker-{uuid.uuid4().hex}"
    program = SLEEPER.replace("time.sleep(300)\n", "pass\n")  # main exits at once
    r = Sandbox(LIMITS, mode=mode).run({"main.py": program}, ["python", "main.py", marker])
    assert r.ok and "started" in r.stdout, r
    record("containment", attack="2 setsid orphans at a normal end", mode=mode,
           left=len(with_marker(marker)))
    assert not with_marker(marker)


SETUID = """
import os, time
r, w = os.pipe()
if os.fork() == 0:  # su waits for a password on a pipe nobody writes to
    os.setsid()
    if os.fork() == 0:
        os.dup2(r, 0)
        os.execv("/bin/su", ["su", "-c", "id", "root"])
    os._exit(0)
time.sleep(1)
for d in os.listdir("/proc"):
    try:
        if d.isdigit() and open(f"/proc/{d}/comm").read().strip() == "su":
            uids = [line for line in open(f"/proc/{d}/status") if line.startswith("Uid:")][0]
            print("su", d, *uids.split()[1:3])
    except OSError:
        pass
"""


def _su_pids() -> set[int]:
    found = set()
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and Path(f"/proc/{d}/comm").read_text().strip() == "su" \
                    and not reaper._is_zombie(int(d)):
                found.add(int(d))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not os.access("/bin/su", os.X_OK), reason="no /bin/su here")
def test_a_setuid_orphan_gains_nothing_and_is_gone_after_the_run(mode):
    before = _su_pids()
    r = Sandbox(LIMITS, mode=mode).run({"main.py": SETUID}, ["python", "main.py"])
    assert r.ok, r
    for line in r.stdout.splitlines():  # seen inside: real and effective uid, never root
        _, _, ruid, euid = line.split()
        assert ruid != "0" and euid != "0", line
    record("containment", attack="setuid su orphaned, waiting on a pipe", mode=mode,
           left=len(_su_pids() - before))
    assert not (_su_pids() - before)


def test_the_reaper_kills_by_real_uid(tmp_path):
    # a process whose /proc entry is root's (a setuid binary's euid) is found by its real uid
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process under another uid")
    uid = 1_999_999
    p = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                          "sleep", "300"])
    try:
        assert _wait_for(lambda: reaper.real_uid(p.pid) == uid, 5)
        reaper.kill_run(uid=uid)
        assert p.wait(timeout=5) == -signal.SIGKILL
    finally:
        p.kill()


def test_the_harness_clean_up_takes_no_exit_status_of_a_child_it_does_not_own():
    # another run's reaper (here any child of this process) exits 3 while a run is cleaned up
    other = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert _wait_for(lambda: reaper._is_zombie(other.pid), 30)
    reaper.kill_run(uid=1_999_998)  # the harness's sweep after a run
    Sandbox(LIMITS, mode="rlimits").run({}, ["python", "-c", "pass"])  # a whole run's too
    assert other.wait(timeout=5) == 3  # not 0: its status was left for its own Popen


def test_a_v2_group_is_written_where_the_cgroup_is_delegated(tmp_path, monkeypatch):
    # unit: the files a v2 group gets (this machine has v1 only; the real v1 path is above)
    parent = tmp_path / "delegated"
    parent.mkdir()
    monkeypatch.setattr(cgroups, "_v2_parent", lambda: str(parent))
    monkeypatch.setattr(cgroups, "support", lambda: ("v2", "test"))
    monkeypatch.setattr(cgroups.os, "rmdir", lambda d: None)

    def fake_mkdir(self, *a, **k):  # a real cgroup dir comes with its interface files
        os.makedirs(self)
        for f in ("memory.max", "memory.swap.max", "pids.max", "cgroup.procs"):
            (self / f).write_text("")

    monkeypatch.setattr(cgroups.Path, "mkdir", fake_mkdir)
    group = cgroups.create(Limits(memory_mb=300, max_processes=7))
    (d,) = group.dirs
    assert Path(d).parent == parent and group.kind == "v2"
    assert Path(d, "memory.max").read_text() == str(300 << 20)
    assert Path(d, "memory.swap.max").read_text() == "0"
    assert Path(d, "pids.max").read_text() == "7"
    Path(d, "memory.peak").write_text(str(120 << 20))
    assert group.peak_memory_mb() == 120


def test_the_reaper_exits_as_its_command_did():
    def run(code: str) -> int:
        argv = [sys.executable, "-I", "-S", reaper.__file__, "--", sys.executable, "-c", code]
        return subprocess.run(argv, timeout=30).returncode

    assert run("raise SystemExit(3)") == 3
    assert run("import os; os.kill(os.getpid(), 9)") == -signal.SIGKILL
    assert run("pass") == 0


def test_bounds_say_which_limit_is_in_force():
    kind, why = cgroups.support()
    bounds = cgroups.describe()
    if kind is None:
        assert bounds["memory_mb"].startswith("per process")
    else:
        assert bounds["memory_mb"].startswith("whole run") and kind in bounds["memory_mb"]
        assert bounds["max_processes"].startswith("whole run")
