"""BENCHMARKS.md sections: the machine line, the code version, and the text between a
benchmark's markers, which a new table replaces. A table made by other code keeps its
place: the section it replaces moves, marked superseded, under the new one.

    <!-- bench:NAME:begin -->  ... the current table ...  <!-- bench:NAME:end -->
    <details><summary>Superseded ...</summary> ... earlier tables ... </details>
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_COMMIT = re.compile(r"^Code: commit ([0-9a-f]{7,40})", re.M)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def commit(root: Path = ROOT) -> str:
    """The checkout's commit, "+dirty" when tracked files differ from it ("unknown" outside
    git): the code version a table names."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def code_line(sha: str) -> str:
    """The line a versioned section starts with (read back by write_section)."""
    return f"Code: commit {sha}"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def write_section(path: Path, body: str, name: str = "hotpotqa") -> None:
    """Put `body` between NAME's markers. When both the old and the new body name their code
    version (code_line) and the versions differ, the old body is kept below, superseded."""
    begin, end = markers(name)
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin not in text or end not in text:
        path.write_text(text.rstrip() + "\n\n" + block + "\n")
        return
    head, rest = text.split(begin, 1)
    old, tail = rest.split(end, 1)
    was, now = _COMMIT.search(old), _COMMIT.search(body)
    if was and now and was.group(1) != now.group(1):
        block += (f"\n\n<details><summary>Superseded: the table of commit {was.group(1)} "
                  f"(code changed since)</summary>\n\n{old.strip()}\n\n</details>")
    path.write_text(head + block + tail)
