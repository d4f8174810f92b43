"""The sandbox: results, files, environment, output caps, parallel runs, fallback; code
extraction; the `sandboxed_exec` component kind."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time

import pytest

from optimas_cli.components import resolve_kind
from optimas_cli.errors import ConfigError
from optimas_cli.graph import Call
from optimas_cli.sandbox import Job, Limits, Sandbox, SandboxUnavailable, extract_code, parses
from optimas_cli.sandbox import run as sandbox_run
from optimas_cli.sandbox.run import bwrap_problem
from optimas_cli.schema import ComponentConfig

FAST = Limits(cpu_seconds=2, wall_seconds=10, memory_mb=1024, max_processes=32, max_file_mb=4,
              disk_mb=16)


@pytest.fixture(scope="module", params=["auto", "rlimits"])
def box(request) -> Sandbox:
    return Sandbox(FAST, mode=request.param, max_parallel=2)


def test_runs_files_in_a_fresh_dir_and_reports_the_exit(box):
    r = box.run({"main.py": "import helper, os\n"
                            "print(helper.X, sorted(n for n in os.listdir('.') if n[0] != '.'))",
                 "helper.py": "X = 41 + 1", "data/in.txt": "hi"}, ["python", "main.py"])
    assert r.ok and r.returncode == 0 and r.describe() == "exited 0"
    assert r.stdout == "42 ['data', 'helper.py', 'main.py']\n"
    again = box.run({"main.py": "import os\nprint(sorted(os.listdir('.')))"}, ["python", "main.py"])
    assert "helper.py" not in again.stdout  # every run starts from its own files only
    bad = box.run({"main.py": "import sys\nprint('x', file=sys.stderr)\nsys.exit(3)"},
                  ["python", "main.py"])
    assert bad.status == "error" and bad.returncode == 3 and bad.stderr == "x\n"


def test_stdin_and_an_allow_listed_environment(box, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    r = box.run({"main.py": "import os, sys\nprint(sys.stdin.read(), sorted(os.environ))"},
                ["python", "main.py"], stdin="token")
    assert r.stdout.startswith("token ") and "ANTHROPIC_API_KEY" not in r.stdout
    assert "'HOME'" in r.stdout and "'OPENBLAS_NUM_THREADS'" in r.stdout


def test_output_is_capped_head_and_tail(box):
    r = box.run({"main.py": "print('start'); print('x' * 500_000); print('end')"},
                ["python", "main.py"])
    assert r.ok and len(r.stdout) < FAST.max_output_bytes + 100
    assert r.stdout.startswith("start") and r.stdout.rstrip().endswith("end")
    assert "bytes cut" in r.stdout


def test_timeouts_and_limits_are_statuses_not_exceptions(box):
    slow = box.run({"main.py": "import time; time.sleep(30)"}, ["python", "main.py"],
                   limits=FAST.model_copy(update={"wall_seconds": 1}))
    assert slow.status == "timeout" and 1 <= slow.seconds < 5 and "timed out" in slow.describe()
    spin = box.run({"main.py": "while True: pass"}, ["python", "main.py"])
    assert spin.status in ("killed", "timeout")
    if spin.status == "killed":
        assert spin.signal in ("SIGXCPU", "SIGKILL") and "CPU" in spin.describe()
    missing = box.run({}, ["/no/such/program"])
    assert not missing.ok


def test_run_many_keeps_order_and_bounds_parallelism():
    box = Sandbox(FAST, max_parallel=2)
    jobs = [Job({"main.py": f"import time; time.sleep(0.3); print({n})"}, ["python", "main.py"])
            for n in range(6)]
    start = time.monotonic()
    results = box.run_many(jobs)
    assert [r.stdout.strip() for r in results] == [str(n) for n in range(6)]
    assert time.monotonic() - start >= 0.9  # 6 jobs of 0.3 s, 2 at a time


def test_the_semaphore_holds_across_threads():
    box = Sandbox(FAST, max_parallel=1)
    stamps: list[tuple[float, float]] = []

    def one():
        t0 = time.monotonic()
        box.run({"main.py": "import time; time.sleep(0.3)"}, ["python", "main.py"])
        stamps.append((t0, time.monotonic()))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(end for _, end in stamps) - min(s for s, _ in stamps) >= 0.9


def test_bad_file_names_are_refused(box):
    for name in ("/etc/x", "../x", "a/../../x"):
        with pytest.raises(ValueError, match="relative path"):
            box.run({name: ""}, ["python", "-c", "pass"])


def test_fallback_warns_and_bwrap_mode_refuses(monkeypatch, caplog):
    monkeypatch.setattr(sandbox_run, "bwrap_problem", lambda *a: "no bwrap on this machine")
    sandbox_run.warn_fallback.cache_clear()
    with caplog.at_level(logging.WARNING):
        assert Sandbox(FAST).resolved == "rlimits"
    assert "falling back to resource limits only" in caplog.text
    with pytest.raises(SandboxUnavailable, match="no bwrap on this machine"):
        Sandbox(FAST, mode="bwrap")
    # a config that requires bwrap fails before any work, naming the component and the key
    kind, cfg = component({"files": {"main.py": "code"}, "mode": "bwrap"}, inputs=("code",),
                          outputs=("report",))
    with pytest.raises(ConfigError, match="component 'executor': params.mode is 'bwrap'.*"
                       "no bwrap on this machine"):
        kind.build("executor", cfg, {})


@pytest.mark.parametrize("text, code", [
    ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1"),
    ("Here:\n```py\nx = 1 + 1\n```\nand use:\n```python\nx\n```", "x = 1 + 1"),  # longest
    ("```\nimport os\n```", "import os"),
    ("```python\ndef task_func():\n    return 2", "def task_func():\n    return 2"),  # cut off
    ("x = 1", "x = 1"),
    ("```bash\npip install x\n```\n```python\ny = 2\n```", "y = 2"),
])
def test_extract_code(text, code):
    assert extract_code(text) == code


def test_extract_code_prefers_the_block_defining_the_entry_point():
    text = ("```python\nimport numpy as np\nimport pandas as pd\nimport scipy\n```\n"
            "```python\ndef task_func(x):\n    return x\n```")
    assert extract_code(text, "task_func").startswith("def task_func")
    assert extract_code(text).startswith("import numpy")  # longest without an entry point


def test_parses():
    assert parses("def f():\n    return 1") and not parses("def f(:") and not parses("  \n")
    assert not parses("x = 1\0")  # a null byte: False, not an exception


# ------------------------------------------------------------ the component kind


def component(params: dict, inputs=("code", "tests"), outputs=("report", "passed")):
    cfg = ComponentConfig(kind="sandboxed_exec", description="runs code", inputs=list(inputs),
                          outputs=list(outputs), params=params)
    kind = resolve_kind("sandboxed_exec")
    return kind, cfg


def test_component_runs_llm_code_against_tests():
    kind, cfg = component({"files": {"main.py": ["code", "tests"]}, "command": ["python", "main.py"],
                           "limits": FAST.model_dump(), "mode": "auto"})
    assert kind.check_config("executor", cfg) == []
    comp = kind.build("executor", cfg, {})
    ok = comp.forward({"code": "Sure:\n```python\ndef add(a, b):\n    return a + b\n```",
                       "tests": "```python\nassert add(2, 2) == 4\nprint('all good')\n```"},
                      {}, Call(lm=None, component="executor"))
    assert ok["passed"] == 1.0 and ok["report"].startswith("Run exited 0.") and "all good" in \
        ok["report"]
    bad = comp.forward({"code": "def add(a, b):\n    return a - b",
                        "tests": "assert add(2, 2) == 4"}, {}, Call(lm=None, component="executor"))
    assert bad["passed"] == 0.0 and "AssertionError" in bad["report"]
    assert bad["report"].startswith("Run exited 1.")


def test_component_support_files_and_one_output(tmp_path):
    helper = tmp_path / "helper.py"
    helper.write_text("GREETING = 'hello'")
    kind, cfg = component({"files": {"main.py": "code"}, "support_files": {"helper.py": str(helper)},
                           "limits": FAST.model_dump(), "extract_code": False,
                           "max_report_chars": 50}, inputs=("code",), outputs=("report",))
    comp = kind.build("executor", cfg, {})
    out = comp.forward({"code": "import helper\nprint(helper.GREETING * 100)"}, {}, Call(lm=None, component="executor"))
    assert set(out) == {"report"} and out["report"].endswith("hello")
    assert len(out["report"]) < 100  # the tail only


def test_component_config_errors_name_the_key():
    kind, cfg = component({"files": {"main.py": "kode"}, "support_files": {"r.py": "no/such.py"},
                           "limits": {"cpu_seconds": 0}})
    problems = dict(kind.check_config("executor", cfg))
    assert "params.limits.cpu_seconds" in problems
    kind, cfg = component({"files": {"main.py": "kode", "../x.py": "code"},
                           "support_files": {"r.py": "no/such.py"}},
                          outputs=("a", "b", "c"))
    problems = dict(kind.check_config("executor", cfg))
    assert "not among its inputs" in problems["params.files.main.py"]
    assert "relative path" in problems["params.files.../x.py"]
    assert "not found" in problems["params.support_files.r.py"]
    assert "at most two" in problems["outputs"]
    kind, cfg = component({"files": {"m.py": "code"}, "support_files": {
        "runner.py": "systems.bigcodebench.runner"}})
    assert kind.check_config("executor", cfg) == []  # a dotted module name is a file too


def test_sandbox_python_is_the_one_running_optimas():
    r = Sandbox(FAST).run({}, ["python", "-c", "import sys; print(sys.prefix)"])
    assert r.stdout.strip() == sys.prefix


@pytest.mark.skipif(not shutil.which("bwrap") or bwrap_problem(sys.executable, ()) is not None,
                    reason="bubblewrap cannot start here")
def test_a_virtualenv_under_tmp_runs_in_bwrap_mode(tmp_path):
    """The sandbox's own /tmp is a tmpfs: a virtualenv under the host's /tmp (a CI clone
    there) must stay visible, or every run would fall back to rlimits mode."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    script = (
        "import sys; sys.path[:0] = " + repr([p for p in sys.path if p]) + "\n"
        "from optimas_cli.sandbox.run import Sandbox\n"
        "box = Sandbox(mode='bwrap')\n"
        "r = box.run({}, ['python', '-c', 'import sys; print(sys.prefix)'])\n"
        "print(box.resolved, r.status, r.stdout.strip())\n")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True,
                         text=True, timeout=120)
    assert str(venv).startswith("/tmp/")
    assert out.stdout.split() == ["bwrap", "ok", str(venv)], out.stderr[-2000:]


