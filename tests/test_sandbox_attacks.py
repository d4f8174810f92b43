"""Hostile code in the sandbox: every attack is stopped or harmless, and the harness goes on.

Each attack runs in every mode this machine offers. bwrap mode must stop all of them.
rlimits mode (no namespaces) stops what resource limits and a separate uid can stop;
where it guarantees nothing (network, host files it may read, many files on the host
disk), the test is skipped with the README's reason. CI installs bubblewrap, so there
every attack runs in bwrap mode.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections import Counter

import pytest
from reliability_log import record

from optimas_cli.sandbox import Job, Limits, Sandbox, launch
from optimas_cli.sandbox.run import can_drop_uid

LIMITS = Limits(cpu_seconds=2, wall_seconds=8, memory_mb=1024, max_processes=32, max_file_mb=4,
                disk_mb=16)
SECRET = "sk-test-0123456789-do-not-leak"


def sandbox_modes() -> list:
    """bwrap (skipped where bubblewrap cannot start) and rlimits: the modes a test runs in."""
    have_bwrap = Sandbox().resolved == "bwrap"
    return [pytest.param("bwrap", marks=pytest.mark.skipif(
        not have_bwrap, reason="bubblewrap unavailable here (CI installs it)")), "rlimits"]


@pytest.fixture(params=sandbox_modes())
def sandbox(request):
    """The sandbox under attack; afterwards, this process is alive (it is the harness) and a
    fresh run in the same sandbox still works."""
    box = Sandbox(LIMITS, mode=request.param, max_parallel=4)
    yield box
    r = run(box, "print(6 * 7)")
    assert r.ok and r.stdout.strip() == "42", r


def needs_uid(sandbox: Sandbox, what: str) -> None:
    """rlimits mode protects `what` only when runs get their own unprivileged uid."""
    if sandbox.resolved == "rlimits" and not can_drop_uid(sandbox.python):
        pytest.skip(f"rlimits mode without a separate uid does not protect {what} (README)")


def needs_namespaces(sandbox: Sandbox, what: str) -> None:
    if sandbox.resolved == "rlimits":
        pytest.skip(f"rlimits mode has no namespaces: it does not stop {what} (README)")


def run(sandbox: Sandbox, code: str):
    return sandbox.run({"main.py": code}, ["python", "main.py"])


def test_write_outside_its_dir(sandbox, tmp_path):
    needs_uid(sandbox, "host files")
    target = tmp_path / "written_by_sandbox.txt"
    r = run(sandbox, f"""
import os
for p in [{str(target)!r}, {str(sys.prefix + '/pwned')!r}, '/tmp/../pwned_root',
          '/usr/pwned', os.path.expanduser('~/../pwned_home')]:
    try:
        open(p, 'w').write('x'); print('WROTE', p)
    except OSError as e:
        print('denied', p, e.errno)
""")
    assert not target.exists() and not os.path.exists(sys.prefix + "/pwned")
    assert not os.path.exists("/usr/pwned")
    assert str(target) not in r.stdout.replace("denied " + str(target), "")


def test_delete_files(sandbox, tmp_path):
    needs_uid(sandbox, "host files")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.chmod(tmp_path, 0o755)
    run(sandbox, f"""
import os, shutil
for f in [lambda: os.remove({str(victim)!r}), lambda: shutil.rmtree({str(tmp_path)!r}),
          lambda: shutil.rmtree({sys.prefix!r})]:
    try:
        f()
    except OSError as e:
        print('denied', e)
""")
    assert victim.read_text() == "keep me"
    assert os.path.exists(sys.executable)


def test_read_the_parents_secret_env_var(sandbox, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    needs_uid(sandbox, "the parent's /proc/PID/environ")
    r = run(sandbox, f"""
import os
print(dict(os.environ))
for p in ['/proc/self/environ', '/proc/1/environ', '/proc/%d/environ' % os.getppid(),
          '/proc/{os.getpid()}/environ']:
    try:
        print(p, open(p, 'rb').read())
    except OSError as e:
        print('denied', p, e.errno)
""")
    assert SECRET not in r.stdout + r.stderr
    assert "OPENAI_API_KEY" not in r.stdout


def test_open_a_socket(sandbox):
    needs_namespaces(sandbox, "network access")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    got = []
    t = threading.Thread(target=lambda: got.append(_accept(server)))
    t.start()
    r = run(sandbox, f"""
import socket
for addr in [('127.0.0.1', {port}), ('1.1.1.1', 80), ('pypi.org', 443)]:
    try:
        socket.create_connection(addr, timeout=2).sendall(b'leak'); print('CONNECTED', addr)
    except OSError as e:
        print('no network', addr, e)
