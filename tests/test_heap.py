"""Memory given back after a peak (optimas_cli/heap.py)."""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

# In a fresh interpreter (a test process's heap is already fragmented by earlier tests, so
# where the blocks land there is chance): blocks under malloc's mmap threshold come from the
# heap; freed under a live block at its top, they stay resident until `heap.release`.
PROBE = """
import json
from pathlib import Path
from optimas_cli import heap

def anon():
    return int(Path("/proc/self/status").read_text().split("RssAnon:")[1].split()[0]) / 1024

blocks = [bytearray(64 * 1024) for _ in range(3000)]  # ~190 MiB of 64 KiB heap blocks
top = bytearray(64 * 1024)  # allocated last: keeps the heap's top from shrinking
del blocks
held = anon()
released = heap.release()
print(json.dumps({"held": held, "released": released, "after": anon()}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists()
                    or not ctypes.util.find_library("c"), reason="needs Linux /proc and a libc")
def test_release_gives_freed_heap_back():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    # the ~190 MiB freed under `top` is held until release asks glibc to trim it
    assert r["released"] is True and r["after"] < r["held"] - 150


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")
def test_smaps_rollup_reads_this_process_and_nothing_for_a_gone_one():
    from optimas_cli import heap

    m = heap.smaps_rollup()
    assert m["Rss"] > 0 and 0 < m["Pss"] <= m["Rss"] and m["Pss_Anon"] <= m["Pss"]
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    assert heap.smaps_rollup(int(proc.stdout)) == {}  # exited: no record, no error