def test_every_sandboxed_process_runs_with_no_new_privs(box):
    # a setuid binary (su, polkit's helper) run by model-written code gains nothing
    r = box.run({"main.py": "print(open('/proc/self/status').read())"}, ["python", "main.py"])
    assert r.status == "ok", r.stderr
    assert "NoNewPrivs:\t1" in r.stdout


DEEP = """
import os
for _ in range(4000):  # deeper than shutil.rmtree's recursion can follow
    os.mkdir("d")
    os.chdir("d")
print("deep")
"""


def test_a_deep_tree_left_behind_does_not_make_run_raise_or_lose_the_batch(box):
    results = box.run_many([Job({"main.py": DEEP}, ["python", "main.py"]),
                            Job({"main.py": "print('other')"}, ["python", "main.py"])])
    assert [r.status for r in results] == ["ok", "ok"], [r.stderr[-300:] for r in results]
    assert results[0].stdout.strip() == "deep" and results[1].stdout.strip() == "other"


def test_remove_tree_removes_what_rmtree_cannot(tmp_path):
    import os

    root = tmp_path / "stage"
    root.mkdir()
    here = os.getcwd()
    try:
        os.chdir(root)
        for _ in range(4000):
            os.mkdir("d")
            os.chdir("d")
    finally:
        os.chdir(here)
    with pytest.raises(RecursionError):
        shutil.rmtree(root)  # the case remove_tree exists for
    sandbox_run.remove_tree(root, seconds=30)
    assert not root.exists()