""")
    t.join()
    server.close()
    assert "CONNECTED" not in r.stdout and got == [None], (r.stdout, got)


def _accept(server: socket.socket):
    try:
        conn, _ = server.accept()
        conn.close()
        return "connected"
    except OSError:
        return None


def _live_by_sandbox_uid() -> Counter:
    """Live processes (not zombies) of each sandbox run's fresh uid. RLIMIT_NPROC counts per
    uid, and counting only these keeps other tests' processes (xdist workers) out of it."""
    low, high = launch._UID_RANGE
    n: Counter = Counter()
    for d in os.listdir("/proc"):
        try:
            if not d.isdigit() or open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            uid = os.stat(f"/proc/{d}").st_uid
        except (OSError, IndexError):
            continue
        if low <= uid < high:
            n[uid] += 1
    return n


def test_fork_bomb(sandbox):
    needs_uid(sandbox, "against a fork bomb (root ignores RLIMIT_NPROC)")
    before, peak, done = set(_live_by_sandbox_uid()), Counter(), threading.Event()

    def sample():
        while not done.is_set():
            peak.update({u: c - peak[u] for u, c in _live_by_sandbox_uid().items()
                         if u not in before and c > peak[u]})
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    r = sandbox.run({"main.py": """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""}, ["python", "main.py"], limits=LIMITS.model_copy(update={"wall_seconds": 3}))
    done.set()
    sampler.join()
    assert r.status in ("timeout", "killed", "error") and r.seconds < 10
    bomb, most = peak.most_common(1)[0]  # the bomb's uid: by far the most processes
    assert LIMITS.max_processes // 2 < most <= LIMITS.max_processes, peak  # it forked, and was held
    time.sleep(0.5)
    record("containment", attack="fork bomb", mode=sandbox.resolved,
           left=_live_by_sandbox_uid()[bomb])
    assert _live_by_sandbox_uid()[bomb] == 0  # none left running


def test_infinite_loop(sandbox):
    r = run(sandbox, "while True:\n    pass\n")
    assert r.status in ("killed", "timeout")
    assert r.seconds < LIMITS.wall_seconds + 2


def test_20gb_allocation(sandbox):
    r = run(sandbox, "x = bytearray(20 * 1024**3)\nprint('ALLOCATED')")
    assert not r.ok and "ALLOCATED" not in r.stdout and "MemoryError" in r.stderr


def test_fill_the_disk_one_file(sandbox):
    r = run(sandbox, """
with open('big', 'wb') as f:
    for _ in range(4096):
        f.write(b'x' * 1024 * 1024)
print('FILLED')
""")
    assert not r.ok and "FILLED" not in r.stdout and "File too large" in r.stderr


def test_fill_the_disk_many_files(sandbox):
    needs_namespaces(sandbox, "many files filling the host disk (only each file's size)")
    r = run(sandbox, """
import os
for n in range(2048):
    for d in ('.', '/tmp', '/dev/shm'):
        try:
            with open(os.path.join(d, f'f{n}'), 'wb') as f:
                f.write(b'x' * 1024 * 1024)
        except OSError as e:
            print('stopped', d, e)
print('FILLED')
""")
    assert "No space left on device" in r.stdout  # each tmpfs is full at LIMITS.disk_mb


def test_kill_its_parent(sandbox):
    needs_uid(sandbox, "other processes (kill -1 as root)")
    r = run(sandbox, f"""
import os, signal
for pid in [os.getppid(), 1, {os.getpid()}]:
    try:
        os.kill(pid, signal.SIGKILL); print('sent', pid)
    except OSError as e:
        print('denied', pid, e)
os.kill(-1, signal.SIGKILL)
""")
    assert r.status in ("killed", "ok", "error")
    assert f"sent {os.getpid()}" not in r.stdout  # this test process is the harness


def test_chdir_then_escape(sandbox, tmp_path):
    needs_uid(sandbox, "host files")
    r = run(sandbox, f"""
import os
for _ in range(10):
    os.chdir('..')
print('cwd', os.getcwd(), sorted(os.listdir('.')))
for p in ['work/main/README.md', 'root/.bashrc', {str(tmp_path)[1:]!r}]:
    try:
        print('READ', p, len(open(p).read()))
    except OSError as e:
        print('denied', p, e.errno)
try:
    open({str(tmp_path / 'escaped.txt')!r}, 'w').write('x'); print('ESCAPED')
except OSError as e:
    print('denied write', e.errno)
""")
    assert "ESCAPED" not in r.stdout and not (tmp_path / "escaped.txt").exists()
    if sandbox.resolved == "bwrap":  # of the host only the read-only libraries are visible
        assert not [line for line in r.stdout.splitlines() if line.startswith("READ ")]


def test_attacks_in_parallel_leave_benign_runs_alone(sandbox):
    """A fork bomb, a loop and an allocation beside benign jobs: the benign ones pass."""
    needs_uid(sandbox, "against a fork bomb")
    hostile = ["import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
               "while True: pass", "x = bytearray(20 * 1024**3)"]
    jobs = [Job({"main.py": c}, ["python", "main.py"]) for c in hostile]
    jobs += [Job({"main.py": f"print({n} * 2)"}, ["python", "main.py"]) for n in range(4)]
    results = sandbox.run_many(jobs)
    assert [r.stdout.strip() for r in results[3:]] == ["0", "2", "4", "6"]
    assert not any(r.ok for r in results[:3])
